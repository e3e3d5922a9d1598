"""Attacks on the datasite's half of work items, against a real hub process.

The test plays two registered datasites with their own keys: one may not lease, renew or
finish the other's work; a result must be a blob the finishing datasite holds (a hash read off
the public register is not enough); a finish is never applied twice, replayed or after a
cancel; an error's text from an unexpected failure never reaches the requester.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ndl.core.envelope import seal
from ndl.core.keys import SigningKey
from ndl.federation.blob_client import upload_file
from ndl.testing import HubProcess

KEYS = {"site-a": SigningKey.generate(), "site-b": SigningKey.generate()}
DATASET = {"name": "areas", "title": "Areas", "publisher": "Org A", "tier": "open",
           "columns": [{"name": "area", "type": "string"}]}


@dataclass
class Net:
    url: str
    researcher: str
    tmp: Path


def _env(site: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return seal(KEYS[site], sender=site, recipient="hub", kind=kind, body=body)


def _post(net: Net, path: str, site: str, kind: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{net.url}{path}", json=_env(site, kind, body), timeout=30)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("work-attacks")
    h = HubProcess(tmp / "hub")
    for org in ("site-a", "site-b"):
        h.create_org(org, org, "other")
    stewards = {o: h.create_user(f"steward-{o}", ["steward"], org=o) for o in KEYS}
    researcher = h.create_user("alice", ["researcher"])
    with h:
        for site, key in KEYS.items():
            r = httpx.post(f"{h.url}/api/federation/register", json=_env(site, "register", {
                "datasite_id": site, "org": site, "name": site, "public_key": key.public_b64}),
                headers={"Authorization": f"Bearer {stewards[site]}"}, timeout=30)
            assert r.status_code == 201, r.text
        n = Net(h.url, researcher, tmp)
        assert _post(n, "/api/federation/publish", "site-a", "publish",
                     {"datasets": [DATASET]}).status_code == 200
        yield n


def _submit(net: Net, dataset: str = "site-a/areas") -> str:
    r = httpx.post(f"{net.url}/api/work", json={"kind": "export", "dataset": dataset},
                   headers={"Authorization": f"Bearer {net.researcher}"}, timeout=30)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _lease(net: Net, site: str) -> list[str]:
    r = _post(net, "/api/federation/poll", site, "poll", {"wait": 0})
    assert r.status_code == 200, r.text
    return [m["body"]["work_id"] for m in r.json()["messages"] if m["kind"] == "work"]


def _view(net: Net, wid: str) -> dict[str, Any]:
    r = httpx.get(f"{net.url}/api/work/{wid}",
                  headers={"Authorization": f"Bearer {net.researcher}"}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _blob(net: Net, site: str, content: bytes) -> dict[str, Any]:
    path = net.tmp / f"{site}-{len(content)}.csv"
    path.write_bytes(content)
    with httpx.Client(base_url=net.url, timeout=30) as http:
        ref = upload_file(http, path=path, kind="result", media_type="text/csv",
                          sign=lambda kind, body: _env(site, kind, body))
    return {"sha256": ref.sha256, "size": ref.size, "media_type": "text/csv",
            "filename": "areas.csv", "rows": 1}


def _finish(net: Net, site: str, wid: str, **body: Any) -> httpx.Response:
    return _post(net, "/api/federation/work/finish", site, "work.finish",
                 {"work_id": wid, **body})


def _drain(net: Net) -> None:
    """Lease whatever earlier tests left queued, so each test leases only its own item."""
    while _lease(net, "site-a"):
        pass


def test_another_datasite_can_neither_lease_renew_nor_finish_the_work(net: Net) -> None:
    _drain(net)
    wid = _submit(net)
    assert _lease(net, "site-b") == []
    assert _lease(net, "site-a") == [wid]
    beat = _post(net, "/api/federation/heartbeat", "site-b", "heartbeat",
                 {"work": {wid: {"progress": 0.9, "message": "mine now"}}})
    assert beat.status_code == 200 and beat.json()["renewed"] == []
    mine = _blob(net, "site-b", b"area\nB\n")
    r = _finish(net, "site-b", wid, ok=True, result=mine)
    assert r.status_code == 404, r.text
    view = _view(net, wid)
    assert view["state"] == "leased" and view["progress"] == 0 and view["result"] is None


def test_a_result_must_be_a_blob_the_finishing_datasite_holds(net: Net) -> None:
    _drain(net)
    wid = _submit(net)
    assert _lease(net, "site-a") == [wid]
    # Site B's blob, whose hash site A could read off the register: not A's to hand over.
    theirs = _blob(net, "site-b", b"area\nsecret of B\n")
    r = _finish(net, "site-a", wid, ok=True, result=theirs)
    assert r.status_code == 422 and "upload the result blob" in r.json()["error"]["message"]
    made_up = {**theirs, "sha256": "0" * 64}
    assert _finish(net, "site-a", wid, ok=True, result=made_up).status_code == 422
    wrong_size = {**_blob(net, "site-a", b"area\nA\n"), "size": 999}
    assert _finish(net, "site-a", wid, ok=True, result=wrong_size).status_code == 422
    assert _view(net, wid)["state"] == "leased"


def test_a_finish_is_applied_once_and_cannot_be_replayed(net: Net) -> None:
    _drain(net)
    wid = _submit(net)
    assert _lease(net, "site-a") == [wid]
    first = _blob(net, "site-a", b"area\nfirst\n")
    env = _env("site-a", "work.finish", {"work_id": wid, "ok": True, "result": first})
    r = httpx.post(f"{net.url}/api/federation/work/finish", json=env, timeout=30)
    assert r.status_code == 200 and r.json() == {"accepted": True}
    replay = httpx.post(f"{net.url}/api/federation/work/finish", json=env, timeout=30)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]["message"]
    second = _blob(net, "site-a", b"area\nsecond\n")
    again = _finish(net, "site-a", wid, ok=True, result=second)
    assert again.status_code == 200 and again.json() == {"accepted": False}
    assert _view(net, wid)["result"]["sha256"] == first["sha256"]


def test_an_unexpected_failure_text_never_reaches_the_requester(net: Net) -> None:
    _drain(net)
    wid = _submit(net)
    assert _lease(net, "site-a") == [wid]
    r = _finish(net, "site-a", wid, ok=False,
                error={"code": "duckdb_error", "message": "could not cast 'Jane Doe' to INT"})
    assert r.status_code == 200
    view = _view(net, wid)
    assert view["state"] == "failed" and view["error"]["code"] == "internal_error"
    assert "Jane" not in str(view)


def test_a_finish_after_a_cancel_changes_nothing(net: Net) -> None:
    _drain(net)
    wid = _submit(net)
    assert _lease(net, "site-a") == [wid]
    r = httpx.post(f"{net.url}/api/work/{wid}/cancel",
                   headers={"Authorization": f"Bearer {net.researcher}"}, timeout=30)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    beat = _post(net, "/api/federation/heartbeat", "site-a", "heartbeat",
                 {"work": {wid: {"progress": 0.5, "message": ""}}})
    assert beat.json()["cancel"] == [wid]
    late = _finish(net, "site-a", wid, ok=True, result=_blob(net, "site-a", b"area\nlate\n"))
    assert late.json() == {"accepted": False}
    view = _view(net, wid)
    assert view["state"] == "cancelled" and view["result"] is None


@pytest.mark.parametrize("body,words", [
    ({"work": {"x": {"progress": "0.5"}}}, "progress"),
    ({"work": {"x": {"progress": True}}}, "progress"),
    ({"work": {"x": {"message": ["a"]}}}, "message"),
    ({"work": ["x"]}, "work ids"),
    ({"work": {str(i): {} for i in range(1001)}}, "work ids"),
    ({"message_ids": "x"}, "message_ids"),
])
def test_malformed_heartbeats_are_refused(net: Net, body: dict[str, Any], words: str) -> None:
    r = _post(net, "/api/federation/heartbeat", "site-a", "heartbeat", body)
    assert r.status_code == 422 and words in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("body", [
    {"ok": True}, {"work_id": 5, "ok": True}, {"work_id": "x", "ok": "yes"},
    {"work_id": "x", "ok": True, "result": {"sha256": "../etc/passwd", "size": 1}},
    {"work_id": "x", "ok": True, "result": {"sha256": "a" * 64, "size": -1}},
    {"work_id": "x", "ok": True, "result": {"sha256": "a" * 64, "size": 1, "extra": 1}},
])
def test_malformed_finishes_are_refused(net: Net, body: dict[str, Any]) -> None:
    r = _post(net, "/api/federation/work/finish", "site-a", "work.finish", body)
    assert r.status_code == 422, r.text


def test_finishing_work_that_does_not_exist_is_not_found(net: Net) -> None:
    r = _finish(net, "site-a", "no-such-work", ok=False, error={"code": "cancelled"})
    assert r.status_code == 404


@pytest.mark.parametrize("slots", [-1, 1001, True, "2", 1.5])
def test_malformed_work_slots_in_a_poll_are_refused(net: Net, slots: object) -> None:
    r = _post(net, "/api/federation/poll", "site-a", "poll", {"wait": 0, "work_slots": slots})
    assert r.status_code == 422 and "work_slots" in r.json()["error"]["message"], r.text


def test_work_slots_cap_what_a_datasite_holds_at_once(net: Net) -> None:
    # Site B, whose slots no earlier test holds.
    assert _post(net, "/api/federation/publish", "site-b", "publish",
                 {"datasets": [DATASET]}).status_code == 200
    ids = [_submit(net, "site-b/areas") for _ in range(3)]

    def poll() -> list[str]:
        r = _post(net, "/api/federation/poll", "site-b", "poll", {"wait": 0, "work_slots": 2})
        return [m["body"]["work_id"] for m in r.json()["messages"]]

    assert poll() == ids[:2]
    assert poll() == []  # both slots are taken, at the hub's count
    assert _finish(net, "site-b", ids[0], ok=False,
                   error={"code": "cancelled", "message": "x"}).status_code == 200
    assert poll() == [ids[2]]

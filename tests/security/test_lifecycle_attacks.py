"""Attacks on joining, leaving and deleting, against a real hub process.

Every role trying to approve, retire, withdraw, delete and close what is not theirs; forged,
replayed and malformed status reports and deletion records; a pending and a retired datasite
still polling; deleting another organisation's dataset; malformed ids. Datasites here are
keys that sign envelopes by hand, so each attack is exactly the message a hostile one sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ndl.core.envelope import seal
from ndl.core.keys import SigningKey
from ndl.testing import HubProcess

KEYS = {s: SigningKey.generate() for s in ("site-a", "site-b", "site-pending", "site-gone")}
FORGER = SigningKey.generate()
ROLES = ("anonymous", "researcher", "other_researcher", "steward_A", "steward_B",
         "output_checker", "admin")
META = {"title": "Visits", "publisher": "x", "tier": "safeguarded", "row_count": 40,
        "columns": [{"name": "region", "type": "string"}]}
PROJECT = {"title": "A project", "purpose_category": "research", "legal_basis": "public-task",
           "purpose": "Measure how emergency care use varies by region, for planning.",
           "lay_summary": "Counts of visits by area.", "end_date": "2099-12-31"}


def _sign(site: str, kind: str, body: dict[str, Any], key: SigningKey | None = None
          ) -> dict[str, Any]:
    return seal(key or KEYS[site], sender=site, recipient="hub", kind=kind, body=body)


def _post(url: str, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=15)


def _status_body(**changes: Any) -> dict[str, Any]:
    body = {"software_version": "0.1.0", "policy_hash": "a" * 64, "config_hash": "b" * 64,
            "sandbox_mode": "strict", "engine": "duckdb", "every_seconds": 300,
            "self_check": {"at": datetime.now(UTC).isoformat(), "ok": True,
                           "engine_ok": True, "sandbox_ok": None, "datasets_checked": 1,
                           "problems": []}}
    return {**body, **changes}


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    h = HubProcess(tmp_path_factory.mktemp("lifecycle-attacks"))
    h.create_org("org-a", "Org A", "nhs")
    h.create_org("org-b", "Org B", "education")
    tokens = {
        "researcher": h.create_user("alice", ["researcher"], accredited=True),
        "other_researcher": h.create_user("bob", ["researcher"], accredited=True),
        "steward_A": h.create_user("sam", ["steward"], org="org-a"),
        "steward_B": h.create_user("dee", ["steward"], org="org-b"),
        "output_checker": h.create_user("olga", ["output_checker"]),
        "admin": h.create_user("root", ["admin"]),
    }
    with h:
        url = h.url
        for site, org, who, route in (
                ("site-a", "org-a", "steward_A", "register"),
                ("site-b", "org-b", "steward_B", "register"),
                ("site-gone", "org-a", "steward_A", "register"),
                ("site-pending", "org-a", "researcher", "join")):
            r = _post(url, f"/api/federation/{route}", _sign(site, "register", {
                "datasite_id": site, "org": org, "name": site,
                "public_key": KEYS[site].public_b64}), tokens[who])
            assert r.status_code == 201, r.text
        for site in ("site-a", "site-b", "site-gone"):
            r = _post(url, "/api/federation/publish", _sign(site, "publish", {"datasets": [
                {**META, "name": "visits"}, {**META, "name": "spare", "tier": "open"}]}))
            assert r.status_code == 200, r.text
        r = _post(url, "/api/projects", PROJECT, tokens["researcher"])
        project = r.json()["id"]
        r = _post(url, f"/api/projects/{project}/requests",
                  {"datasets": ["site-a/visits"]}, tokens["researcher"])
        assert r.json()["items"][0]["state"] == "granted", r.text
        r = _post(url, "/api/datasites/site-gone/retire", {"reason": "Left the federation."},
                  tokens["admin"])
        assert r.status_code == 200, r.text
        yield {"url": url, "tokens": tokens, "project": project}


def _as(lib: dict[str, Any], role: str) -> str | None:
    return None if role == "anonymous" else lib["tokens"][role]


def _refused_unless(lib: dict[str, Any], role: str, allowed: set[str], r: httpx.Response
                    ) -> None:
    if role == "anonymous":
        assert r.status_code == 401, r.text
    elif role not in allowed:
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", \
            f"{role}: {r.status_code} {r.text}"


def _site(lib: dict[str, Any], site: str) -> dict[str, Any]:
    r = httpx.get(f"{lib['url']}/api/datasites/{site}/status", timeout=10)
    return dict(r.json())


@pytest.mark.parametrize("role", [r for r in ROLES if r not in ("steward_A", "admin")])
def test_only_the_orgs_steward_or_an_admin_approves_a_datasite(lib: dict[str, Any],
                                                               role: str) -> None:
    r = _post(lib["url"], "/api/datasites/site-pending/approve", {}, _as(lib, role))
    _refused_unless(lib, role, set(), r)
    assert _site(lib, "site-pending")["state"] == "pending"


@pytest.mark.parametrize("role", [r for r in ROLES if r not in ("steward_A", "admin")])
def test_only_the_orgs_steward_or_an_admin_retires_a_datasite(lib: dict[str, Any],
                                                              role: str) -> None:
    r = _post(lib["url"], "/api/datasites/site-a/retire", {"reason": "Hostile takeover."},
              _as(lib, role))
    _refused_unless(lib, role, set(), r)
    assert _site(lib, "site-a")["state"] == "approved"


@pytest.mark.parametrize("role", [r for r in ROLES if r not in ("steward_A", "admin")])
def test_only_the_owner_withdraws_or_deletes_a_dataset(lib: dict[str, Any], role: str
                                                       ) -> None:
    for path, body in (("withdraw", {"reason": "Not wanted here."}), ("delete", {})):
        r = _post(lib["url"], f"/api/datasets/site-a/visits/{path}", body, _as(lib, role))
        _refused_unless(lib, role, set(), r)
    entry = httpx.get(f"{lib['url']}/api/datasets/site-a/visits", timeout=10).json()
    assert "withdrawn" not in entry


def test_a_steward_cannot_delete_another_organisations_dataset(lib: dict[str, Any]) -> None:
    """Even once its own steward withdrew it, another organisation's steward is refused."""
    r = _post(lib["url"], "/api/datasets/site-a/spare/withdraw", {"reason": "Superseded."},
              lib["tokens"]["steward_A"])
    assert r.status_code == 200, r.text
    r = _post(lib["url"], "/api/datasets/site-a/spare/delete", {}, lib["tokens"]["steward_B"])
    assert r.status_code == 403 and "org-a" in r.json()["error"]["message"]
    r = httpx.get(f"{lib['url']}/api/datasets/site-a/spare/deletions", timeout=10)
    assert r.json()["deletions"] == []


@pytest.mark.parametrize("role", [r for r in ROLES if r not in ("researcher", "admin")])
def test_only_the_lead_or_an_admin_closes_a_project(lib: dict[str, Any], role: str) -> None:
    r = _post(lib["url"], f"/api/projects/{lib['project']}/close", {"reason": "Shut it."},
              _as(lib, role))
    if role in ("other_researcher", "steward_A", "steward_B", "output_checker"):
        # Not a member: the project's page is public, so a refusal, not "not found".
        assert r.status_code == 403, r.text
    else:
        assert r.status_code == 401, r.text
    r = httpx.get(f"{lib['url']}/api/register", params={"kind": "project.closed"})
    assert r.json()["entries"] == []


def test_a_forged_status_report_is_refused(lib: dict[str, Any]) -> None:
    r = _post(lib["url"], "/api/federation/status",
              _sign("site-a", "status", _status_body(), key=FORGER))
    assert r.status_code == 401 and r.json()["error"]["code"] == "envelope_rejected"
    assert _site(lib, "site-a")["report"] is None


def test_a_replayed_status_report_is_refused(lib: dict[str, Any]) -> None:
    env = _sign("site-b", "status", _status_body())
    assert _post(lib["url"], "/api/federation/status", env).status_code == 200
    r = _post(lib["url"], "/api/federation/status", env)
    assert r.status_code == 401 and "replay" in r.json()["error"]["message"]


@pytest.mark.parametrize("body,words", [
    (_status_body(policy_hash="x"), "policy_hash"),
    (_status_body(sandbox_mode="none"), "sandbox_mode"),
    (_status_body(extra="field"), "extra"),
    (_status_body(every_seconds=0), "every_seconds"),
    ({**_status_body(), "self_check": {"ok": True}}, "self_check"),
    (_status_body(self_check={**_status_body()["self_check"], "problems": ["x"] * 101}),
     "problems"),
    (_status_body(self_check={**_status_body()["self_check"], "problems": ["x" * 600]}),
     "500 characters"),
    (_status_body(software_version="v" * 51), "software_version"),
])
def test_a_malformed_status_report_is_refused_and_changes_nothing(
        lib: dict[str, Any], body: dict[str, Any], words: str) -> None:
    before = _site(lib, "site-b")["reported_at"]
    r = _post(lib["url"], "/api/federation/status", _sign("site-b", "status", body))
    assert r.status_code == 422 and words in r.text, r.text
    assert _site(lib, "site-b")["reported_at"] == before


def test_a_status_envelope_of_another_kind_is_refused(lib: dict[str, Any]) -> None:
    r = _post(lib["url"], "/api/federation/status", _sign("site-b", "poll", _status_body()))
    assert r.status_code == 422 and "'status'" in r.json()["error"]["message"]


def _deletion(lib: dict[str, Any]) -> int:
    """A deletion of org A's withdrawn ``spare`` dataset, asked by its steward."""
    r = _post(lib["url"], "/api/datasets/site-a/spare/delete", {}, lib["tokens"]["steward_A"])
    if r.status_code == 409:  # asked already by an earlier test
        recs = httpx.get(f"{lib['url']}/api/datasets/site-a/spare/deletions").json()
        return int(recs["deletions"][0]["id"])
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def _record(rid: int, dataset: str = "spare") -> dict[str, Any]:
    return {"deletion_id": rid, "dataset": dataset, "deleted_at": "2026-01-01T00:00:00+00:00",
            "files": [{"path": f"datasets/{dataset}/data.parquet", "sha256": "c" * 64,
                       "bytes": 10}]}


def test_forged_and_misdirected_deletion_records_are_refused(lib: dict[str, Any]) -> None:
    rid = _deletion(lib)
    url = lib["url"]
    # Another key claiming to be site A; site B answering site A's deletion; an unknown id;
    # the right site naming another dataset; files that are not hashes.
    r = _post(url, "/api/federation/deletions",
              _sign("site-a", "dataset.deleted", _record(rid), key=FORGER))
    assert r.status_code == 401
    r = _post(url, "/api/federation/deletions", _sign("site-b", "dataset.deleted", _record(rid)))
    assert r.status_code == 404
    r = _post(url, "/api/federation/deletions",
              _sign("site-a", "dataset.deleted", _record(rid + 1000)))
    assert r.status_code == 404
    r = _post(url, "/api/federation/deletions",
              _sign("site-a", "dataset.deleted", _record(rid, "visits")))
    assert r.status_code == 422
    bad = {**_record(rid), "files": [{"path": "x", "sha256": "short", "bytes": 1}]}
    r = _post(url, "/api/federation/deletions", _sign("site-a", "dataset.deleted", bad))
    assert r.status_code == 422
    for body in ({**_record(rid), "deletion_id": True}, {**_record(rid), "deletion_id": "1"}):
        r = _post(url, "/api/federation/deletions", _sign("site-a", "dataset.deleted", body))
        assert r.status_code == 422
    recs = httpx.get(f"{url}/api/datasets/site-a/spare/deletions").json()["deletions"]
    assert [d["state"] for d in recs] == ["requested"]
    assert httpx.get(f"{url}/api/register", params={"kind": "dataset.deleted"}
                     ).json()["entries"] == []
    # The genuine record is taken once; a second copy changes nothing.
    r = _post(url, "/api/federation/deletions", _sign("site-a", "dataset.deleted", _record(rid)))
    assert r.status_code == 200 and r.json()["accepted"] is True
    r = _post(url, "/api/federation/deletions", _sign("site-a", "dataset.deleted", _record(rid)))
    assert r.status_code == 200 and r.json()["accepted"] is False
    assert len(httpx.get(f"{url}/api/register", params={"kind": "dataset.deleted"}
                         ).json()["entries"]) == 1


@pytest.mark.parametrize("kind,route,body", [
    ("poll", "poll", {"wait": 0}), ("publish", "publish", {"datasets": []}),
    ("status", "status", _status_body())])
def test_a_pending_datasite_is_refused_saying_who_approves(
        lib: dict[str, Any], kind: str, route: str, body: dict[str, Any]) -> None:
    r = _post(lib["url"], f"/api/federation/{route}", _sign("site-pending", kind, body))
    assert r.status_code == 403, r.text
    msg = r.json()["error"]["message"]
    assert "waiting for approval" in msg and "a data steward of 'org-a'" in msg


@pytest.mark.parametrize("kind,route,body", [
    ("poll", "poll", {"wait": 0}), ("publish", "publish", {"datasets": []}),
    ("status", "status", _status_body())])
def test_a_retired_datasite_is_refused(lib: dict[str, Any], kind: str, route: str,
                                       body: dict[str, Any]) -> None:
    r = _post(lib["url"], f"/api/federation/{route}", _sign("site-gone", kind, body))
    # Its keys were revoked (refused as an envelope) and it is retired (refused as a party).
    assert r.status_code in (401, 403), r.text
    assert any(w in r.json()["error"]["message"] for w in ("revoked", "retired"))


def test_a_retired_datasite_cannot_come_back_by_registering_again(lib: dict[str, Any]
                                                                  ) -> None:
    r = _post(lib["url"], "/api/federation/register", _sign("site-gone", "register", {
        "datasite_id": "site-gone", "org": "org-a", "name": "back",
        "public_key": KEYS["site-gone"].public_b64}), lib["tokens"]["steward_A"])
    assert r.status_code in (201, 401, 409), r.text
    assert _site(lib, "site-gone")["state"] == "retired"
    listed = httpx.get(f"{lib['url']}/api/datasets", params={"q": "visits"}).json()
    assert "site-gone/visits" not in {d["id"] for d in listed["results"]}


def test_joining_for_another_organisation_only_ever_waits(lib: dict[str, Any]) -> None:
    """A steward of org B (or anyone) may ask to join org A, but the site waits for A."""
    key = SigningKey.generate()
    r = _post(lib["url"], "/api/federation/join", seal(
        key, sender="site-sneaky", recipient="hub", kind="register", body={
            "datasite_id": "site-sneaky", "org": "org-a", "name": "sneaky",
            "public_key": key.public_b64}), lib["tokens"]["steward_B"])
    assert r.status_code == 201 and r.json()["datasite"]["state"] == "pending"
    r = _post(lib["url"], "/api/datasites/site-sneaky/approve", {}, lib["tokens"]["steward_B"])
    assert r.status_code == 403


@pytest.mark.parametrize("bad", ["UPPER", "a", "x" * 300, "..", "a%2Fb", "%00", "site a"])
def test_malformed_ids_are_refused_cleanly(lib: dict[str, Any], bad: str) -> None:
    admin = lib["tokens"]["admin"]
    url = lib["url"]
    for path, body in ((f"/api/datasites/{bad}/approve", {}),
                       (f"/api/datasites/{bad}/retire", {"reason": "Malformed id."}),
                       (f"/api/datasets/{bad}/{bad}/withdraw", {"reason": "Malformed."}),
                       (f"/api/datasets/{bad}/{bad}/delete", {}),
                       (f"/api/projects/{bad}/close", {"reason": "Malformed id."})):
        r = httpx.post(f"{url}{path}", json=body, timeout=10,
                       headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code in (404, 405, 422), f"{path}: {r.status_code} {r.text}"
    r = httpx.get(f"{url}/api/datasites/{bad}/status", timeout=10)
    assert r.status_code in (404, 422)


def test_a_short_reason_is_refused_and_changes_nothing(lib: dict[str, Any]) -> None:
    r = _post(lib["url"], "/api/datasites/site-b/retire", {"reason": "no"},
              lib["tokens"]["admin"])
    assert r.status_code == 422
    assert _site(lib, "site-b")["state"] == "approved"

"""Attacks that tried to stop a datasite for good, against a real hub process.

An anonymous query whose answer cannot be signed (an integer beyond 2^53, NaN) used to crash
the datasite, and the stored reply crashed it again on every restart; an answer over the hub's
body limit was re-sent before every poll, so no new work was taken; slow queries, answered one
at a time, starved everyone else. The datasite runs in this process (so a test can hand a
handler a poisoned answer); the hub is the real ``ndl hub``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from ndl.cli.app import app
from ndl.core.envelope import seal
from ndl.datasite import agent as agent_module
from ndl.datasite.agent import MAX_ATTEMPTS, Agent
from ndl.datasite.store import DatasiteStore, LocalDataset
from ndl.federation.models import Message
from ndl.testing import HubProcess, stop_all, write_dataset

TRUST = "Northshire NHS Foundation Trust"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    h = HubProcess(tmp_path_factory.mktemp("hub"),
                   extra_args=["--query-timeout", "30", "--lease-seconds", "3"])
    h.create_org("nhs-trust", TRUST, "nhs")
    h.create_org("dfe", "Department for Education", "education")
    tokens = {"dfe": h.create_user("dee", ["steward"], org="dfe")}
    try:
        h.start()
        yield {"hub": h, "url": h.url, "tokens": tokens}
    finally:
        stop_all(h)


class Site:
    """A DfE datasite with one open dataset, ``wards``; ``start()`` runs its loop."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.store = agent.store
        self.loop = threading.Thread(target=agent.run, daemon=True)

    def start(self) -> threading.Thread:
        self.loop.start()
        return self.loop


@contextmanager
def running_site(hub: dict[str, Any], root: Path, site_id: str, *, start: bool = True,
                 publisher: str = "Department for Education") -> Iterator[Site]:
    write_dataset(root, "wards", pa.table({"ward": ["A", "B", "C"], "n": [1, 2, 3]}),
                  tier="open", title="Wards", publisher=publisher)
    agent = Agent(DatasiteStore(root), hub["url"], datasite_id=site_id, org="dfe",
                  token=hub["tokens"]["dfe"], poll_wait=1)
    agent.register()
    agent.publish()
    site = Site(agent)
    if start:
        site.start()
    try:
        yield site
    finally:
        agent.stop()
        if site.loop.is_alive():
            site.loop.join(timeout=30)
        agent.close()


def sql(hub: dict[str, Any], site: str, text: str) -> httpx.Response:
    return httpx.post(f"{hub['url']}/api/datasets/{site}/wards/sql",
                      json={"sql": text, "limit": 100}, timeout=60)


def poisoned(answers: dict[str, Any]) -> Any:
    """An open_sql handler that returns ``answers[marker]`` when the SQL names the marker."""
    real = agent_module.HANDLERS["open_sql"]

    def handler(agent: Agent, ds: LocalDataset, body: dict[str, Any]) -> dict[str, Any]:
        for marker, answer in answers.items():
            if marker in str(body.get("sql")):
                if callable(answer):
                    result: dict[str, Any] = answer()
                    return result
                return {"columns": ["x"], "rows": answer, "truncated": False, "limit": 100}
        return real(agent, ds, body)

    return handler


def test_an_answer_that_cannot_be_signed_is_an_error_and_the_datasite_lives_on(
    hub: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(agent_module.HANDLERS, "open_sql", poisoned({
        "'big'": [[9007199254740993]], "'nan'": [[math.nan]]}))
    with running_site(hub, tmp_path / "site", "jam-sign") as site:
        for marker in ("'big'", "'nan'"):
            r = sql(hub, "jam-sign", f"SELECT {marker} AS x")
            assert r.status_code == 422, r.text
            assert "cannot be signed" in r.json()["error"]["message"]
        ok = sql(hub, "jam-sign", "SELECT count(*) AS n FROM data")
        assert ok.status_code == 200, ok.text
        assert ok.json()["rows"] == [[3]]
        # The hub answers the researcher as it stores the reply; the datasite marks it sent
        # when the hub's response reaches it, a moment later.
        deadline = time.monotonic() + 10
        while site.store.unsent() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert site.store.unsent() == [] and site.store.parked() == []


def test_an_answer_over_the_size_limit_is_refused_at_the_datasite(
    hub: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(agent_module.HANDLERS, "open_sql", poisoned({
        "'huge'": [["x" * 2_100_000]]}))
    with running_site(hub, tmp_path / "site", "jam-size"):
        r = sql(hub, "jam-size", "SELECT 'huge' AS s")
        assert r.status_code == 413, r.text
        assert "bytes a reply can carry" in r.json()["error"]["message"]
        ok = sql(hub, "jam-size", "SELECT count(*) AS n FROM data")
        assert ok.status_code == 200 and ok.json()["rows"] == [[3]]


def test_a_stored_reply_that_cannot_be_sent_is_parked_and_shown(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    """A reply left in the state file by an older datasite must not stop this one."""
    root = tmp_path / "site"
    with running_site(hub, root, "jam-stored", start=False) as site:
        site.store.mark_working("left-over")
        site.store.mark_done("left-over", {"ok": True, "result": {"x": math.nan}})
        loop = site.start()
        ok = sql(hub, "jam-stored", "SELECT count(*) AS n FROM data")
        assert ok.status_code == 200 and ok.json()["rows"] == [[3]]
        deadline = time.monotonic() + 15
        while not site.store.parked() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p.message_id for p in site.store.parked()] == ["left-over"]
        # The hub hands the answer to the asker as soon as it has it; the datasite marks its
        # reply sent when the hub's acknowledgement reaches it, a moment later.
        while site.store.unsent() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert loop.is_alive() and site.store.unsent() == []
        shown = CliRunner().invoke(app, ["datasite", "status", "--dir", str(root)])
        assert shown.exit_code == 0, shown.output
        assert "parked left-over" in shown.output and "would not take" in shown.output


def test_a_message_that_keeps_killing_the_datasite_is_parked(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    with running_site(hub, tmp_path / "site", "jam-crash", start=False) as site:
        answer: dict[str, httpx.Response] = {}
        asker = threading.Thread(target=lambda: answer.setdefault(
            "r", sql(hub, "jam-crash", "SELECT count(*) AS n FROM data")))
        asker.start()
        message_id = None
        deadline = time.monotonic() + 20
        while message_id is None and time.monotonic() < deadline:
            with hub["hub"].db.read() as s:
                message_id = s.scalar(select(Message.id).where(
                    Message.datasite_id == "jam-crash"))
            time.sleep(0.1)
        assert message_id is not None
        for _ in range(MAX_ATTEMPTS):  # as if the datasite died under it each time
            site.store.mark_working(message_id)
        site.start()
        asker.join(timeout=40)
        r = answer["r"]
        assert r.status_code == 500 and "gave up" in r.json()["error"]["message"]
        assert [p.message_id for p in site.store.parked()] == [message_id]
        ok = sql(hub, "jam-crash", "SELECT count(*) AS n FROM data")
        assert ok.status_code == 200 and ok.json()["rows"] == [[3]]


def test_slow_work_does_not_hold_up_other_work(
    hub: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow() -> dict[str, Any]:
        time.sleep(5)
        return {"columns": ["x"], "rows": [[1]], "truncated": False, "limit": 100}

    monkeypatch.setitem(agent_module.HANDLERS, "open_sql", poisoned({"'slow'": slow}))
    with running_site(hub, tmp_path / "site", "jam-slow"):
        results: list[int] = []
        slow_ones = [threading.Thread(target=lambda: results.append(
            sql(hub, "jam-slow", "SELECT 'slow' AS x").status_code)) for _ in range(4)]
        for t in slow_ones:
            t.start()
        time.sleep(1.0)  # the slow ones are leased and running
        started = time.monotonic()
        r = httpx.post(f"{hub['url']}/api/datasets/jam-slow/wards/query",
                       json={"by": ["ward"]}, timeout=60)
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert took < 4.0, f"a cheap count waited {took:.1f} s behind slow SQL"
        for t in slow_ones:
            t.join(timeout=60)
        assert results == [200, 200, 200, 200]


@pytest.mark.parametrize("wait", ["nan", "NaN", "inf", "-inf", "1e999", True, [], {"a": 1}])
def test_a_poll_wait_that_is_not_a_finite_number_is_refused(
    hub: dict[str, Any], tmp_path: Path, wait: Any
) -> None:
    store = DatasiteStore(tmp_path / "site")
    site = f"jam-wait-{abs(hash(str(wait))) % 10_000}"
    agent = Agent(store, hub["url"], datasite_id=site, org="dfe", token=hub["tokens"]["dfe"])
    try:
        agent.register()
        env = seal(store.key, sender=site, recipient="hub", kind="poll", body={"wait": wait})
        started = time.monotonic()
        r = httpx.post(f"{hub['url']}/api/federation/poll", json=env, timeout=30)
        assert r.status_code == 422, r.text
        assert "finite number" in r.json()["error"]["message"]
        assert time.monotonic() - started < 10
    finally:
        agent.close()


def test_a_datasite_publishes_only_as_its_own_organisation(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    """A DfE datasite whose metadata names the NHS trust is listed, and found, as the DfE."""
    with running_site(hub, tmp_path / "site", "dfe-posing", start=False, publisher=TRUST):
        detail = httpx.get(f"{hub['url']}/api/datasets/dfe-posing/wards").json()
        assert detail["publisher"] == "Department for Education" and detail["org"] == "dfe"
        as_trust = httpx.get(f"{hub['url']}/api/datasets", params={"publisher": TRUST}).json()
        assert all(d["org"] == "nhs-trust" for d in as_trust["results"])
        everything = httpx.get(f"{hub['url']}/api/datasets", params={"limit": 100}).json()
        assert TRUST not in everything["facets"]["publisher"]
        reg = httpx.get(f"{hub['url']}/api/register",
                        params={"kind": "datasite.registered", "limit": 1000}).json()
        entry = next(e for e in reg["entries"] if e["subject"] == "dfe-posing")
        assert entry["actor"] == "steward@dfe"  # by role and organisation, not by name

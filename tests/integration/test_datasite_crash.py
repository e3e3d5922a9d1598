"""A datasite killed mid-query: the work is redelivered to it, restarted, and answered once.

Hub and datasite are real processes with the hub's default lease: 8 s, renewed by heartbeats
while the query runs, so once the datasite dies the message is offered again within seconds
(with the old 30 s lease, as long as the caller's timeout, the caller gave up first); the
datasite's own record of the message keeps it exactly-once. The caller's timeout is 60 s here
only because restarting a datasite on a loaded test machine can take 20 s or more.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import select

from ndl.core.db import utcnow
from ndl.demo.network import supervise
from ndl.federation.models import Message
from ndl.testing import DatasiteProcess, HubProcess, stop_all, write_dataset

# Seconds of work on an idle machine, several on a busy one; well inside the 10 s SQL limit.
SLOW_SQL = "SELECT count(*) AS n FROM range(10000000) t(i) WHERE hash(i) % 1000 = 7"


def _message_state(root: Path, message_id: str) -> tuple[str, int] | None:
    """The datasite's own record of a message (read-only, beside the running datasite)."""
    db = root / "state.sqlite"
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT state, attempts FROM messages WHERE message_id = ?",
                          (message_id,)).fetchone()
    except sqlite3.OperationalError:  # the table is being created
        return None
    finally:
        con.close()
    return (str(row[0]), int(row[1])) if row else None


def test_work_on_a_killed_datasite_is_redelivered_and_answered_once(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub", extra_args=["--query-timeout", "60"])
    hub.create_org("dfe", "Department for Education", "education")
    steward = hub.create_user("dee", ["steward"], org="dfe")
    root = tmp_path / "site"
    write_dataset(root, "wards", pa.table({"ward": ["A", "B", "C"]}), tier="open")
    site = DatasiteProcess(root, hub.url, org="dfe", token=steward, poll_wait=2)
    try:
        hub.start()
        site.start(wait_online=False)
        site.wait_online(timeout=90)
        answers: list[httpx.Response] = []
        asker = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{hub.url}/api/datasets/dfe/wards/sql", json={"sql": SLOW_SQL}, timeout=90)))
        asker.start()

        message_id, state = None, None
        deadline = time.monotonic() + 60
        while state is None or state[0] != "working":
            assert time.monotonic() < deadline, f"the work never started:\n{site.log()}"
            if message_id is None:
                with hub.db.read() as s:
                    message_id = s.scalar(select(Message.id).where(Message.datasite_id == "dfe"))
            if message_id is not None:
                state = _message_state(root, message_id)
                assert state is None or state[0] == "working", "the query finished too soon"
            time.sleep(0.02)
        assert message_id is not None
        site.kill()  # SIGKILL, mid-query: no chance to answer or to say goodbye
        killed_at = time.monotonic()
        with hub.db.read() as s:
            msg = s.get(Message, message_id)
            assert msg is not None and msg.state == "leased" and msg.lease_until is not None
            # The lease runs out within the default 8 s (plus a beat) of the datasite's death.
            assert (msg.lease_until - utcnow()).total_seconds() <= 8.5

        site.start(wait_online=False)
        asker.join(timeout=90)
        assert answers, "the caller got no answer"
        r = answers[0]
        assert r.status_code == 200, r.text
        assert r.json()["columns"] == ["n"] and isinstance(r.json()["rows"][0][0], int)
        assert time.monotonic() - killed_at < 60

        # Delivered twice (the second time after the lease lapsed), done and answered once.
        with hub.db.read() as s:
            msg = s.get(Message, message_id)
            assert msg is not None and msg.state == "answered" and msg.attempts == 2
        assert _message_state(root, message_id) == ("done", 2)
        answered = httpx.get(f"{hub.url}/api/register",
                             params={"kind": "query.answered", "limit": 1000}).json()["entries"]
        assert [e["subject"] for e in answered].count(message_id) == 1
    finally:
        stop_all(site, hub)


def _proc(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_the_demo_restarts_a_crashed_datasite_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One dead datasite no longer stops the whole demo network."""
    sleeper = "import time; time.sleep(60)"
    crashing = _proc("raise SystemExit(3)")
    procs = [("hub", _proc(sleeper)), ("datasite-dfe", crashing)]
    restarted: list[str] = []

    def restart(name: str) -> subprocess.Popen[bytes]:
        restarted.append(name)
        return _proc(sleeper)

    stop = threading.Event()
    why: list[str] = []
    watcher = threading.Thread(target=lambda: why.append(
        supervise(procs, restart, stop=stop, tick=0.05)))
    watcher.start()
    try:
        deadline = time.monotonic() + 60
        while procs[1][1] is crashing and time.monotonic() < deadline:
            time.sleep(0.05)
        assert restarted == ["datasite-dfe"]
        assert procs[1][1].poll() is None  # the new one is running
        procs[0][1].kill()  # the hub going away does end the demo
        watcher.join(timeout=60)
        assert why and "the hub stopped" in why[0]
        assert "datasite-dfe stopped (exit 3); restarting it" in capsys.readouterr().out
    finally:
        stop.set()
        for _, p in procs:
            p.kill()
            p.wait()


def test_the_demo_stops_when_a_datasite_keeps_crashing() -> None:
    procs = [("hub", _proc("import time; time.sleep(60)")),
             ("datasite-dfe", _proc("raise SystemExit(3)"))]
    try:
        why = supervise(procs, lambda _name: _proc("raise SystemExit(3)"), tick=0.05)
        assert why.startswith("datasite-dfe stopped 5 times within a minute")
    finally:
        for _, p in procs:
            p.kill()
            p.wait()

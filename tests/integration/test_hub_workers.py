"""Several hub processes over one PostgreSQL database behave as one hub.

Hub A is one ``ndl hub`` process; W is ``ndl hub --workers 3`` (uvicorn's supervisor
running three workers on another port): four processes over one database with one key. A
datasite long-polls A while callers ask through W. Every process waits with its database
re-check set to 30 s (``--wake-recheck 30``, past the 20 s query timeout) and the datasite's
poll waits 8 s, so answers that come back in well under a second came by LISTEN/NOTIFY,
not by a timer.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
import sqlalchemy as sa

from ndl.client import Client
from ndl.testing import DatasiteProcess, HubProcess, stop_all, write_dataset

SLOW_RECHECK = ["--wake-recheck", "30", "--query-timeout", "20"]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def module_pg(pg_server: str) -> Iterator[str]:
    """A database of this module's own (pg_url's is emptied by each test that uses it)."""
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    name = f"ndl_workers_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@dataclass
class Hubs:
    a: HubProcess      # the datasite polls this one
    w: HubProcess      # --workers 3
    site: DatasiteProcess

    @property
    def all(self) -> list[HubProcess]:
        return [self.a, self.w]


def _start_all(hubs: list[HubProcess]) -> None:
    """Start hubs side by side (each takes seconds to import on a busy machine)."""
    for hub in hubs:
        hub.spawn()
    for hub in hubs:
        hub.wait_ready()


@pytest.fixture(scope="module")
def hubs(module_pg: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hubs]:
    root = tmp_path_factory.mktemp("workers")
    a = HubProcess(root / "a", module_pg, extra_args=SLOW_RECHECK)
    (root / "w").mkdir()  # one hub: every process holds the same key
    shutil.copy(root / "a" / "hub-key.pem", root / "w" / "hub-key.pem")
    w = HubProcess(root / "w", module_pg, workers=3, extra_args=SLOW_RECHECK)
    a.create_org("nhs-trust", "Northshire NHS Foundation Trust", "nhs")
    steward = a.create_user("sam", ["steward"], org="nhs-trust")
    a.create_user("alice", ["researcher"], password=PASSWORD)
    site_dir = root / "site"
    write_dataset(site_dir, "ward-population", pa.table({
        "ward": ["A", "B", "C"], "population": [100, 5, 7]}), tier="open",
        title="Ward population")
    site = DatasiteProcess(site_dir, a.url, org="nhs-trust", token=steward,
                           poll_wait=8)  # a poll left alone waits 8 s for work
    try:
        _start_all([a, w])
        site.start()
        yield Hubs(a, w, site)
    except BaseException:
        stop_all(site, a, w, show_logs=True)
        raise
    stop_all(site, a, w)


def _timed_query(url: str) -> float:
    with Client(url, "") as c:
        start = time.monotonic()
        ans = c.query("nhs-trust/ward-population", count_by="ward")
        took = time.monotonic() - start
    assert ans.rows == [["A", 1], ["B", 1], ["C", 1]]
    return took


def test_a_query_through_one_process_is_answered_through_another(hubs: Hubs) -> None:
    """The datasite polls A; the caller asks W. The new message wakes A's waiting poll by
    NOTIFY, and the datasite's reply to A wakes the waiting caller in W the same way: with
    30 s timers and an 8 s poll, only NOTIFY can make this fast."""
    _timed_query(hubs.w.url)  # warm-up: the datasite's first open SQL starts its engine
    took = [_timed_query(hubs.w.url) for _ in range(8)]
    print(f"round trips through another process (s): {[round(t, 3) for t in took]}")
    assert statistics.median(took) < 1.0, took
    assert max(took) < 3.0, took


def test_workers_3_runs_three_processes(hubs: Hubs) -> None:
    log = hubs.w.log()
    assert log.count("Started server process") == 3, log
    assert log.count("Application startup complete") == 3, log


def test_a_lockout_holds_whichever_process_the_next_attempt_reaches(hubs: Hubs) -> None:
    """Ten failed sign-ins spread over four processes lock the account from that address
    in all of them (no one process has seen more than five)."""
    for i in range(10):
        r = httpx.post(f"{hubs.all[i % 2].url}/api/auth/login",
                       json={"username": "alice", "password": f"wrong {i}"}, timeout=30)
        assert r.status_code == 401, r.text
    for hub in [hubs.a, hubs.w, hubs.w, hubs.w]:
        r = httpx.post(f"{hub.url}/api/auth/login",
                       json={"username": "alice", "password": PASSWORD}, timeout=30)
        assert r.status_code == 429, r.text
        assert "too many failed sign-ins" in r.json()["error"]["message"]


def test_the_anonymous_sql_budget_holds_across_processes(hubs: Hubs) -> None:
    """Anonymous reads spread over four processes spend one budget (a burst of 30, then one
    a second): the first refusal comes after about 30 + elapsed seconds of reads, not
    several bursts' worth, and then every process refuses. Unknown datasets: the budget is
    spent before the lookup, so no datasite is bothered."""
    start, allowed = time.monotonic(), 0
    while True:
        r = httpx.get(f"{hubs.all[allowed % 2].url}/api/datasets/nobody/n{allowed}/rows",
                      timeout=30)
        if r.status_code == 429:
            break
        assert r.status_code == 404, r.text
        allowed += 1
        assert allowed <= 200, "never refused: the budget is not shared"
    refused_at = time.monotonic()
    assert allowed <= 30 + (refused_at - start) * 1.0 + 1, (allowed, refused_at - start)
    # From then on the bucket refills at one a second, whichever process is asked.
    after = [httpx.get(f"{hub.url}/api/datasets/nobody/m{i}/rows", timeout=30).status_code
             for i, hub in enumerate([hubs.a, hubs.w] * 3)]
    assert after.count(404) <= 1 + (time.monotonic() - refused_at) * 1.0, after
    assert set(after) <= {404, 429}


def test_workers_3_refuses_sqlite_with_the_fix(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "ndl", "hub", "--data-dir", str(tmp_path),
                          "--workers", "3"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "--workers 3 needs PostgreSQL" in out.stderr + out.stdout
    assert "postgresql+psycopg://" in out.stderr + out.stdout
    assert not (tmp_path / "hub.db").exists()  # refused before anything was created

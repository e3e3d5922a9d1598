"""Attacks on the hub run as several processes over one PostgreSQL database.

* Anyone who can connect to the database can NOTIFY on the hub's channel: huge, odd or
  flooding payloads must not crash or wedge a process's listener.
* Spreading requests over processes must not multiply a caller's allowance: sign-in
  failures and the anonymous SQL budget are counted once, in the database.

Two apps built by create_app over one database stand for two hub processes (each has its
own state, limiters and wake-up bus, as a process has).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from ndl.access import accounts
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings
from ndl.hub.wakeups import CHANNEL, Notifier, PgWakeBus, conninfo


class Listener:
    """One process's Notifier and bus, on its own event loop thread."""

    def __init__(self, db_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.notifier, self.bus = Notifier(recheck=30.0), PgWakeBus(db_url)

        async def start() -> None:
            self.notifier.start(self.bus)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        assert self.bus.connected.wait(10)

    def woken_within(self, key: str, seconds: float, send: object) -> bool:
        async def wait() -> None:
            await self.notifier.event(key).wait()

        fut = asyncio.run_coroutine_threadsafe(wait(), self.loop)
        time.sleep(0.05)
        send()  # type: ignore[operator]
        try:
            fut.result(seconds)
            return True
        except TimeoutError:
            fut.cancel()
            return False

    def close(self) -> None:
        self.notifier.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def listener(pg_url: str) -> Iterator[Listener]:
    got = Listener(pg_url)
    yield got
    got.close()


def _raw_notify(pg_url: str, payloads: list[str]) -> None:
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        with conn.transaction():  # one transaction: delivered together, as a flood would be
            for p in payloads:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, p))


def test_huge_and_odd_payloads_do_not_crash_the_listener(listener: Listener, pg_url: str
                                                         ) -> None:
    _raw_notify(pg_url, ["x" * 7999, "", "msg:" + "é" * 3000, "'; DROP TABLE users; --",
                         "\u202e\ufeffsite:x", "site:\n\r\t", "*", "%s%s%n"])
    time.sleep(0.5)
    assert listener.bus.reconnects == 0 and listener.bus.connected.is_set()
    # Still listening: a real wake-up from another connection arrives.
    assert listener.woken_within("msg:ok", 3, lambda: _raw_notify(pg_url, ["msg:ok"]))


def test_a_flood_of_distinct_keys_is_survived(listener: Listener, pg_url: str) -> None:
    _raw_notify(pg_url, [f"msg:{i}" for i in range(25_000)])
    time.sleep(1.0)
    assert listener.bus.reconnects == 0 and listener.bus.connected.is_set()
    assert listener.woken_within("msg:after", 5, lambda: _raw_notify(pg_url, ["msg:after"]))


def test_other_channels_are_not_heard(listener: Listener, pg_url: str) -> None:
    def other_channel() -> None:
        with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
            conn.execute("SELECT pg_notify('not_ndl', 'msg:x')")

    assert not listener.woken_within("msg:x", 0.5, other_channel)


@pytest.fixture
def two_hubs(pg_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    settings = HubSettings(db_url=pg_url, data_dir=tmp_path / "hub", secure_cookies=False,
                           login_failures_allowed=3, anonymous_sql_burst=6,
                           anonymous_sql_per_minute=1.0)
    first = create_app(settings)
    second = create_app(settings, migrate=False)  # one database, one key: one hub
    with first.state.hub.db.write() as s:
        accounts.create_user(s, "alice", roles=["researcher"], password="correct horse")
    with TestClient(first) as a, TestClient(second) as b:
        yield a, b


def test_spreading_failed_sign_ins_over_processes_gains_nothing(
        two_hubs: tuple[TestClient, TestClient]) -> None:
    a, b = two_hubs
    for i in range(3):
        r = (a, b)[i % 2].post("/api/auth/login", json={"username": "alice",
                                                        "password": f"guess {i}"})
        assert r.status_code == 401
    for c in (a, b):
        r = c.post("/api/auth/login", json={"username": "alice", "password": "correct horse"})
        assert r.status_code == 429, r.text


def test_spreading_anonymous_reads_over_processes_gains_nothing(
        two_hubs: tuple[TestClient, TestClient]) -> None:
    a, b = two_hubs
    for i in range(6):
        assert (a, b)[i % 2].get(f"/api/datasets/x/y{i}/rows").status_code == 404
    for c in (a, b):
        r = c.get("/api/datasets/x/y/rows")
        assert r.status_code == 429, r.text
        assert "too many" in r.json()["error"]["message"]

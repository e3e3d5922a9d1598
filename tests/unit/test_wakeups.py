"""Wake-ups across hub processes by PostgreSQL LISTEN/NOTIFY (ndl.hub.wakeups).

Each Notifier with its own PgWakeBus stands for one hub process: its own connections, its
own event loop thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ndl.core.db import Database
from ndl.hub.wakeups import CHANNEL, MAX_KEY_BYTES, Notifier, PgWakeBus


class Process:
    """A Notifier on its own event loop in a thread, as in one hub process."""

    def __init__(self, db_url: str | None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.notifier = Notifier(recheck=30.0)
        self.bus = PgWakeBus(db_url) if db_url else None

        async def start() -> None:
            self.notifier.start(self.bus)

        self.run(start())
        if self.bus is not None:
            assert self.bus.connected.wait(10), "the listener did not connect"

    def run(self, coro: object, timeout: float = 10.0) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def waiter(self, key: str) -> asyncio.Future[float]:
        """Start waiting for ``key``; the future gives the monotonic time it woke."""

        async def wait() -> float:
            await self.notifier.event(key).wait()
            return time.monotonic()

        fut = asyncio.run_coroutine_threadsafe(wait(), self.loop)
        time.sleep(0.05)  # let it reach the wait
        return fut  # type: ignore[return-value]

    def close(self) -> None:
        self.notifier.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[Process, Process]]:
    db = Database(pg_url)
    db.migrate()
    db.dispose()
    a, b = Process(pg_url), Process(pg_url)
    yield a, b
    a.close()
    b.close()


def test_a_notify_in_one_process_wakes_a_waiter_in_another(two: tuple[Process, Process]
                                                            ) -> None:
    a, b = two
    woke = b.waiter("msg:1")
    other = b.waiter("msg:2")
    sent = time.monotonic()
    a.notifier.notify("msg:1")
    assert woke.result(5) - sent < 0.5
    time.sleep(0.2)
    assert not other.done()          # only that key's waiters
    other.cancel()


def test_notify_from_a_worker_thread_wakes_at_once(two: tuple[Process, Process]) -> None:
    a, _ = two
    woke = a.waiter("site:x")
    sent = time.monotonic()
    threading.Thread(target=a.notifier.notify, args=("site:x",)).start()
    assert woke.result(5) - sent < 0.2


def test_the_listener_reconnects_after_its_connection_is_killed(
        two: tuple[Process, Process], pg_url: str) -> None:
    a, b = two
    assert b.bus is not None
    pid = b.bus.listener_pid
    waiting = b.waiter("work:7")
    admin = sa.create_engine(pg_url)
    with admin.connect() as c:
        assert c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    admin.dispose()
    # Notifications sent while it was down are lost: every waiter is woken to look again.
    waiting.result(10)
    deadline = time.monotonic() + 10
    while b.bus.reconnects < 1 or not b.bus.connected.is_set():
        assert time.monotonic() < deadline, "the listener did not reconnect"
        time.sleep(0.05)
    assert b.bus.listener_pid != pid
    woke = b.waiter("work:8")
    sent = time.monotonic()
    a.notifier.notify("work:8")
    assert woke.result(5) - sent < 0.5


def test_notify_on_commit_wakes_only_after_the_commit(two: tuple[Process, Process],
                                                      pg_url: str) -> None:
    a, b = two
    db = Database(pg_url)
    try:
        rolled = b.waiter("msg:rolled-back")
        with pytest.raises(RuntimeError), db.write() as s:
            a.notifier.notify_on_commit(s, "msg:rolled-back")
            raise RuntimeError("the transaction fails")
        woke = b.waiter("msg:committed")
        with db.write() as s:
            a.notifier.notify_on_commit(s, "msg:committed")
            s.execute(sa.text("SELECT 1"))
            time.sleep(0.3)
            assert not woke.done()       # not before the commit
            committed = time.monotonic()
        assert woke.result(5) - committed < 0.5
        time.sleep(0.2)
        assert not rolled.done()         # a rolled-back change wakes nobody
        rolled.cancel()
    finally:
        db.dispose()


def test_a_key_too_long_for_notify_wakes_this_process_and_breaks_nothing(
        two: tuple[Process, Process], pg_url: str) -> None:
    a, b = two
    key = "msg:" + "x" * MAX_KEY_BYTES
    here, there = a.waiter(key), b.waiter(key)
    a.notifier.notify(key)                                 # not sent: no error
    here.result(5)
    db = Database(pg_url)
    try:
        with db.write() as s:                              # nor a failed transaction
            a.notifier.notify_on_commit(s, key)
    finally:
        db.dispose()
    time.sleep(0.3)
    assert not there.done()
    there.cancel()
    assert a.bus is not None and a.bus.connected.is_set()


def test_sqlite_has_no_bus_and_wakes_in_process() -> None:
    p = Process(None)
    try:
        assert p.notifier.bus is None and p.notifier.every(0.25) == 30.0
        woke = p.waiter("msg:1")
        p.notifier.notify("msg:1")
        woke.result(5)
    finally:
        p.close()


def test_the_channel_is_fixed() -> None:
    assert CHANNEL == "ndl_wake"


def test_notify_on_commit_wakes_this_process_after_the_commit_on_sqlite(tmp_path: Path
                                                                        ) -> None:
    p = Process(None)
    db = Database(str(tmp_path / "hub.db"))
    try:
        woke = p.waiter("msg:1")
        with db.write() as s:
            p.notifier.notify_on_commit(s, "msg:1")
            s.execute(sa.text("SELECT 1"))
            time.sleep(0.2)
            assert not woke.done()
            committed = time.monotonic()
        assert woke.result(5) - committed < 0.2
    finally:
        db.dispose()
        p.close()

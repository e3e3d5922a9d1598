"""Wake-ups between requests: in one hub process, and across hub processes over PostgreSQL.

A request that waits (a datasite's long-poll, a caller waiting for an answer, someone
following a work item) waits on an :class:`asyncio.Event` per key (``site:ID``,
``msg:ID``, ``work:ID``, ...); whoever changes what it waits for calls ``notify(key)``.

With several hub processes over one PostgreSQL database the change may happen in another
process, so each process also runs a :class:`PgWakeBus`: one connection that ``LISTEN``s on
one channel (the payload is the key) and one that sends ``pg_notify``. Waiters still re-check
the database on a slower timer, a safety net for a notification lost while a connection was
down. SQLite is one process: no bus, the same events, the short timers it always had.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from fastapi import FastAPI
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

log = logging.getLogger("ndl.hub.wakeups")
T = TypeVar("T")

CHANNEL = "ndl_wake"
# PostgreSQL refuses payloads of 8000 bytes or more (and would abort the transaction that
# sent one). Keys are ids (~40 bytes); anything longer is not ours and is never sent or heeded.
MAX_KEY_BYTES = 512
# A flood of distinct keys (from anyone who can connect to the database) is bounded: past
# this many pending in one batch, every waiter is woken once instead.
MAX_PENDING = 10_000
# How often an idle listener proves its connection is alive (a silently dropped TCP
# connection raises nothing while it waits).
PING_EVERY = 10.0


def key_fits(key: str) -> bool:
    return 0 < len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES and "\x00" not in key


def conninfo(db_url: str) -> str:
    """A libpq connection string for psycopg from the hub's SQLAlchemy URL."""
    url = make_url(db_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PgWakeBus:
    """One process's LISTEN and NOTIFY connections, each on its own daemon thread.

    ``deliver`` gets a batch of keys (deduplicated) from the listener thread; ``reconnected``
    is called after the listener's connection came back (notifications sent meanwhile are
    lost, so every waiter should look again).
    """

    def __init__(self, db_url: str, *, connect_timeout: float = 5.0) -> None:
        self._conninfo = conninfo(db_url)
        self._connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._outbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._sender_pid: int | None = None
        self.connected = threading.Event()
        # Counted for tests and logs: how many times the listener had to connect again.
        self.reconnects = 0

    def start(self, deliver: Callable[[set[str] | None], None],
              reconnected: Callable[[], None]) -> None:
        for name, target in (("ndl-wake-listen", lambda: self._listen(deliver, reconnected)),
                             ("ndl-wake-send", self._send_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._outbox.put("")  # unblock the sender
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def send(self, key: str) -> None:
        """Queue ``key`` for every process (this one included); never blocks the caller."""
        if key_fits(key):
            self._outbox.put(key)
        else:
            log.warning("wake-up key of %d characters not sent to other processes",
                        len(key))

    @property
    def listener_pid(self) -> int | None:
        """The listener's server process id (tests end it with pg_terminate_backend)."""
        conn = self._listen_conn
        return conn.info.backend_pid if conn is not None and not conn.closed else None

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, autocommit=True,
                               connect_timeout=max(1, int(self._connect_timeout)),
                               keepalives=1, keepalives_idle=10, keepalives_interval=5,
                               keepalives_count=3)

    def _listen(self, deliver: Callable[[set[str] | None], None],
                reconnected: Callable[[], None]) -> None:
        backoff, first = 0.1, True
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    self._listen_conn = conn
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    if not first:
                        self.reconnects += 1
                        log.info("wake-up listener connected again")
                        reconnected()
                    first, backoff = False, 0.1
                    self._drain(conn, deliver)
            except Exception as exc:  # psycopg.Error, or a socket error under it
                if self._stop.is_set():
                    break
                self.connected.clear()
                log.warning("wake-up listener lost its database connection (%s); "
                            "connecting again in %.1f s", str(exc).strip()[:200], backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._listen_conn = None
        self.connected.clear()

    def _drain(self, conn: psycopg.Connection[Any], deliver: Callable[[set[str] | None], None]
               ) -> None:
        last_ping = time.monotonic()
        while not self._stop.is_set():
            batch: set[str] = set()
            overflow = False
            # Wait for the first (at most half a second, to notice stop), then take whatever
            # else has already arrived, and hand the loop one deduplicated batch.
            for wait, stop_after in ((0.5, 1), (0.0, None)):
                for n in conn.notifies(timeout=wait, stop_after=stop_after):
                    if n.pid == self._sender_pid:
                        continue  # our own send: this process woke its waiters already
                    if n.channel != CHANNEL or not key_fits(n.payload):
                        continue  # not ours, or not a key: never crash on what others send
                    if len(batch) < MAX_PENDING:
                        batch.add(n.payload)
                    else:
                        overflow = True
                if not batch and not overflow:
                    break
            if batch or overflow:
                deliver(None if overflow else batch)
            elif time.monotonic() - last_ping > PING_EVERY:
                conn.execute("SELECT 1")
                last_ping = time.monotonic()

    def _send_loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                first = self._outbox.get(timeout=1.0)
            except queue.Empty:
                continue
            keys = {first}
            while True:
                try:
                    keys.add(self._outbox.get_nowait())
                except queue.Empty:
                    break
            keys.discard("")
            if not keys:
                continue
            for attempt in (1, 2):
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                        self._sender_pid = conn.info.backend_pid
                    conn.execute("SELECT pg_notify(%s, k) FROM unnest(%s::text[]) AS k",
                                 (CHANNEL, sorted(keys)))
                    break
                except Exception as exc:
                    if conn is not None:
                        conn.close()
                    conn = None
                    if attempt == 2 or self._stop.is_set():
                        # Lost: the waiters' database re-check still finds the change.
                        log.warning("could not send %d wake-ups to other hub processes: %s",
                                    len(keys), str(exc).strip()[:200])
        if conn is not None:
            conn.close()


class Notifier:
    """Wake-ups per key for this process's waiters, and (with a bus) for every process's.

    ``notify`` may be called from any thread (routes run in a thread pool); the events are
    set on the event loop's thread, as asyncio requires.
    """

    def __init__(self, recheck: float | None = None) -> None:
        # Seconds between a waiter's database re-checks; None keeps each waiter's own.
        self._recheck = recheck
        self._events: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bus: PgWakeBus | None = None
        self._hooks: list[tuple[str, Callable[[str], None]]] = []
        self._on_reconnect: list[Callable[[], None]] = []

    # --- set-up ---------------------------------------------------------------------------

    def on_remote(self, prefix: str, hook: Callable[[str], None]) -> None:
        """Call ``hook(rest_of_key)`` on the event loop for each key from another process
        that starts with ``prefix`` (and once per waiter-less key as well)."""
        self._hooks.append((prefix, hook))

    def on_reconnect(self, hook: Callable[[], None]) -> None:
        self._on_reconnect.append(hook)

    def start(self, bus: PgWakeBus | None) -> None:
        """From the running event loop (the app's lifespan): remember it, start ``bus``."""
        self._loop = asyncio.get_running_loop()
        self._bus = bus
        if bus is not None:
            bus.start(self._from_listener, self._from_reconnect)

    def stop(self) -> None:
        if self._bus is not None:
            self._bus.stop()
        self._bus = None

    @property
    def bus(self) -> PgWakeBus | None:
        return self._bus

    def every(self, base: float) -> float:
        """How long a waiter may sleep between looks at the database: ``base`` (the waiter's
        own) on one process; longer when other processes' wake-ups arrive by NOTIFY."""
        if self._recheck is not None and (self._bus is None or self._bus.connected.is_set()):
            return self._recheck
        return base

    # --- waking ---------------------------------------------------------------------------

    def event(self, key: str) -> asyncio.Event:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def notify(self, key: str) -> None:
        """Wake ``key``'s waiters here and in every other process. Call it after the change
        committed (or use :meth:`notify_on_commit` inside the transaction)."""
        self._wake_local({key})
        if self._bus is not None:
            self._bus.send(key)

    def notify_on_commit(self, session: Session, key: str) -> None:
        """Wake ``key``'s waiters when ``session``'s transaction commits, never before and
        not at all if it rolls back. On PostgreSQL the NOTIFY is part of the transaction
        (the server delivers it at commit)."""
        if self._bus is not None and key_fits(key):
            session.execute(text("SELECT pg_notify(:channel, :key)"),
                            {"channel": CHANNEL, "key": key})
        sa_event.listen(session, "after_commit", lambda _s: self._wake_local({key}),
                        once=True)

    def forget(self, key: str) -> None:
        self._events.pop(key, None)

    def _wake_local(self, keys: set[str] | None) -> None:
        loop = self._loop
        if loop is None:
            self._set(keys)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._set(keys)
            return
        try:
            loop.call_soon_threadsafe(self._set, keys)
        except RuntimeError:  # the loop has closed: the hub is shutting down
            pass

    def _set(self, keys: set[str] | None) -> None:
        # None: everyone looks again.
        events = (list(self._events.values()) if keys is None
                  else [e for k in keys if (e := self._events.get(k)) is not None])
        for ev in events:
            ev.set()

    def _from_listener(self, keys: set[str] | None) -> None:
        """On the listener thread: hand the batch to the event loop."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver_remote, keys)
        except RuntimeError:
            pass

    def _deliver_remote(self, keys: set[str] | None) -> None:
        if keys is None:
            self._from_reconnect_on_loop()
            return
        # Hooks first (e.g. a work hint), so the waiter they wake sees the mark.
        for key in keys:
            for prefix, hook in self._hooks:
                if key.startswith(prefix):
                    try:
                        hook(key[len(prefix):])
                    except Exception:
                        log.exception("wake-up hook for %r failed", prefix)
        self._set(keys)

    def _from_reconnect(self) -> None:
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._from_reconnect_on_loop)
            except RuntimeError:
                pass

    def _from_reconnect_on_loop(self) -> None:
        for hook in self._on_reconnect:
            try:
                hook()
            except Exception:
                log.exception("wake-up reconnect hook failed")
        self._set(None)

    async def long_poll(self, request: Request, key: str, wait: float,
                        take: Callable[[], list[T]]) -> list[T]:
        """What ``take`` finds, as soon as it finds something, or nothing after ``wait`` s.

        Woken by ``notify(key)`` in any process; the timer is the safety net. A caller that
        went away ends the wait (and lets the hub shut down promptly).
        """
        deadline = time.monotonic() + wait
        ev = self.event(key)
        while True:
            ev.clear()  # before looking, so something queued after our look still wakes us
            found = await run_in_threadpool(take)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0 or await request.is_disconnected():
                return found
            try:
                await asyncio.wait_for(ev.wait(), timeout=min(self.every(0.25), remaining))
            except TimeoutError:
                pass


def run_wakeups(app: FastAPI) -> None:
    """Start the hub's wake-up bus (PostgreSQL only) with the app, stop it after (wraps the
    app's lifespan, as housekeeping does)."""
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        state = a.state.hub
        state.notifier.start(state.wake_bus())
        try:
            async with previous(a) as inner:
                yield inner
        finally:
            await asyncio.to_thread(state.notifier.stop)

    app.router.lifespan_context = lifespan

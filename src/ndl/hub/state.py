"""What one running hub holds: settings, database, key, wake-ups and rate limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.core.ratelimit import TokenBucket
from ndl.federation.blob_service import BlobContext
from ndl.federation.service import SqlReplayGuard
from ndl.hub.login_limits import LoginLimiter

T = TypeVar("T")


@dataclass
class HubSettings:
    """Settings for ``ndl hub``; each one is also a command-line option (see ``ndl hub --help``)."""

    db_url: str
    data_dir: Path
    query_timeout: float = 30.0
    # Short, and renewed by the datasite's heartbeats while it works: a datasite that dies
    # mid-work loses its lease in seconds, so the work is offered again (to it, restarted)
    # while the caller is still waiting.
    lease_seconds: float = 8.0
    poll_wait_max: float = 25.0
    max_body_bytes: int = 2_000_000
    login_failures_allowed: int = 10
    login_window_seconds: float = 300.0
    secure_cookies: bool = True
    # Host names /mcp answers to besides loopback (DNS-rebinding guard; see ndl.mcp.hosts).
    mcp_allowed_hosts: list[str] = field(default_factory=list)
    # Proxies (addresses or networks) whose X-Forwarded-For is believed; none by default.
    trusted_proxies: list[str] = field(default_factory=list)
    # Open SQL from one anonymous address: enough for a person or a notebook, not for
    # flooding a datasite (signed-in callers are accountable and not limited here).
    anonymous_sql_per_minute: float = 60.0
    anonymous_sql_burst: int = 30
    # How long a work item may wait and run before it expires (an export of a large dataset
    # takes minutes; a controlled job may take hours).
    work_ttl: float = 6 * 3600.0
    # How long a plain GET of an open dataset's CSV waits for its export before answering
    # with the work item's id instead.
    export_wait: float = 300.0
    # Blobs (ndl.federation.blob_service): "" keeps them under DATA_DIR/blobs; or a folder,
    # or s3://bucket[/prefix]?endpoint=URL (credentials from the AWS environment variables).
    blob_store: str = ""
    blob_quota_bytes: int = 64 * 1024**3     # per owner: finished blobs + uploads under way
    blob_ttl_seconds: float = 7 * 24 * 3600.0
    blob_chunk_bytes: int = 8 * 1024**2      # the most one upload request may carry
    blob_max_result_bytes: int = 16 * 1024**3
    blob_max_bundle_bytes: int = 256 * 1024**2
    blob_max_records_bytes: int = 16 * 1024**3
    blob_max_sealed_bytes: int = 16 * 1024**3

    @property
    def lease(self) -> float:
        """The lease actually given: never more than half the query timeout, so a lapsed
        lease always leaves the caller time to get an answer from a redelivery."""
        return max(0.5, min(self.lease_seconds, self.query_timeout / 2))


class Notifier:
    """Wake-ups between requests in this process (a new message, an answer arrived).

    Waiters also re-check the database on a short timer, so several hub processes behind one
    database still work, only with a little more latency.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, key: str) -> asyncio.Event:
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def notify(self, key: str) -> None:
        ev = self._events.get(key)
        if ev is not None:
            ev.set()

    def forget(self, key: str) -> None:
        self._events.pop(key, None)

    async def long_poll(self, request: Request, key: str, wait: float,
                        take: Callable[[], list[T]]) -> list[T]:
        """What ``take`` finds, as soon as it finds something, or nothing after ``wait`` s.

        Woken by ``notify(key)`` in this process; the short timer covers other processes. A
        caller that went away ends the wait (and lets the hub shut down promptly).
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
                await asyncio.wait_for(ev.wait(), timeout=min(0.25, remaining))
            except TimeoutError:
                pass


class WorkHints:
    """Which datasites may have work items waiting, so their polls look only then.

    Marked when this process queues work for a site or one of its work slots frees; a site
    is also looked at every ``every`` seconds whatever the marks say (work queued by another
    hub process, a lease that lapsed). Looking on every poll made each short query's round
    trip about 5% slower.
    """

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self._marked: set[str] = set()
        self._looked: dict[str, float] = {}

    def mark(self, site: str) -> None:
        self._marked.add(site)

    def due(self, site: str) -> bool:
        now = time.monotonic()
        if site in self._marked or now - self._looked.get(site, 0.0) >= self.every:
            self._marked.discard(site)
            self._looked[site] = now
            return True
        return False


@dataclass
class HubState:
    settings: HubSettings
    db: Database
    key: SigningKey
    notifier: Notifier = field(default_factory=Notifier)
    work_hints: WorkHints = field(default_factory=WorkHints)
    limiter: LoginLimiter = field(init=False)
    guard: SqlReplayGuard = field(init=False)
    # Open SQL makes a datasite work: anonymous callers get a per-address budget
    # (see ndl.query.service).
    sql_limiter: TokenBucket = field(init=False)
    blobs: BlobContext = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = LoginLimiter(
            self.settings.login_failures_allowed, self.settings.login_window_seconds
        )
        self.guard = SqlReplayGuard(self.db)
        self.blobs = BlobContext.from_settings(self.settings, self.db)
        self.sql_limiter = TokenBucket(self.settings.anonymous_sql_per_minute / 60.0,
                                       self.settings.anonymous_sql_burst)

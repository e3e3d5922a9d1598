"""What one running hub holds: settings, database, key, wake-ups and rate limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.core.ratelimit import SharedTokenBucket
from ndl.federation.blob_service import BlobContext
from ndl.federation.service import SqlReplayGuard
from ndl.hub.login_limits import SharedLoginLimiter
from ndl.hub.wakeups import Notifier, PgWakeBus

__all__ = ["HubSettings", "HubState", "Notifier", "WorkHints"]

# Between a waiter's looks at the database when PostgreSQL NOTIFY wakes it: only a safety
# net for a wake-up lost while a listener reconnected.
PG_RECHECK_SECONDS = 2.0


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
    # Seconds between a waiter's database re-checks behind the wake-ups; None: each waiter's
    # own short timer on SQLite, PG_RECHECK_SECONDS on PostgreSQL (LISTEN/NOTIFY wakes them).
    wake_recheck: float | None = None
    # A TOML file naming the OpenID Connect identity providers people may sign in with
    # (ndl.access.oidc); "" for none (local accounts only).
    oidc_config: str = ""
    # False: passwords are refused and people sign in only through those providers, each of
    # which must require MFA (SATRE 3.2.04); the demo keeps local password accounts.
    password_sign_in: bool = True
    # The security log (ndl.ledger.security_log): days kept before housekeeping drops events,
    # and whether a datasite's stewards may fetch their own organisation's events ("org")
    # or nobody but admins sees it ("none").
    security_log_days: float = 400.0
    share_security_log: str = "none"

    @property
    def lease(self) -> float:
        """The lease actually given: never more than half the query timeout, so a lapsed
        lease always leaves the caller time to get an answer from a redelivery."""
        return max(0.5, min(self.lease_seconds, self.query_timeout / 2))


class WorkHints:
    """Which datasites may have work items waiting, so their polls look only then.

    Marked when any hub process queues work for a site or one of its work slots frees (a
    mark is shared as a ``hint:SITE`` wake-up); a site is also looked at every ``every``
    seconds whatever the marks say (a lease that lapsed, a hint lost). Looking on every poll
    made each short query's round trip about 5% slower.
    """

    def __init__(self, every: float = 2.0,
                 share: Callable[[str], None] | None = None) -> None:
        self.every = every
        self.share = share
        self._marked: set[str] = set()
        self._looked: dict[str, float] = {}

    def mark(self, site: str) -> None:
        self._marked.add(site)
        if self.share is not None:
            self.share(site)

    def mark_here(self, site: str) -> None:
        """A mark another process shared: not shared again."""
        self._marked.add(site)

    def look_at_all(self) -> None:
        """Every site is due (hints may have been lost while the listener reconnected)."""
        self._looked.clear()

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
    notifier: Notifier = field(init=False)
    work_hints: WorkHints = field(default_factory=WorkHints)
    # Sign-in backoff and the anonymous SQL budget live in the database, so they hold
    # whichever hub process a request reaches.
    limiter: SharedLoginLimiter = field(init=False)
    guard: SqlReplayGuard = field(init=False)
    # Open SQL makes a datasite work: anonymous callers get a per-address budget
    # (see ndl.query.service).
    sql_limiter: SharedTokenBucket = field(init=False)
    blobs: BlobContext = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = SharedLoginLimiter(
            self.db, self.settings.login_failures_allowed, self.settings.login_window_seconds
        )
        self.guard = SqlReplayGuard(self.db)
        self.blobs = BlobContext.from_settings(self.settings, self.db)
        self.sql_limiter = SharedTokenBucket(self.db, self.settings.anonymous_sql_per_minute
                                             / 60.0, self.settings.anonymous_sql_burst)
        recheck = self.settings.wake_recheck
        if recheck is None and self.db.backend == "postgresql":
            recheck = PG_RECHECK_SECONDS
        self.notifier = Notifier(recheck)
        self.work_hints.share = lambda site: self.notifier.notify(f"hint:{site}")
        self.notifier.on_remote("hint:", self.work_hints.mark_here)
        self.notifier.on_reconnect(self.work_hints.look_at_all)

    def wake_bus(self) -> PgWakeBus | None:
        """The cross-process bus this hub needs: PostgreSQL only (SQLite is one process)."""
        return PgWakeBus(self.db.url) if self.db.backend == "postgresql" else None

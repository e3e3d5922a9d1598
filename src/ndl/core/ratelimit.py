"""Token-bucket rate limits per caller: :class:`SharedTokenBucket` in the hub's database
(the hub's; it holds across hub processes), :class:`TokenBucket` in one process's memory.

Used where one caller could otherwise starve everyone (anonymous open SQL makes a datasite
work). The database table also keeps the sign-in backoff (ndl.hub.login_limits).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Float, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base
from ndl.core.errors import RateLimited

if TYPE_CHECKING:
    from ndl.core.db import Database

# Keys longer than this are stored as a hash (a caller-chosen account name must not make a
# row too big, nor two long names share one by truncation).
MAX_KEY_CHARS = 200


class RateLimitRow(Base):
    """One limited thing: a token bucket, a sign-in pair or a source's failure window.

    ``level`` is tokens left (a bucket) or failures counted; ``since`` when the bucket was
    last filled or the window began; ``until`` when a block ends; ``seen`` the last use,
    for forgetting idle rows.
    """

    __tablename__ = "rate_limits"
    __table_args__ = (Index("ix_rate_limits_seen", "seen"),)

    key: Mapped[str] = mapped_column(String(MAX_KEY_CHARS + 20), primary_key=True)
    level: Mapped[float] = mapped_column(Float, nullable=False)
    since: Mapped[float] = mapped_column(Float, nullable=False)
    until: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    seen: Mapped[float] = mapped_column(Float, nullable=False)


def row_key(kind: str, *parts: str) -> str:
    """``kind:`` and the parts joined by a unit separator, or ``kind:#sha256`` of them when
    that would be too long."""
    raw = "\x1f".join(parts)
    if len(raw) > MAX_KEY_CHARS or "\x00" in raw:
        raw = "#" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}:{raw}"


# How long an unused row is kept; rows are swept at most once a minute per process.
FORGET_AFTER = 3600.0
PRUNE_EVERY = 60.0


class Pruner:
    """Deletes rows of one kind idle for ``horizon`` s and not blocking anyone."""

    def __init__(self, db: Database, kind: str, horizon: float) -> None:
        self.db, self.prefix, self.horizon = db, f"{kind}:", horizon
        self._last = 0.0

    def maybe(self, now: float) -> None:
        if now - self._last < PRUNE_EVERY:
            return
        self._last = now
        with self.db.write() as s:
            s.execute(text("DELETE FROM rate_limits WHERE seen < :cutoff AND until <= :now "
                           "AND key LIKE :prefix"),
                      {"cutoff": now - self.horizon, "now": now, "prefix": self.prefix + "%"})


# A bucket's tokens at ``:now``, capped at ``:burst``; the same text runs on SQLite and
# PostgreSQL. A clock that went back refills nothing.
_GAINED = "(CASE WHEN :now > since THEN (:now - since) * :rate ELSE 0.0 END)"
_REFILLED = f"(CASE WHEN level + {_GAINED} > :burst THEN :burst ELSE level + {_GAINED} END)"
# Built from the constants above only; every value is a bound parameter.
_TAKE = text(f"UPDATE rate_limits SET level = {_REFILLED} - 1.0, "  # noqa: S608
             f"since = :now, seen = :now WHERE key = :key AND {_REFILLED} >= 1.0 "
             "RETURNING level")
_LEVEL = text(f"SELECT {_REFILLED} FROM rate_limits WHERE key = :key")  # noqa: S608


class SharedTokenBucket:
    """``rate`` requests a second per key, bursts up to ``burst``, counted in the database.

    One atomic ``UPDATE ... RETURNING`` per request, so every hub process over the database
    draws on the same bucket (spreading requests over processes gains nothing). The clock is
    the hub's wall clock: processes on several machines need it synchronised (NTP).
    """

    def __init__(self, db: Database, rate: float, burst: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.db, self.rate, self.burst, self._clock = db, float(rate), float(burst), clock
        # A bucket idle this long is full again: forgetting it changes nothing.
        self._pruner = Pruner(db, "bucket", max(FORGET_AFTER, burst / rate))

    def take(self, key: str, *, what: str = "requests") -> None:
        """Spend one token for ``key`` or raise RateLimited saying when to try again.

        Blocking database work: call it from a thread, not the event loop."""
        now, k = self._clock(), row_key("bucket", key)
        with self.db.write() as s:
            s.execute(text("INSERT INTO rate_limits (key, level, since, until, seen) "
                           "VALUES (:key, :burst, :now, 0.0, :now) "
                           "ON CONFLICT (key) DO NOTHING"),
                      {"key": k, "burst": self.burst, "now": now})
            args = {"key": k, "now": now, "rate": self.rate, "burst": self.burst}
            taken = s.execute(_TAKE, args).first()
            level = None if taken is not None else s.execute(_LEVEL, args).scalar_one()
        self._pruner.maybe(now)
        if level is not None:
            wait = (1.0 - float(level)) / self.rate
            raise RateLimited(f"too many {what} from you: at most {self.rate * 60:g} a "
                              f"minute (bursts of {self.burst:g}); try again in "
                              f"{max(1, round(wait))} s, or sign in for a higher limit")


class TokenBucket:
    """``rate`` requests a second per key, bursts up to ``burst``; at most ``max_keys`` kept."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, *, what: str = "requests") -> None:
        """Spend one token for ``key`` or raise RateLimited saying when to try again."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise RateLimited(f"too many {what} from you: at most {self.rate * 60:g} a "
                                  f"minute (bursts of {self.burst}); try again in "
                                  f"{max(1, round(wait))} s, or sign in for a higher limit")
            self._buckets[key] = (tokens - 1.0, now)
            while len(self._buckets) > self.max_keys:  # forget the longest-idle callers
                self._buckets.popitem(last=False)

"""Slowing down password guessing without handing attackers a way to lock people out.

* Failures count per (account, source address). Someone guessing at Alice's password from
  their own address slows only themselves down: Alice, signing in from anywhere else, is not
  affected. After ``allowed`` failures each further one doubles a pause (5 s, 10 s, 20 s ...
  with the default 300 s window, at most ``window`` seconds), so guessing gets slow fast and
  stays slow.
* Failures also count per source across all accounts (``per_source``, ten times ``allowed`` in
  ``window``), so one address cannot try one password against many accounts. That limit only
  ever stops the address that failed.
* :class:`SharedLoginLimiter` (the hub's) keeps these counts in the database, so they hold
  whichever hub process an attempt reaches; :class:`LoginLimiter` is the same rule in one
  process's memory.
* The source is the connection's address. ``X-Forwarded-For`` is read only when the
  connection comes from a configured trusted proxy (``ndl hub --trusted-proxy``); otherwise
  anyone could name any address, dodge the per-source limits, or aim them at someone else.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import text
from starlette.requests import Request

from ndl.core.db import Database
from ndl.core.errors import InvalidInput, RateLimited
from ndl.core.ratelimit import Pruner, row_key

# Memory is bounded: an attacker inventing usernames cannot grow the table for ever.
MAX_RECORDS = 100_000
# A pair idle this long starts again from nothing (not after ``window``: waiting out the
# longest pause must not buy a fresh set of free guesses).
FORGET_AFTER = 3600.0

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class LoginLimiter:
    """Per (account, source) backoff plus a per-source ceiling; see the module docstring."""

    def __init__(self, allowed: int, window: float, *, per_source: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed, self.window = max(1, allowed), window
        self.per_source = per_source or self.allowed * 10
        self._clock = clock
        self._pairs: dict[tuple[str, str], _Record] = {}
        self._sources: dict[str, deque[float]] = {}

    def _source_recent(self, source: str, now: float) -> deque[float]:
        q = self._sources.setdefault(source, deque())
        while q and q[0] < now - self.window:
            q.popleft()
        return q

    def check(self, account: str, source: str) -> None:
        """Raise :class:`RateLimited` (with ``detail.retry_after``) if this attempt must wait."""
        now = self._clock()
        rec = self._pairs.get((account, source))
        if rec is not None and rec.blocked_until > now:
            wait = int(rec.blocked_until - now) + 1
            raise RateLimited(
                f"too many failed sign-ins to this account from your address; try again in "
                f"{wait} s", detail={"retry_after": wait})
        q = self._source_recent(source, now)
        if len(q) >= self.per_source:
            wait = int(q[0] + self.window - now) + 1
            raise RateLimited(
                f"too many failed sign-ins from your address; try again in {wait} s",
                detail={"retry_after": wait})

    def failed(self, account: str, source: str) -> None:
        now = self._clock()
        self._prune(now)
        rec = self._pairs.setdefault((account, source), _Record())
        rec.failures += 1
        rec.last = now
        if rec.failures >= self.allowed:
            first = max(1.0, self.window / 60)
            pause = min(first * 2.0 ** (rec.failures - self.allowed), self.window)
            rec.blocked_until = now + pause
        self._source_recent(source, now).append(now)

    def succeeded(self, account: str, source: str) -> None:
        self._pairs.pop((account, source), None)

    def _prune(self, now: float) -> None:
        if len(self._pairs) < MAX_RECORDS and len(self._sources) < MAX_RECORDS:
            return
        self._pairs = {k: r for k, r in self._pairs.items()
                       if now - r.last < FORGET_AFTER or r.blocked_until > now}
        self._sources = {k: q for k, q in self._sources.items()
                         if q and q[-1] >= now - self.window}
        while len(self._pairs) >= MAX_RECORDS:  # still full: forget the oldest first
            del self._pairs[next(iter(self._pairs))]


def _pause(failures: int, allowed: int, window: float) -> float:
    first = max(1.0, window / 60)
    return min(first * 2.0 ** min(failures - allowed, 64), window)


def _pair_blocked(wait: int) -> RateLimited:
    return RateLimited(f"too many failed sign-ins to this account from your address; try "
                       f"again in {wait} s", detail={"retry_after": wait})


def _source_blocked(wait: int) -> RateLimited:
    return RateLimited(f"too many failed sign-ins from your address; try again in {wait} s",
                       detail={"retry_after": wait})


class SharedLoginLimiter:
    """:class:`LoginLimiter`'s rule with its counts in the database (table ``rate_limits``),
    shared by every hub process. Each failure is one transaction of atomic upserts.

    The per-source ceiling counts failures in a fixed window that starts at the first
    failure (the in-memory one slides), so a source gets at most twice ``per_source`` tries
    across a window's edge. Methods block on the database: call them from a thread.
    """

    def __init__(self, db: Database, allowed: int, window: float, *,
                 per_source: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.allowed, self.window = max(1, allowed), window
        self.per_source = per_source or self.allowed * 10
        self._clock = clock
        self._pruners = [Pruner(db, "login", max(FORGET_AFTER, window)),
                         Pruner(db, "login-from", window)]

    def check(self, account: str, source: str) -> None:
        """Raise :class:`RateLimited` (with ``detail.retry_after``) if this attempt must wait."""
        now = self._clock()
        with self.db.read() as s:
            until = s.execute(text("SELECT until FROM rate_limits WHERE key = :key"),
                              {"key": row_key("login", account, source)}).scalar() or 0.0
            window = s.execute(text("SELECT level, since FROM rate_limits WHERE key = :key"),
                               {"key": row_key("login-from", source)}).first()
        if until > now:
            raise _pair_blocked(int(until - now) + 1)
        if window is not None:
            failures, since = float(window[0]), float(window[1])
            if now - since < self.window and failures >= self.per_source:
                raise _source_blocked(int(since + self.window - now) + 1)

    def failed(self, account: str, source: str) -> None:
        now = self._clock()
        pair, src = row_key("login", account, source), row_key("login-from", source)
        with self.db.write() as s:
            # A pair idle for FORGET_AFTER (and not blocked) starts again from nothing.
            failures = s.execute(text(
                "INSERT INTO rate_limits (key, level, since, until, seen) "
                "VALUES (:key, 1.0, :now, 0.0, :now) ON CONFLICT (key) DO UPDATE SET "
                "level = CASE WHEN :now - rate_limits.seen >= :forget "
                "AND rate_limits.until <= :now THEN 1.0 ELSE rate_limits.level + 1.0 END, "
                "seen = :now RETURNING level"),
                {"key": pair, "now": now, "forget": FORGET_AFTER}).scalar_one()
            if failures >= self.allowed:
                # The later of two racing blocks wins, whatever order they commit in.
                s.execute(text(
                    "UPDATE rate_limits SET until = CASE WHEN until > :until THEN until "
                    "ELSE :until END WHERE key = :key"),
                    {"key": pair, "until": now + _pause(int(failures), self.allowed,
                                                        self.window)})
            s.execute(text(
                "INSERT INTO rate_limits (key, level, since, until, seen) "
                "VALUES (:key, 1.0, :now, 0.0, :now) ON CONFLICT (key) DO UPDATE SET "
                "level = CASE WHEN :now - rate_limits.since >= :window THEN 1.0 "
                "ELSE rate_limits.level + 1.0 END, "
                "since = CASE WHEN :now - rate_limits.since >= :window THEN :now "
                "ELSE rate_limits.since END, seen = :now"),
                {"key": src, "now": now, "window": self.window})
        for pruner in self._pruners:
            pruner.maybe(now)

    def succeeded(self, account: str, source: str) -> None:
        with self.db.write() as s:
            s.execute(text("DELETE FROM rate_limits WHERE key = :key"),
                      {"key": row_key("login", account, source)})


def parse_proxies(values: Iterable[str]) -> list[IpNetwork]:
    """Addresses or networks (``10.0.0.5``, ``10.0.0.0/8``) of proxies trusted to say who
    their client is."""
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise InvalidInput(
                f"trusted proxy {v!r} is not an IP address or network (e.g. 10.0.0.5 or "
                "10.0.0.0/8)") from None
    return nets


def _trusted(addr: str, proxies: list[IpNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(peer: str | None, forwarded_for: str | None,
                   proxies: list[IpNetwork]) -> str:
    """The address a request came from: the connection's peer, unless that peer is a trusted
    proxy, in which case the right-most ``X-Forwarded-For`` entry that is not itself a
    trusted proxy (entries further left were written by the client and prove nothing)."""
    addr = peer or "?"
    if not proxies or not forwarded_for or not _trusted(addr, proxies):
        return addr
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        addr = hop
        if not _trusted(hop, proxies):
            break
    return addr


@functools.lru_cache(maxsize=8)
def _parsed(proxies: tuple[str, ...]) -> list[IpNetwork]:
    return parse_proxies(proxies)


def request_source(request: Request, trusted_proxies: Iterable[str]) -> str:
    """:func:`client_address` for a request, with the hub's ``trusted_proxies`` setting."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"),
                          _parsed(tuple(trusted_proxies)))

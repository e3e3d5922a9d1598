"""A token-bucket rate limit per caller, in this process's memory.

Used where one caller could otherwise starve everyone (anonymous open SQL makes a datasite
work). Several hub processes each keep their own buckets, so the effective limit scales with
the number of processes: acceptable for a fairness limit, not for a security boundary.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from ndl.core.errors import RateLimited


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

"""Sign-in backoff and the anonymous SQL budget kept in the database (table rate_limits), so
they hold across hub processes: the same rules as the in-memory ones, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from ndl.core.db import Database
from ndl.core.errors import RateLimited
from ndl.core.ratelimit import SharedTokenBucket, row_key
from ndl.hub.login_limits import SharedLoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    yield database
    database.dispose()


def test_bucket_allows_a_burst_then_refills_at_its_rate(db: Database) -> None:
    clock = Clock()
    bucket = SharedTokenBucket(db, rate=1.0, burst=3, clock=clock)
    for _ in range(3):
        bucket.take("sql:198.51.100.1")
    with pytest.raises(RateLimited, match="try again in 1 s"):
        bucket.take("sql:198.51.100.1")
    bucket.take("sql:203.0.113.9")            # another caller has its own bucket
    clock.now += 2.0                          # two tokens back, never more than the burst
    bucket.take("sql:198.51.100.1")
    bucket.take("sql:198.51.100.1")
    with pytest.raises(RateLimited):
        bucket.take("sql:198.51.100.1")


def test_two_buckets_over_one_database_share_the_budget(db: Database, db_url: str) -> None:
    """Two hub processes are two SharedTokenBucket objects (and two engines) over one table."""
    other = Database(db_url)
    try:
        a = SharedTokenBucket(db, rate=0.001, burst=4)
        b = SharedTokenBucket(other, rate=0.001, burst=4)
        a.take("k"), b.take("k"), a.take("k"), b.take("k")
        for bucket in (a, b):
            with pytest.raises(RateLimited):
                bucket.take("k")
    finally:
        other.dispose()


def test_racing_takes_never_overspend(db: Database) -> None:
    bucket = SharedTokenBucket(db, rate=0.001, burst=10)
    allowed, refused = [], []

    def hit() -> None:
        try:
            bucket.take("race")
            allowed.append(1)
        except RateLimited:
            refused.append(1)

    threads = [threading.Thread(target=hit) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 10 and len(refused) == 20


def test_a_clock_that_goes_back_refills_nothing(db: Database) -> None:
    clock = Clock()
    bucket = SharedTokenBucket(db, rate=1.0, burst=1, clock=clock)
    bucket.take("k")
    clock.now -= 500.0    # another machine's clock behind this one's
    with pytest.raises(RateLimited):
        bucket.take("k")


def test_failures_back_off_exponentially_per_account_and_address(db: Database) -> None:
    clock = Clock()
    lim = SharedLoginLimiter(db, 3, 300, clock=clock)
    for _ in range(3):
        lim.check("alice", "198.51.100.1")
        lim.failed("alice", "198.51.100.1")
    pauses = []
    for _ in range(12):
        with pytest.raises(RateLimited) as err:
            lim.check("alice", "198.51.100.1")
        pauses.append(err.value.detail["retry_after"])
        clock.now += err.value.detail["retry_after"]
        lim.check("alice", "198.51.100.1")
        lim.failed("alice", "198.51.100.1")
    assert pauses[:4] == [6, 11, 21, 41]             # 5, 10, 20, 40 s (rounded up)
    assert max(pauses) == 301                        # capped at the window
    lim.check("alice", "203.0.113.9")                # Alice, elsewhere: never affected
    lim.check("bob", "198.51.100.1")                 # another account from there: fine


def test_a_lockout_holds_for_another_limiter_over_the_same_database(
        db: Database, db_url: str) -> None:
    other = Database(db_url)
    try:
        a = SharedLoginLimiter(db, 2, 300)
        b = SharedLoginLimiter(other, 2, 300)
        a.failed("alice", "198.51.100.1")
        b.failed("alice", "198.51.100.1")
        with pytest.raises(RateLimited, match="to this account"):
            a.check("alice", "198.51.100.1")
        with pytest.raises(RateLimited, match="to this account"):
            b.check("alice", "198.51.100.1")
        b.succeeded("alice", "198.51.100.1")
        a.check("alice", "198.51.100.1")
    finally:
        other.dispose()


def test_one_address_cannot_spray_many_accounts(db: Database) -> None:
    clock = Clock()
    lim = SharedLoginLimiter(db, 3, 300, per_source=5, clock=clock)
    for i in range(5):
        lim.failed(f"user{i}", "198.51.100.1")
    with pytest.raises(RateLimited, match="from your address") as err:
        lim.check("user99", "198.51.100.1")
    assert err.value.detail["retry_after"] == 301
    lim.check("user99", "203.0.113.9")
    clock.now += 301                                   # the window has passed
    lim.check("user99", "198.51.100.1")


def test_an_idle_pair_starts_again_and_idle_rows_are_swept(db: Database) -> None:
    clock = Clock()
    lim = SharedLoginLimiter(db, 2, 300, clock=clock)
    lim.failed("alice", "a")
    clock.now += 3700                                  # idle past FORGET_AFTER
    lim.failed("alice", "a")                           # counts as the first again
    lim.check("alice", "a")
    clock.now += 3700
    lim.failed("bob", "b")                             # sweeps alice's idle rows
    with db.read() as s:
        keys = set(s.execute(text("SELECT key FROM rate_limits")).scalars())
    assert row_key("login", "alice", "a") not in keys
    assert row_key("login", "bob", "b") in keys


def test_long_account_names_are_hashed_not_truncated(db: Database) -> None:
    lim = SharedLoginLimiter(db, 1, 300)
    lim.failed("x" * 5000 + "a", "s")
    lim.check("x" * 5000 + "b", "s")                  # a different account: not blocked
    with pytest.raises(RateLimited):
        lim.check("x" * 5000 + "a", "s")

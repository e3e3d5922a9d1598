"""Running a datasite's work off its poll loop, and making sure every answer can travel.

The poll loop only fetches and dispatches; each message runs in a :class:`WorkPool` thread.
The pool is bounded twice: at most ``workers`` jobs at once, and at most ``per_kind[kind]`` of
one kind, so a flood of slow open-data SQL can hold two slots but never the ones a count query
or a grant revocation needs. The loop tells the hub how much room it has, in all and per
kind (``room``), so the hub keeps the rest queued rather than handing out work that would
only wait here.

Each job is one leased message. :meth:`WorkPool.in_flight` lists them with their leases so a
heartbeat can renew them while they run; longer-running work items with progress reports can
be added as another kind of job with its own limit, on the same two mechanisms.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rfc8785

log = logging.getLogger("ndl.datasite")

DEFAULT_WORKERS = 4
# Anonymous open-data SQL is the one kind anybody can send and make slow.
# Work items ("work": exports now, jobs later) take minutes: they may hold two slots, never
# the ones short questions need.
DEFAULT_PER_KIND = {"open_sql": 2, "work": 2}
# Room for the envelope around a reply (addresses, nonce, times, signature).
ENVELOPE_OVERHEAD = 2_000


@dataclass(frozen=True)
class Job:
    message_id: str
    kind: str
    lease_seconds: float
    run: Callable[[], None]


class WorkPool:
    """At most ``workers`` jobs at once and at most ``per_kind[k]`` jobs of kind ``k``."""

    def __init__(self, workers: int = DEFAULT_WORKERS,
                 per_kind: dict[str, int] | None = None) -> None:
        if workers < 1:
            raise ValueError("a datasite needs at least one worker")
        self.workers = workers
        self.per_kind = dict(DEFAULT_PER_KIND if per_kind is None else per_kind)
        self._cond = threading.Condition()
        self._running: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()

    def _count(self, kind: str) -> int:
        return sum(1 for j in self._running.values() if j.kind == kind)

    def _may_start(self, kind: str) -> bool:
        limit = self.per_kind.get(kind)
        return len(self._running) < self.workers and (limit is None or self._count(kind) < limit)

    def room(self) -> tuple[int, dict[str, int]]:
        """How many more jobs fit, and how many more of each limited kind."""
        with self._cond:
            jobs = [*self._running.values(), *self._waiting]
            free = self.workers - len(jobs)
            kinds = {k: max(n - sum(1 for j in jobs if j.kind == k), 0)
                     for k, n in self.per_kind.items()}
            return max(free, 0), kinds

    def submit(self, job: Job) -> bool:
        """Start ``job`` (or queue it until a slot frees). False if it is already here: a
        redelivery of work this process is still doing must not run it a second time."""
        with self._cond:
            if job.message_id in self._running or any(
                    j.message_id == job.message_id for j in self._waiting):
                return False
            self._waiting.append(job)
            self._dispatch()
            return True

    def _dispatch(self) -> None:
        """Start every waiting job that fits, oldest first (caller holds the lock)."""
        for job in list(self._waiting):
            if self._may_start(job.kind):
                self._waiting.remove(job)
                self._running[job.message_id] = job
                threading.Thread(target=self._run, args=(job,), daemon=True,
                                 name=f"ndl-work-{job.kind}").start()

    def _run(self, job: Job) -> None:
        try:
            job.run()
        except Exception:
            # The job records its own failures; this only keeps the pool's books right.
            log.exception("work on message %s failed", job.message_id)
        finally:
            with self._cond:
                self._running.pop(job.message_id, None)
                self._dispatch()
                self._cond.notify_all()

    def in_flight(self) -> dict[str, float]:
        """Message id -> lease seconds, for every job running or waiting here."""
        with self._cond:
            jobs = [*self._running.values(), *self._waiting]
            return {j.message_id: j.lease_seconds for j in jobs}

    def wait_for_room(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._running) + len(self._waiting)
                                       < self.workers, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is running or waiting (tests, and a graceful stop)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._running and not self._waiting,
                                       timeout)


def error_reply(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def encode(body: Any) -> bytes:
    """JSON exactly as it goes on the wire (NaN and infinity refused, as JSON requires)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def reply_problem(reply: dict[str, Any], max_bytes: int) -> dict[str, Any] | None:
    """An error reply to send instead of ``reply`` if it could not be signed or sent; else None.

    A reply must be canonical JSON (the signature covers its RFC 8785 form, which has no NaN
    and no integers beyond 2^53) and fit in the hub's request size limit. Checked before the
    reply is stored, so an answer that can never travel never jams the datasite.
    """
    try:
        rfc8785.dumps(reply)
        size = len(encode(reply))
    except (ValueError, TypeError) as exc:  # rfc8785's errors are ValueErrors
        return error_reply(
            "invalid_input",
            f"the answer cannot be signed and sent: {exc}. JSON cannot carry NaN, infinity "
            "or integers beyond 2^53 exactly; cast such columns to text, e.g. "
            "CAST(x AS VARCHAR)")
    limit = max_bytes - ENVELOPE_OVERHEAD
    if size > limit:
        return error_reply(
            "payload_too_large",
            f"the answer is {size:,} bytes, over the {limit:,} bytes a reply can carry to the "
            "hub; ask for fewer rows (a LIMIT, or a smaller limit) or fewer columns, or "
            "aggregate")
    return None

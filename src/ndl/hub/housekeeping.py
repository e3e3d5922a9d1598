"""Chores the hub does while it runs, on a timer in its lifespan: remove expired and
delivered blobs and stale uploads, and expire work items past their deadline (so a datasite
that never came back does not leave them "queued" for ever), and move on controlled jobs
whose run has ended (so the register records the run even if nobody looks).

With several hub processes over one PostgreSQL database, one process at a time does a round
(an advisory lock): the same sweep in every process at once would only race itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from ndl.access import evidence, references
from ndl.federation import blob_service, work
from ndl.hub.state import HubState
from ndl.jobs import lifecycle
from ndl.ledger import security_log

log = logging.getLogger("ndl.hub")


def _sweep_blobs(state: HubState) -> None:
    report = blob_service.sweep_expired(state.blobs)
    if report.blobs_deleted or report.uploads_dropped:
        log.info("blob sweep: %d blobs (%s) and %d stale uploads removed",
                 report.blobs_deleted, blob_service.human(report.bytes_freed),
                 report.uploads_dropped)


def _expire_work(state: HubState) -> None:
    with state.db.write() as s:
        if n := work.expire_due(s, state.key):
            log.info("%d work items passed their deadline and expired", n)


def _move_jobs_on(state: HubState) -> None:
    if n := lifecycle.sync_all(state):
        log.info("%d controlled jobs finished running", n)


def _remind_renewals(state: HubState) -> None:
    with state.db.write() as s:
        if sent := evidence.remind_due(s, state.key):
            log.info("%d renewal reminders for evidence about to lapse", len(sent))
        if refs := references.remind_due(s, state.key):
            log.info("%d renewal reminders for project references about to lapse", len(refs))


CHORES: list[tuple[str, Callable[[HubState], None]]] = [
    ("blob sweep", _sweep_blobs), ("work expiry", _expire_work),
    ("job progress", _move_jobs_on), ("evidence renewal reminders", _remind_renewals)]



def _prune_security_log(state: HubState) -> None:
    with state.db.write() as s:
        if n := security_log.prune(s, state.settings.security_log_days):
            log.info("%d security-log events passed the %g-day retention and were dropped", n,
                     state.settings.security_log_days)


CHORES.append(("security log retention", _prune_security_log))


def _enforce_retention(state: HubState) -> None:
    """Retention (ndl.catalogue.lifecycle, ndl.access.closure): datasets past their
    ``retain_until`` are withdrawn and their deletion asked; projects past end date plus
    retention are closed; closed projects' outputs past retention expire."""
    from ndl.access import closure
    from ndl.catalogue import lifecycle as data_lifecycle

    with state.db.write() as s:
        withdrawn = data_lifecycle.enforce_retention(s, state.key)
        closed, expired = closure.enforce_retention(s, state.key)
    if withdrawn or closed or expired:
        log.info("retention: %d datasets withdrawn for deletion, %d projects closed, %d "
                 "projects' outputs expired", len(withdrawn), len(closed), len(expired))


CHORES.append(("retention", _enforce_retention))

# The advisory lock's key ("ndlh"): any process of this hub holding it is doing a round.
CHORES_LOCK = 0x6E646C68


@contextmanager
def _only_one_process(state: HubState) -> Iterator[bool]:
    """True if this process should do the chores now (always, on SQLite: one process)."""
    if state.db.backend != "postgresql":
        yield True
        return
    with state.db.write_engine.connect() as conn:
        mine = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                 {"k": CHORES_LOCK}).scalar())
        conn.commit()
        try:
            yield mine
        finally:
            if mine:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": CHORES_LOCK})
                conn.commit()


def _round(state: HubState, every: float) -> bool:
    """Do every chore, unless another process is doing them; whether this one did."""
    with _only_one_process(state) as mine:
        if not mine:
            return False
        for name, chore in CHORES:
            try:
                chore(state)
            except Exception:  # a failed chore is tried again next time, never the hub's end
                log.exception("%s failed; trying again in %g s", name, every)
    return True


async def _forever(state: HubState, every: float) -> None:
    while True:
        try:
            await asyncio.to_thread(_round, state, every)
        except Exception:  # e.g. the database unreachable: try again next time
            log.exception("housekeeping failed; trying again in %g s", every)
        await asyncio.sleep(every)


def run_housekeeping(app: FastAPI, every: float = 60.0) -> None:
    """Run the chores every ``every`` seconds while the app runs (wraps its lifespan)."""
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        task = asyncio.create_task(_forever(a.state.hub, every))
        try:
            async with previous(a) as inner:
                yield inner
        finally:
            task.cancel()

    app.router.lifespan_context = lifespan

"""Chores the hub does while it runs, on a timer in its lifespan: remove expired and
delivered blobs and stale uploads, and expire work items past their deadline (so a datasite
that never came back does not leave them "queued" for ever), and move on controlled jobs
whose run has ended (so the register records the run even if nobody looks)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from ndl.federation import blob_service, work
from ndl.hub.state import HubState
from ndl.jobs import lifecycle

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


CHORES: list[tuple[str, Callable[[HubState], None]]] = [
    ("blob sweep", _sweep_blobs), ("work expiry", _expire_work),
    ("job progress", _move_jobs_on)]


async def _forever(state: HubState, every: float) -> None:
    while True:
        for name, chore in CHORES:
            try:
                await asyncio.to_thread(chore, state)
            except Exception:  # a failed chore is tried again next time, never the hub's end
                log.exception("%s failed; trying again in %g s", name, every)
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

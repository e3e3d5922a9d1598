"""Long work for every face: submit, follow, cancel, fetch the result.

Each function takes the acting principal, checks the rule (:mod:`ndl.access.rules`) and the
tier (:data:`ndl.core.tiers.WORK_OPERATIONS`) before anything is queued, and returns a typed
:class:`~ndl.federation.work.Work`. The transport (leases, heartbeats, finishing) is
:mod:`ndl.federation.work`; the datasite checks the tier again before it reads a row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ndl.access import rules
from ndl.access.accounts import Principal, official_actor
from ndl.catalogue import lifecycle
from ndl.catalogue import service as catalogue
from ndl.core.db import MAX_DB_INT, utcnow
from ndl.core.errors import InvalidInput, NotFound, UpstreamTimeout
from ndl.core.keys import SigningKey
from ndl.core.tiers import INTERNAL_WORK_KINDS, WORK_OPERATIONS
from ndl.federation import blob_service, work
from ndl.federation.blobs import check_sha256
from ndl.federation.models import Datasite
from ndl.federation.work_models import WorkItem
from ndl.hub.state import HubState
from ndl.ledger import security_log
from ndl.work.views import Work, WorkResult


class ExportParams(BaseModel):
    """An open dataset, whole (or its first ``limit`` rows), as one Parquet or CSV file."""

    # Strict: a limit of true or "10" is a mistake to report, not a number to guess at.
    model_config = ConfigDict(extra="forbid", strict=True)
    format: Literal["parquet", "csv"] = "parquet"
    limit: int | None = Field(default=None, ge=1, le=MAX_DB_INT)


class JobParams(BaseModel):
    """A reviewed job bundle (queued only by :mod:`ndl.jobs.service`, after approval): the
    files, the hub-signed approval of their hash, and the project's signed grants."""

    model_config = ConfigDict(extra="forbid", strict=True)
    job_id: str
    project: str
    member: str
    datasets: list[str]
    files: dict[str, str]
    approval: dict[str, Any]
    grants: list[dict[str, Any]]


PARAMS: dict[str, type[BaseModel]] = {"export": ExportParams, "job": JobParams}
assert set(PARAMS) == set(WORK_OPERATIONS), "every work kind needs its parameters and its tier"


def can_export(who: Principal | None, tier: str) -> bool:
    """Whether a dataset of ``tier`` may be exported whole by ``who`` (its page offers it)."""
    return rules.may_data_operation(who, tier, WORK_OPERATIONS["export"])


def _actor(who: Principal | None) -> str:
    return "anonymous" if who is None or who.user_id == 0 else official_actor(who)


def read_params(kind: str, raw: Any) -> BaseModel:
    if kind not in PARAMS:
        raise InvalidInput(f"unknown kind of work {kind!r}; the kinds are "
                           f"{', '.join(sorted(PARAMS))}")
    try:
        return PARAMS[kind].model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        # Say what is wrong in the message itself: the CLI and web pages show only that.
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: "
                             f"{e['msg'][:1].lower()}{e['msg'][1:]}" for e in errors[:3])
        raise InvalidInput(f"the parameters of {kind!r} work are not valid: {problems}",
                           detail=errors) from exc


async def submit(state: HubState, who: Principal | None, *, kind: str, dataset_id: str,
                 params: Any, source: str) -> Work:
    """Queue ``kind`` work on one dataset and return at once (the caller follows it by id)."""
    if kind in INTERNAL_WORK_KINDS:
        raise InvalidInput(f"{kind!r} work is queued only through its own service: submit a "
                           "job with 'ndl submit BUNDLE --project P' (a steward reviews it)")
    checked = read_params(kind, params)
    if who is None or who.user_id == 0:
        # Anonymous callers share the open-data budget per address (as SQL and /rows do).
        await run_in_threadpool(state.sql_limiter.take, f"sql:{source}",
                                what="anonymous downloads and SQL queries")

    def do() -> tuple[Work, str]:
        with state.db.write() as s:
            ds = catalogue.get_dataset(s, dataset_id)
            lifecycle.require_live(ds)
            rules.require_data_operation(who, ds.tier, WORK_OPERATIONS[kind], dataset=ds.id)
            item = work.submit(
                s, state.key, kind=kind, requester=rules.principal_string(who),
                actor=_actor(who), datasite_id=ds.datasite_id, dataset=ds.id,
                params=checked.model_dump(mode="json"), ttl=state.settings.work_ttl)
            s.flush()
            return work.view(item), ds.datasite_id

    view, site = await run_in_threadpool(do)
    state.work_hints.mark(site)
    state.notifier.notify(f"site:{site}")
    return view


def _mine(state: HubState, who: Principal | None, work_id: str) -> WorkItem:
    """The item, if ``who`` may see it; otherwise NotFound (an id's existence is not told)."""
    with state.db.read() as s:
        item = work.get(s, work_id)
        s.expunge(item)
    if not rules.may_see_work(who, item.requester):
        raise NotFound(f"no work item {work_id!r}: check the id ('ndl work list' shows yours)")
    return item


def get(state: HubState, who: Principal | None, work_id: str) -> Work:
    item = _mine(state, who, work_id)
    if item.state not in work.FINAL and item.deadline <= utcnow():
        with state.db.write() as s:
            work.expire_due(s, state.key)
        item = _mine(state, who, work_id)
    return work.view(item)


def mine(state: HubState, who: Principal | None, *, limit: int = 100) -> list[Work]:
    who = rules.require_signed_in(who, doing="list your work")
    with state.db.read() as s:
        return [work.view(i) for i in work.list_for(s, rules.principal_string(who),
                                                    limit=limit)]


def cancel(state: HubState, who: Principal | None, work_id: str) -> Work:
    """Stop an item: final at once here; the datasite stops on its next heartbeat."""
    _mine(state, who, work_id)
    with state.db.write() as s:
        item = work.get(s, work_id, lock=True)
        if work.cancel(s, state.key, item, actor=_actor(who),
                       reason="cancelled by its requester"):
            site = item.datasite_id
        else:
            site = ""
        view = work.view(item)
    if site:
        state.work_hints.mark(site)  # its slot is free once the datasite stops
        state.notifier.notify(f"site:{site}")
    state.notifier.notify(f"work:{work_id}")
    return view


async def follow(state: HubState, who: Principal | None, work_id: str, *,
                 timeout: float = 3600.0) -> AsyncIterator[Work]:
    """Each change of an item (state, progress, message) until it is final or ``timeout``."""
    view = await run_in_threadpool(get, state, who, work_id)
    yield view
    key = f"work:{work_id}"
    ev = state.notifier.event(key)
    last = (view.state, view.progress, view.message)
    deadline = time.monotonic() + timeout
    try:
        while not view.final and time.monotonic() < deadline:
            ev.clear()
            try:
                # Woken by a heartbeat in any hub process; the timer is the safety net.
                await asyncio.wait_for(ev.wait(), timeout=state.notifier.every(1.0))
            except TimeoutError:
                pass
            view = await run_in_threadpool(get, state, who, work_id)
            now = (view.state, view.progress, view.message)
            if now != last:
                last = now
                yield view
    finally:
        state.notifier.forget(key)


async def wait(state: HubState, who: Principal | None, work_id: str, *,
               timeout: float) -> Work:
    """The item once final; UpstreamTimeout (naming the id, to follow later) if not in time."""
    view: Work | None = None
    async for seen in follow(state, who, work_id, timeout=timeout):
        view = seen
    assert view is not None
    if not view.final:
        raise UpstreamTimeout(
            f"work item {work_id} is still {view.state} after {timeout:g} s; follow it with "
            f"'ndl work wait {work_id}' or GET /api/work/{work_id}")
    return view


def result_of(state: HubState, who: Principal | None, work_id: str) -> WorkItem:
    """The finished item whose result ``who`` may fetch (clear errors for every other state)."""
    item = _mine(state, who, work_id)
    if item.state != "succeeded" or not item.result:
        reason = {"failed": "it failed", "cancelled": "it was cancelled",
                  "expired": "it expired"}.get(item.state, f"it is still {item.state}")
        raise InvalidInput(f"work item {work_id} has no result: {reason}")
    return item


def delivered(state: HubState, who: Principal | None, item: WorkItem) -> None:
    """The whole result reached its requester: record ``work.released`` once."""
    with state.db.write() as s:
        fresh = work.get(s, item.id, lock=True)
        sha = str((fresh.result or {}).get("sha256"))
        site = s.get(Datasite, fresh.datasite_id)
        security_log.record(s, "transfer.result_delivered", actor=rules.principal_string(who),
                            subject=f"work:{fresh.id}", org=site.org_id if site else None,
                            details={"kind": fresh.kind, "dataset": fresh.dataset,
                                     "sha256": sha, "size": (fresh.result or {}).get("size"),
                                     "rows": (fresh.result or {}).get("rows")})
        if work.released(s, state.key, fresh, actor=_actor(who)):
            # Identical results share one blob: it goes once no other item still needs it.
            if not work.result_pending_elsewhere(s, sha, fresh.id):
                blob_service.mark_delivered(s, sha)


# -- the datasite's side: one final answer per item -----------------------------------------
# Error codes a datasite may report to a requester; anything else is reported as a failure
# of the datasite, without its text (which could hold a value read from the data).
PUBLIC_ERROR_CODES = frozenset({"job_failed", "sandbox_unavailable",
                                "invalid_input", "permission_denied", "not_found", "conflict",
                                "payload_too_large", "upstream_timeout", "cancelled",
                                "internal_error"})


@dataclass(frozen=True)
class Finish:
    work_id: str
    ok: bool
    result: WorkResult | None
    error: dict[str, str] | None


def read_finish(body: dict[str, Any]) -> Finish:
    """Check a ``work.finish`` body: ``{work_id, ok, result: {sha256, size, media_type,
    filename, rows}}`` or ``{work_id, ok: false, error: {code, message}}``."""
    work_id, ok = body.get("work_id"), body.get("ok")
    if not isinstance(work_id, str) or not isinstance(ok, bool):
        raise InvalidInput("a work.finish body needs work_id (text) and ok (true or false)")
    if ok:
        raw = body.get("result")
        try:
            res = WorkResult(**raw) if isinstance(raw, dict) else None
        except TypeError as exc:
            raise InvalidInput(f"a work result has sha256, size, media_type, filename and "
                               f"rows: {exc}") from exc
        if res is None or not isinstance(res.size, int) or isinstance(res.size, bool) \
                or res.size < 0:
            raise InvalidInput("a successful work.finish needs result.sha256 (64 hex digits) "
                               "and result.size (bytes)")
        check_sha256(res.sha256, "result.sha256")
        return Finish(work_id, True, res, None)
    raw_err = body.get("error")
    err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
    code = str(err.get("code", "internal_error"))
    message = str(err.get("message", ""))[:500]
    if code not in PUBLIC_ERROR_CODES:
        code, message = "internal_error", "the work failed at the datasite"
    return Finish(work_id, False, None, {"code": code, "message": message})


def finish(session: Session, key: SigningKey, datasite_id: str, done: Finish) -> bool:
    """Record a datasite's answer. A result must be a complete blob this datasite uploaded;
    its requester is then allowed to read it."""
    item = work.get(session, done.work_id, lock=True)
    if done.ok and done.result is not None and item.state not in work.FINAL:
        # The datasite must hold the blob (it uploaded it, proving it has every byte): a
        # hash alone, read off the public register, must not hand another's result over.
        info = blob_service.blob_info(session, done.result.sha256)
        if info is None or not blob_service.may_read(session, info.sha256,
                                                     f"datasite:{datasite_id}") \
                or info.size != done.result.size:
            raise InvalidInput(f"upload the result blob {done.result.sha256} whole before "
                               "finishing the work item")
    fresh = work.finish(session, key, datasite_id, done.work_id, ok=done.ok,
                        result=done.result, error=done.error)
    # An internal kind's result belongs to its service (a job's outputs wait for an output
    # checker): nobody is made a reader here.
    if fresh and done.result is not None and item.requester != work.ANONYMOUS \
            and item.kind not in INTERNAL_WORK_KINDS:
        blob_service.allow_reader(session, done.result.sha256, item.requester)
    return fresh


def result_response(state: HubState, who: Principal | None, work_id: str,
                    range_header: str | None) -> Response:
    """The result blob, streamed; the register notes the release the first time the whole
    file is sent (a ranged resume counts when it reaches the end)."""
    item = result_of(state, who, work_id)
    with state.db.read() as s:
        info = blob_service.blob_info(s, str((item.result or {}).get("sha256")))
    if info is None or not info.complete:
        raise NotFound(f"the result of work item {work_id} is no longer held (results are "
                       "kept until delivered or expired); submit the work again")
    filename = str((item.result or {}).get("filename") or f"{work_id}.bin")

    def whole() -> None:
        delivered(state, who, item)

    return blob_service.blob_response(state.blobs, info, range_header, filename=filename,
                                      on_complete=whole)


async def export_now(state: HubState, who: Principal | None, dataset_id: str, *,
                     limit: int | None, source: str, range_header: str | None) -> Response:
    """An open dataset as CSV for a plain GET: export it at the datasite, wait, stream it.

    The request waits up to the hub's ``--export-wait``; past that the caller is told the
    work item's id, to follow and fetch when it is done.
    """
    view = await submit(state, who, kind="export", dataset_id=dataset_id,
                        params={"format": "csv", "limit": limit}, source=source)
    done = await wait(state, who, view.id, timeout=state.settings.export_wait)
    if done.state != "succeeded":
        err = done.error or {}
        raise InvalidInput(f"the export of {dataset_id} {done.state}: "
                           f"{err.get('message') or done.message}")
    response = await run_in_threadpool(result_response, state, who, view.id, range_header)
    rows = done.result.rows if done.result is not None else None
    response.headers["X-NDL-Truncated"] = "true" if limit is not None and rows == limit \
        else "false"
    response.headers["X-NDL-Work"] = view.id
    return response

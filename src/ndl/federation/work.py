"""Work items: the hub's half of long work (minutes, gigabytes, several parties).

Submitting returns an id at once; the datasite leases the item through the same long-poll as
short messages, reports progress on its heartbeat (which renews the lease and brings back
cancellations), and finishes it once with a result that names a blob by its SHA-256. A lease
that lapses (the datasite died) makes the item deliverable again; a final state is never left,
so a second finish is ignored and a result is delivered at most once. Each step is a register
entry naming hashes, never content.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import rfc8785
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ndl.core.db import utcnow
from ndl.core.envelope import seal
from ndl.core.errors import InvalidInput, NotFound
from ndl.core.keys import SigningKey
from ndl.federation import standing
from ndl.federation.work_models import WorkItem
from ndl.ledger import register
from ndl.work.views import FINAL_STATES, Work, WorkResult

HUB_ID = "hub"
FINAL = FINAL_STATES
# How long a work item may wait and run before it expires, unless its kind says otherwise.
DEFAULT_TTL = 6 * 3600.0
MAX_MESSAGE = 200
ANONYMOUS = "anonymous"
# The datasite's pool limit for all work items together ("kind_limits" key in a poll).
POOL_KIND = "work"


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(rfc8785.dumps(params)).hexdigest()


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def view(item: WorkItem) -> Work:
    res = item.result
    return Work(
        id=item.id, kind=item.kind, dataset=item.dataset, state=item.state,
        progress=item.progress, message=item.progress_message,
        created_at=item.created_at.isoformat(), started_at=_iso(item.started_at),
        finished_at=_iso(item.finished_at), deadline=item.deadline.isoformat(),
        attempts=item.attempts, error=item.error,
        result=WorkResult(**res) if res else None, coordination_id=item.coordination_id,
        params_sha256=item.params_sha256,
    )


def submit(
    session: Session, key: SigningKey, *, kind: str, requester: str, actor: str,
    datasite_id: str, dataset: str, params: dict[str, Any], ttl: float = DEFAULT_TTL,
    coordination_id: str | None = None,
) -> WorkItem:
    """Queue one item and record ``work.submitted`` (with the parameters' hash only)."""
    standing.require_site(session, datasite_id)  # a suspended site is given no work
    digest = params_hash(params)
    item = WorkItem(
        id=str(uuid.uuid4()), kind=kind, requester=requester, datasite_id=datasite_id,
        dataset=dataset, params=params, params_sha256=digest, state="queued", progress=0.0,
        progress_message="waiting for the datasite", attempts=0, redelivered=False,
        deadline=utcnow() + timedelta(seconds=ttl), coordination_id=coordination_id,
    )
    session.add(item)
    register.append(session, key, kind="work.submitted", actor=actor, subject=item.id,
                    payload={"work_kind": kind, "dataset": dataset, "params_sha256": digest,
                             "datasite": datasite_id})
    return item


def lease(
    session: Session, key: SigningKey, datasite_id: str, *, lease_seconds: float, limit: int,
    room: int | None = None,
) -> list[dict[str, Any]]:
    """Hand out deliverable items as signed ``work`` envelopes (oldest first).

    ``room`` is how many more work items the datasite will run now (its ``work`` kind limit):
    the rest stay queued. An item whose lease lapsed is handed out again (``redelivered`` is
    set, for operators); the datasite's own record of the id keeps it from running twice.
    """
    if limit <= 0 or (room is not None and room <= 0):
        return []
    now = utcnow()
    take = limit if room is None else min(limit, room)
    items = session.scalars(
        select(WorkItem)
        .where(WorkItem.datasite_id == datasite_id, WorkItem.deadline > now)
        .where(or_(WorkItem.state == "queued",
                   WorkItem.state.in_(("leased", "running")) & (WorkItem.lease_until < now)))
        .order_by(WorkItem.created_at).limit(take)
        .with_for_update(skip_locked=True)  # one being finished or cancelled waits its turn
    ).all()
    out = []
    for item in items:
        if item.state != "queued":
            item.redelivered = True
        item.state, item.attempts = "leased", item.attempts + 1
        item.lease_until = now + timedelta(seconds=lease_seconds)
        ttl = max(1, int((item.deadline - now).total_seconds()) + 1)
        out.append(seal(key, sender=HUB_ID, recipient=datasite_id, kind="work", ttl=ttl, body={
            "work_id": item.id, "work_kind": item.kind, "dataset": item.dataset.split("/", 1)[-1],
            "params": item.params, "requested_by": item.requester, "attempt": item.attempts,
            "lease_seconds": lease_seconds, "deadline": item.deadline.isoformat(),
        }))
    return out


@dataclass(frozen=True)
class Progress:
    fraction: float
    message: str


def parse_progress(raw: Any) -> dict[str, Progress]:
    """Read a heartbeat's ``work`` map: id -> {progress: 0..1, message: short text}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > 1000:
        raise InvalidInput("a heartbeat's work must map work ids to {progress, message}")
    out = {}
    for wid, p in raw.items():
        if not isinstance(wid, str) or not isinstance(p, dict):
            raise InvalidInput("a heartbeat's work must map work ids to {progress, message}")
        frac = p.get("progress", 0.0)
        if isinstance(frac, bool) or not isinstance(frac, int | float) or not math.isfinite(
                frac):
            raise InvalidInput(f"progress of {wid!r} must be a number from 0 to 1")
        msg = p.get("message", "")
        if not isinstance(msg, str):
            raise InvalidInput(f"the progress message of {wid!r} must be text")
        clean = "".join(ch for ch in msg if ch.isprintable())[:MAX_MESSAGE]
        out[wid] = Progress(min(max(float(frac), 0.0), 1.0), clean)
    return out


def heartbeat(
    session: Session, key: SigningKey, datasite_id: str, updates: dict[str, Progress], *,
    lease_seconds: float,
) -> tuple[list[str], list[str]]:
    """Renew leases and record progress; return (renewed ids, ids the datasite must stop).

    The first report on an item moves it to ``running`` and records ``work.started``. An item
    that is final here (cancelled by its requester, expired) is in the stop list, so the
    cancel reaches the datasite within one heartbeat.
    """
    if not updates:
        return [], []
    now = utcnow()
    renewed, stop = [], []
    # Locked (in id order, so two heartbeats cannot deadlock): without the lock a heartbeat
    # that read 'leased' just before the item's result committed wrote 'running' back over
    # 'succeeded' on PostgreSQL, and the result could no longer be fetched.
    for item in session.scalars(select(WorkItem).where(
            WorkItem.id.in_(list(updates)), WorkItem.datasite_id == datasite_id)
            .order_by(WorkItem.id).with_for_update()):
        if item.state in FINAL or item.deadline <= now:
            stop.append(item.id)
            continue
        p = updates[item.id]
        if item.state != "running":
            item.state = "running"
            if item.started_at is None:
                item.started_at = now
                register.append(session, key, kind="work.started",
                                actor=f"datasite:{datasite_id}", subject=item.id,
                                payload={"work_kind": item.kind, "attempt": item.attempts})
        item.progress = max(item.progress, p.fraction)  # progress never runs backwards
        if p.message:
            item.progress_message = p.message
        item.lease_until = now + timedelta(seconds=lease_seconds)
        renewed.append(item.id)
    return renewed, stop


def _final(session: Session, key: SigningKey, item: WorkItem, state: str, *, actor: str,
           kind: str, payload: dict[str, Any]) -> None:
    item.state, item.finished_at, item.lease_until = state, utcnow(), None
    register.append(session, key, kind=kind, actor=actor, subject=item.id,
                    payload={"work_kind": item.kind, "state": state, **payload})


def finish(
    session: Session, key: SigningKey, datasite_id: str, work_id: str, *, ok: bool,
    result: WorkResult | None, error: dict[str, str] | None,
) -> bool:
    """Record the one final answer of an item; False if it already had one (not re-applied)."""
    item = session.get(WorkItem, work_id, with_for_update=True)
    if item is None or item.datasite_id != datasite_id:
        raise NotFound(f"work item {work_id!r} was not sent to datasite {datasite_id!r}")
    if item.state in FINAL:
        return False
    if item.started_at is None:  # it ran between two heartbeats: its start is still a step
        item.started_at = utcnow()
        register.append(session, key, kind="work.started", actor=f"datasite:{datasite_id}",
                        subject=item.id, payload={"work_kind": item.kind,
                                                  "attempt": item.attempts})
    if ok:
        if result is None:
            raise InvalidInput("a successful work item needs a result")
        item.result, item.progress = dict(result.__dict__), 1.0
        item.result_sha256 = result.sha256
        item.progress_message = "finished"
        _final(session, key, item, "succeeded", actor=f"datasite:{datasite_id}",
               kind="work.finished", payload={"result_sha256": result.sha256,
                                              "size": result.size})
    else:
        item.error = error or {"code": "internal_error", "message": "the work failed"}
        item.progress_message = "failed"
        _final(session, key, item, "failed", actor=f"datasite:{datasite_id}",
               kind="work.finished", payload={"error_code": item.error.get("code", "")})
    return True


def cancel(session: Session, key: SigningKey, item: WorkItem, *, actor: str,
           reason: str) -> bool:
    """Cancel an item that has not finished; False if it already had a final state.

    The item is final at once (so no result can be accepted for it any more); a datasite
    running it learns on its next heartbeat and stops.
    """
    if item.state in FINAL:
        return False
    item.cancel_reason = reason[:300]
    item.progress_message = "cancelled"
    _final(session, key, item, "cancelled", actor=actor, kind="work.cancelled",
           payload={"reason": reason[:300]})
    return True


def cancel_for(session: Session, key: SigningKey, *, coordination_id: str, reason: str,
               actor: str = HUB_ID) -> list[str]:
    """Cancel every unfinished item of one coordinated piece of work (a party withdrew)."""
    done = []
    for item in session.scalars(select(WorkItem).where(
            WorkItem.coordination_id == coordination_id, WorkItem.state.not_in(FINAL))
            .order_by(WorkItem.id).with_for_update()):
        if cancel(session, key, item, actor=actor, reason=reason):
            done.append(item.id)
    return done


def expire_due(session: Session, key: SigningKey, limit: int = 500) -> int:
    """Move items past their deadline to ``expired`` (a sweep; also done on read)."""
    items = session.scalars(select(WorkItem).where(
        WorkItem.deadline <= utcnow(), WorkItem.state.not_in(FINAL)).limit(limit)
        .with_for_update(skip_locked=True)).all()
    for item in items:
        item.progress_message = "expired before it finished"
        _final(session, key, item, "expired", actor=HUB_ID, kind="work.cancelled",
               payload={"reason": "deadline passed"})
    return len(items)


def cancel_all_for(session: Session, key: SigningKey, datasite_id: str, *, actor: str,
                   reason: str) -> int:
    """Cancel every unfinished item for a datasite (it left the federation); how many."""
    items = session.scalars(select(WorkItem).where(
        WorkItem.datasite_id == datasite_id, WorkItem.state.not_in(FINAL))
        .with_for_update()).all()
    for item in items:
        item.progress_message = reason
        _final(session, key, item, "cancelled", actor=actor, kind="work.cancelled",
               payload={"reason": reason})
    return len(items)


def released(session: Session, key: SigningKey, item: WorkItem, *, actor: str) -> bool:
    """Record that the requester has the whole result (first time only)."""
    if item.released_at is not None:
        return False
    item.released_at = utcnow()
    register.append(session, key, kind="work.released", actor=actor, subject=item.id,
                    payload={"work_kind": item.kind,
                             "result_sha256": (item.result or {}).get("sha256", "")})
    return True


def get(session: Session, work_id: str, *, lock: bool = False) -> WorkItem:
    """The item; ``lock=True`` in a write session that will change it (PostgreSQL holds the
    row until commit, so a concurrent heartbeat or result cannot be overwritten)."""
    item = session.get(WorkItem, work_id, with_for_update=lock) if len(work_id) <= 36 \
        else None
    if item is None:
        raise NotFound(f"no work item {work_id!r}: check the id ('ndl work list' shows yours)")
    return item


def list_for(session: Session, requester: str, *, limit: int = 100) -> list[WorkItem]:
    return list(session.scalars(select(WorkItem).where(WorkItem.requester == requester)
                                .order_by(WorkItem.created_at.desc()).limit(limit)))


def result_pending_elsewhere(session: Session, sha256: str, besides: str) -> bool:
    """Whether another item's result is the same blob and has not reached its requester."""
    return session.scalar(select(WorkItem.id).where(
        WorkItem.result_sha256 == sha256, WorkItem.id != besides,
        WorkItem.state == "succeeded", WorkItem.released_at.is_(None)).limit(1)) is not None


def active(session: Session, datasite_id: str) -> int:
    """Work items a datasite holds now: leased or running, their lease not lapsed."""
    return session.scalar(select(func.count()).select_from(WorkItem).where(
        WorkItem.datasite_id == datasite_id, WorkItem.state.in_(("leased", "running")),
        WorkItem.lease_until > utcnow())) or 0

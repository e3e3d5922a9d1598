"""Reading the security log: filters, JSON-lines export, and who may read what.

Admins export the whole log; a data steward fetches their own organisation's events, and only
when the hub shares its log (``ndl hub --share-security-log org``). See
:mod:`ndl.ledger.security_log` for what is written and :mod:`ndl.access.rules` for the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal
from ndl.core.db import utcnow
from ndl.core.errors import InvalidInput
from ndl.ledger.security_log import KINDS, chained_fields, event_hash
from ndl.ledger.security_models import SecurityEvent, SecurityLogHead

MAX_EXPORT_ROWS = 1_000_000
FAMILIES = ("auth", "admin", "transfer")


@dataclass(frozen=True)
class EventFilter:
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None  # a kind, or a family ("auth", "admin", "transfer")
    org: str | None = None


def parse_time(value: str | None, what: str) -> datetime | None:
    """An ISO-8601 time; a time without a zone is read as UTC."""
    if value is None or value == "":
        return None
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{what}: {value[:40]!r} is not an ISO-8601 time; write e.g. "
                           "2026-12-06T09:00:00Z") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=utcnow().tzinfo)


def make_filter(*, since: str | None = None, until: str | None = None,
                kind: str | None = None, org: str | None = None) -> EventFilter:
    if kind and kind not in KINDS and kind not in FAMILIES:
        raise InvalidInput(f"kind {kind[:60]!r} is not a security event kind; use a family "
                           "(auth, admin, transfer) or one of " + ", ".join(sorted(KINDS)))
    return EventFilter(parse_time(since, "since"), parse_time(until, "until"), kind or None,
                       org)


def event_json(e: SecurityEvent) -> dict[str, Any]:
    return {**chained_fields(e), "prev_hash": e.prev_hash, "hash": e.hash}


@dataclass
class ChainReport:
    ok: bool
    events: int
    problems: list[str] = field(default_factory=list)


def verify(session: Session, kept_export: list[dict[str, Any]] | None = None) -> ChainReport:
    """Walk the log: each event's hash, each link to the one before, the head; and, given an
    export saved earlier (e.g. by the SIEM), that each of its events is still here unchanged.

    Events dropped by retention are missing from the start only; the first kept event's
    link to the dropped one cannot be checked.
    """
    problems: list[str] = []
    prev: str | None = None
    count, first_id = 0, None
    kept: dict[int, dict[str, Any]] = {}
    for e in events(session, EventFilter()):
        count += 1
        first_id = e.id if first_id is None else first_id
        if event_hash(e.prev_hash, chained_fields(e)) != e.hash:
            problems.append(f"event {e.id} was edited: its content does not match its hash")
        if prev is not None and e.prev_hash != prev:
            problems.append(f"event {e.id} does not follow the event before it: events were "
                            "deleted, reordered or rewritten")
        prev = e.hash
        kept[e.id] = json.loads(json.dumps(event_json(e)))  # as an export line reads
    head = session.get(SecurityLogHead, 1)
    if head is not None and count and (head.hash != prev):
        problems.append("the log does not end where its head says: events were dropped from "
                        "the end or the head was changed")
    for saved in kept_export or []:
        sid = saved.get("id")
        if not isinstance(sid, int):
            problems.append("the saved export has a line with no event id")
            continue
        if first_id is not None and sid < first_id:
            continue  # dropped by retention since it was saved
        if kept.get(sid) != saved:
            problems.append(f"event {sid} is not what the saved export holds: it was edited "
                            "or deleted since")
    return ChainReport(not problems, count, problems)


def events(session: Session, flt: EventFilter, *, batch: int = 1000) -> Iterator[SecurityEvent]:
    """Events in order, read a batch at a time (an export may be long)."""
    after, sent = 0, 0
    while sent < MAX_EXPORT_ROWS:
        q = select(SecurityEvent).where(SecurityEvent.id > after)
        if flt.since is not None:
            q = q.where(SecurityEvent.at >= flt.since)
        if flt.until is not None:
            q = q.where(SecurityEvent.at < flt.until)
        if flt.kind in FAMILIES:
            q = q.where(SecurityEvent.kind.like(f"{flt.kind}.%"))
        elif flt.kind:
            q = q.where(SecurityEvent.kind == flt.kind)
        if flt.org is not None:
            q = q.where(SecurityEvent.org_id == flt.org)
        rows = list(session.scalars(q.order_by(SecurityEvent.id).limit(batch)))
        if not rows:
            return
        yield from rows
        sent += len(rows)
        after = rows[-1].id


def jsonl(session: Session, flt: EventFilter) -> Iterator[str]:
    """The events as JSON lines (one object and a newline each), for a SIEM."""
    for e in events(session, flt):
        yield json.dumps(event_json(e), sort_keys=True, ensure_ascii=False) + "\n"


def admin_filter(who: Principal | None, flt: EventFilter) -> EventFilter:
    """The whole log is an admin's to export."""
    rules.require_admin(who, doing="export the security log")
    return flt


def shared_filter(who: Principal | None, flt: EventFilter, policy: str) -> EventFilter:
    """What a steward may fetch under the hub's sharing policy: their own organisation's
    events (its users, datasites and datasets), whatever organisation they asked for."""
    who = rules.require_security_log_share(who, policy)
    return EventFilter(flt.since, flt.until, flt.kind, who.org_id)

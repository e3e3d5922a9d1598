"""Reading the security log: filters, JSON-lines export, and who may read what.

Admins export the whole log; a data steward fetches their own organisation's events, and only
when the hub shares its log (``ndl hub --share-security-log org``). See
:mod:`ndl.ledger.security_log` for what is written and :mod:`ndl.access.rules` for the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal
from ndl.core.db import utcnow
from ndl.core.errors import InvalidInput
from ndl.ledger.security_log import KINDS
from ndl.ledger.security_models import SecurityEvent

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
    return {"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "actor": e.actor,
            "subject": e.subject, "org": e.org_id, "source": e.source,
            "outcome": e.outcome, "details": e.details}


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

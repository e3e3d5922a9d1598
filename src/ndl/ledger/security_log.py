"""The security log: authentication events, administrative actions and data transfers.

Apart from the public register, which says what the library decided for everyone to read,
this log says who signed in, failed, was locked out, got or lost a token, administered
something, or took data away — the events a security team feeds to its SIEM. It is private to
the hub (admins export it as JSON lines), and shared with a datasite's stewards only for
their own organisation, and only when the hub's policy says so (``--share-security-log org``).

Every write goes through :func:`record` (inside the caller's transaction, so the event commits
with what it records) or :func:`record_apart` (its own transaction: for a refusal, whose
caller's transaction rolls back). Nothing here edits or deletes a row except :func:`prune`,
which drops rows older than the retention period. Details never carry secrets: keys that name
one (password, token, secret, key, cookie ...) are dropped and token-shaped strings masked,
whatever a caller passes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, timedelta
from typing import Any

import rfc8785
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ndl.access.models import User
from ndl.catalogue.models import Dataset
from ndl.core.db import Database, utcnow
from ndl.core.errors import InvalidInput
from ndl.ledger.security_models import SecurityEvent, SecurityLogHead

# The kinds of event, by family; record() refuses any other kind so a typo cannot start a
# family of its own that a SIEM rule would miss.
AUTH_KINDS = frozenset({
    "auth.sign_in", "auth.sign_in_failed", "auth.lockout", "auth.token_issued",
    "auth.token_revoked", "auth.sign_out"})
ADMIN_KINDS = frozenset({
    "admin.org_created", "admin.user_created", "admin.role_changed", "admin.suspension",
    "admin.reinstatement", "admin.key_revoked", "admin.key_rotated", "admin.incident_raised",
    "admin.incident_action", "admin.incident_state", "admin.security_log_export"})
TRANSFER_KINDS = frozenset({
    "transfer.blob_download", "transfer.result_delivered", "transfer.rows_served"})
KINDS = AUTH_KINDS | ADMIN_KINDS | TRANSFER_KINDS
OUTCOMES = ("ok", "failed", "refused")
SHARE_POLICIES = ("none", "org")

# A key naming a secret is dropped with its value; strings shaped like a token are masked.
_SECRET_KEY = re.compile(r"pass|secret|token|cookie|authori|key|credential|session|csrf",
                         re.IGNORECASE)
_TOKENISH = re.compile(r"ndl_[A-Za-z0-9_-]{8,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_.-]+")
MAX_DETAIL_CHARS = 4000


def _clean(value: Any, depth: int = 0) -> Any:
    if depth > 4:
        return "…"
    if isinstance(value, dict):
        return {str(k)[:60]: _clean(v, depth + 1) for k, v in list(value.items())[:40]
                if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in list(value)[:40]]
    if isinstance(value, str):
        return _TOKENISH.sub("[masked]", value[:500])
    if value is None or isinstance(value, bool):
        return value
    # The hash is over canonical JSON (RFC 8785), which has no NaN and no integer past 2**53.
    if isinstance(value, int) and abs(value) <= 2**53:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _TOKENISH.sub("[masked]", str(value)[:500])


def clean_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """Details safe to keep: no secret-named keys, no token-shaped strings, bounded size."""
    out = _clean(details or {})
    assert isinstance(out, dict)
    if len(json.dumps(out, default=str)) > MAX_DETAIL_CHARS:
        return {"truncated": True}
    return out


def _mask(text: str, limit: int) -> str:
    return _TOKENISH.sub("[masked]", text)[:limit]


def record(session: Session, kind: str, *, actor: str, subject: str = "", source: str = "",
           outcome: str = "ok", org: str | None = None,
           details: dict[str, Any] | None = None) -> SecurityEvent:
    """Add one event inside the caller's transaction."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown security event kind {kind!r}; add it to "
                           "ndl.ledger.security_log.KINDS")
    if outcome not in OUTCOMES:
        raise InvalidInput(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    # Bumping the head first takes its row lock: concurrent writers queue here rather than
    # both chaining onto the same previous event (as the register does).
    seq, prev_hash = session.execute(
        update(SecurityLogHead).where(SecurityLogHead.id == 1)
        .values(seq=SecurityLogHead.seq + 1)
        .returning(SecurityLogHead.seq, SecurityLogHead.hash)).one()
    event = SecurityEvent(id=seq, at=utcnow(), kind=kind, actor=_mask(actor, 200),
                          subject=_mask(subject, 300), org_id=(org or None) and org[:64],
                          source=source[:100], outcome=outcome, details=clean_details(details),
                          prev_hash=prev_hash)
    event.hash = event_hash(prev_hash, chained_fields(event))
    session.add(event)
    session.execute(update(SecurityLogHead).where(SecurityLogHead.id == 1)
                    .values(hash=event.hash))
    return event


def chained_fields(e: SecurityEvent) -> dict[str, Any]:
    """What an event's hash covers (everything but the hashes themselves)."""
    return {"id": e.id, "at": e.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "kind": e.kind, "actor": e.actor, "subject": e.subject, "org": e.org_id,
            "source": e.source, "outcome": e.outcome, "details": e.details}


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + rfc8785.dumps(fields)).hexdigest()


def record_apart(db: Database, kind: str, **fields: Any) -> None:
    """Record in a transaction of its own: for refusals, whose own transaction rolls back."""
    with db.write() as s:
        record(s, kind, **fields)


def prune(session: Session, keep_days: float) -> int:
    """Drop events older than the retention period; the one deletion this log allows."""
    if keep_days <= 0:
        return 0
    cutoff = utcnow() - timedelta(days=keep_days)
    result = session.execute(delete(SecurityEvent).where(SecurityEvent.at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def sign_in_refused(db: Database, kind: str, *, account: str, source: str, via: str) -> None:
    """A failed or locked-out sign-in. The name tried is kept only if it is an account's:
    people type passwords into the username box, and that text must not reach the log."""
    with db.write() as s:
        user = s.scalar(select(User).where(User.username == account[:64]))
        record(s, kind, actor=f"user:{user.username}" if user else "unknown-account",
               subject="sign-in", source=source, outcome="refused" if kind == "auth.lockout"
               else "failed", org=user.org_id if user else None, details={"via": via})


def rows_served(db: Database, dataset_id: str, *, actor: str, source: str, fmt: str,
                rows: int) -> None:
    """Rows of a dataset handed to someone directly (not through a work item's result)."""
    with db.write() as s:
        ds = s.get(Dataset, dataset_id)
        record(s, "transfer.rows_served", actor=actor, subject=f"dataset:{dataset_id}",
               source=source, org=ds.org_id if ds else None,
               details={"format": fmt, "rows": rows})

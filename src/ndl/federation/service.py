"""Datasite registration and the mailbox: the hub's half of the federation protocol.

The hub never calls a datasite. Work for a datasite is queued as a :class:`Message`; the
datasite leases it by long-polling, answers it with a signed reply, and the hub hands the
answer to whoever is waiting. A lease that runs out (the datasite crashed mid-work) makes the
message deliverable again; the datasite's own record of what it answered stops it doing the
work twice.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ndl.access.accounts import Principal, check_slug, get_org, official_actor
from ndl.core.db import Database, utcnow
from ndl.core.envelope import CLOCK_SKEW, seal
from ndl.core.errors import Conflict, NotFound, PermissionDenied
from ndl.core.keys import SigningKey, check_public_key
from ndl.federation.models import Datasite, Message, SeenNonce
from ndl.ledger import register

HUB_ID = "hub"


class SqlReplayGuard:
    """Remembers nonces in the hub database until they expire."""

    PRUNE_EVERY = 60.0

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pruned = 0.0

    def claim(self, sender: str, nonce: str, expires_at: int) -> bool:
        now = time.time()
        try:
            with self.db.write() as s:
                # Expired nonces can never be replayed (expiry is checked first), so clearing
                # them once a minute is enough; doing it per envelope cost a DELETE each time.
                if now - self._pruned > self.PRUNE_EVERY:
                    s.execute(delete(SeenNonce).where(
                        SeenNonce.expires_at < int(now) - CLOCK_SKEW))
                    self._pruned = now
                s.add(SeenNonce(sender=sender, nonce=nonce, expires_at=expires_at))
        except IntegrityError:
            return False
        return True


def register_datasite(
    session: Session, key: SigningKey, who: Principal, *, datasite_id: str, org_id: str,
    name: str, public_key: str, may_wait: bool = False,
) -> tuple[Datasite, bool]:
    """Record a datasite's key. A data steward of its organisation (or an admin) registering
    it approves it in the same act; with ``may_wait`` (the join route) anyone signed in may
    register it, and it stays ``pending`` until one of them approves it
    (:mod:`ndl.federation.membership`)."""
    from ndl.federation import membership

    check_slug(datasite_id, "datasite id")
    check_public_key(public_key)
    get_org(session, org_id)
    official = who.has("admin") or (who.has("steward") and who.org_id == org_id)
    if not (official or may_wait):
        raise PermissionDenied(
            f"only a data steward of {org_id!r} or an admin can register its datasite"
        )
    existing = session.get(Datasite, datasite_id)
    if existing is not None:
        if existing.public_key != public_key or existing.org_id != org_id:
            raise Conflict(
                f"datasite {datasite_id!r} is already registered with another key or "
                "organisation; ask an admin to retire it before re-registering"
            )
        if existing.state == "pending" and official:  # a steward's registration approves it
            membership.mark_approved(existing, who)
            register.append(session, key, kind="datasite.approved", actor=official_actor(who),
                            subject=datasite_id, payload={"org": org_id})
        return existing, False
    if session.scalar(select(Datasite).where(Datasite.public_key == public_key)) is not None:
        raise Conflict("that public key already belongs to another datasite")
    ds = Datasite(id=datasite_id, org_id=org_id, name=name or datasite_id, public_key=public_key,
                  state="approved" if official else "pending")
    if official:
        membership.mark_approved(ds, who)
    session.add(ds)
    register.append(
        session, key, kind="datasite.registered", actor=official_actor(who), subject=datasite_id,
        payload={"org": org_id, "public_key": public_key, "state": ds.state},
    )
    return ds, True


def get_datasite(session: Session, datasite_id: str) -> Datasite:
    ds = session.get(Datasite, datasite_id)
    if ds is None:
        raise NotFound(f"datasite {datasite_id!r} is not registered")
    return ds


def enqueue(
    session: Session, *, datasite_id: str, kind: str, body: dict[str, Any], timeout: float
) -> Message:
    msg = Message(
        id=str(uuid.uuid4()), datasite_id=datasite_id, kind=kind, body=body, state="queued",
        deadline=utcnow() + timedelta(seconds=timeout),
    )
    session.add(msg)
    return msg


def lease(
    session: Session, key: SigningKey, datasite_id: str, *, lease_seconds: float, limit: int = 10,
    kind_limits: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Hand out deliverable messages as freshly signed envelopes, and note the datasite is up.

    ``limit`` is how much work the datasite has room for and ``kind_limits`` how many more of
    a kind it will run now (its per-kind limits): the rest stay queued for a later poll, so a
    flood of one slow kind cannot take the slots the others need.
    """
    now = utcnow()
    ds = session.get(Datasite, datasite_id)
    if ds is not None:
        ds.last_seen_at = now
    caps = dict(kind_limits or {})
    if limit <= 0:
        return []
    query = (
        select(Message)
        .where(Message.datasite_id == datasite_id, Message.deadline > now)
        .where(or_(Message.state == "queued",
                   (Message.state == "leased") & (Message.lease_until < now)))
    )
    if full := sorted(k for k, n in caps.items() if n <= 0):
        query = query.where(Message.kind.not_in(full))
    msgs: list[Message] = []
    # Oldest first, skipping a capped kind's overflow; a bounded look-ahead keeps this cheap.
    for m in session.scalars(query.order_by(Message.created_at).limit(limit * 5)):
        if m.kind in caps:
            if caps[m.kind] <= 0:
                continue
            caps[m.kind] -= 1
        msgs.append(m)
        if len(msgs) == limit:
            break
    out = []
    for m in msgs:
        m.state, m.attempts = "leased", m.attempts + 1
        m.lease_until = now + timedelta(seconds=lease_seconds)
        ttl = max(1, int((m.deadline - now).total_seconds()) + 1)
        out.append(seal(
            key, sender=HUB_ID, recipient=datasite_id, kind=m.kind, ttl=ttl,
            # The lease rides along so the datasite knows how often to renew it.
            body={**m.body, "message_id": m.id, "attempt": m.attempts,
                  "lease_seconds": lease_seconds},
        ))
    return out


def renew(session: Session, datasite_id: str, message_ids: list[str], *,
          lease_seconds: float) -> list[str]:
    """Extend the leases a datasite still holds (it is working on them); return those renewed.

    Only this datasite's messages still leased are touched: an answered or expired one is not
    brought back, and a message that was re-leased elsewhere is not possible (one datasite).
    """
    if not message_ids:
        return []
    now = utcnow()
    ds = session.get(Datasite, datasite_id)
    if ds is not None:
        ds.last_seen_at = now
    msgs = session.scalars(select(Message).where(
        Message.id.in_(message_ids), Message.datasite_id == datasite_id,
        Message.state == "leased", Message.deadline > now))
    renewed = []
    for m in msgs:
        m.lease_until = now + timedelta(seconds=lease_seconds)
        renewed.append(m.id)
    return renewed


def answer(session: Session, datasite_id: str, message_id: str, reply: dict[str, Any]) -> bool:
    """Store a datasite's reply. Idempotent: a second reply to the same message is ignored."""
    msg = session.get(Message, message_id)
    if msg is None or msg.datasite_id != datasite_id:
        raise NotFound(f"message {message_id!r} was not sent to datasite {datasite_id!r}")
    if msg.state == "answered":
        return False
    msg.state, msg.reply, msg.answered_at = "answered", reply, utcnow()
    return True


def expire(session: Session, message_id: str) -> None:
    msg = session.get(Message, message_id)
    if msg is not None and msg.state != "answered":
        msg.state = "expired"


def datasite_json(ds: Datasite, online_window: float = 60.0) -> dict[str, Any]:
    seen = ds.last_seen_at
    online = (seen is not None and (utcnow() - seen).total_seconds() < online_window
              and ds.state == "approved")
    return {"id": ds.id, "org": ds.org_id, "name": ds.name, "public_key": ds.public_key,
            "registered_at": ds.registered_at.isoformat(),
            "last_seen_at": seen.isoformat() if seen else None, "online": online,
            "state": ds.state,
            # Everyone may see that a site is suspended (its data answer nothing), not why.
            "suspended": ds.suspended_at is not None}

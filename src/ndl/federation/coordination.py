"""Work that needs several parties: k-of-n approvals, expected contributions, one state machine.

A requester (a signed-in user) names the parties, how many of them must approve (k of n),
which of them must contribute (each by a blob's SHA-256, e.g. a sealed record set), and the
SHA-256 of what is being agreed to (the code, the linkage spec, the parameters). Parties
approve that exact hash, so an approval cannot be carried over to different work.

States::

    waiting_for_approvals --(k approvals)--> collecting --(every contribution)--> ready
    ready --(a party reports the result)--> complete
    any unfinished state --(a party withdraws / the requester cancels)--> withdrawn
    any unfinished state --(past its deadline)--> expired

The requester and each named party can inspect it (who approved, who contributed, what is
waiting on whom); nobody else can. A withdrawal stops the work: every work item linked to
the coordination is cancelled (:func:`ndl.federation.work.cancel_for`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access.accounts import Principal
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.federation.parties import PartyIdentity, require_identity
from ndl.federation.party_models import Coordination, CoordinationMember
from ndl.ledger import register

WAITING, COLLECTING, READY = "waiting_for_approvals", "collecting", "ready"
COMPLETE, WITHDRAWN, EXPIRED = "complete", "withdrawn", "expired"
FINAL = frozenset({COMPLETE, WITHDRAWN, EXPIRED})
MAX_PARTIES = 50
DEFAULT_TTL = 7 * 24 * 3600
MAX_TTL = 90 * 24 * 3600
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _sha(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise InvalidInput(f"{field_name} must be 64 lowercase hex digits (a SHA-256)")
    return value


@dataclass(frozen=True)
class NewCoordination:
    """What a requester asks for. ``contributors`` is a subset of ``parties``."""

    purpose: str
    parties: list[str]
    approvals_needed: int
    params_sha256: str
    contributors: list[str] = field(default_factory=list)
    ttl_seconds: int = DEFAULT_TTL

    @classmethod
    def parse(cls, body: Any) -> NewCoordination:
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object with purpose, parties, "
                               "approvals_needed and params_sha256")
        purpose = body.get("purpose")
        if not isinstance(purpose, str) or not 3 <= len(purpose.strip()) <= 2000:
            raise InvalidInput("purpose must say in 3 to 2,000 characters what the work is for")
        parties, contributors = body.get("parties"), body.get("contributors", [])
        for name, value in (("parties", parties), ("contributors", contributors)):
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise InvalidInput(f"{name} must be a list of principals such as "
                                   "'datasite:nhs-trust' or 'party:enclave-1'")
        assert isinstance(parties, list) and isinstance(contributors, list)
        k, ttl = body.get("approvals_needed"), body.get("ttl_seconds", DEFAULT_TTL)
        for name, value in (("approvals_needed", k), ("ttl_seconds", ttl)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput(f"{name} must be a whole number, got {value!r}")
        assert isinstance(k, int) and isinstance(ttl, int)
        return cls(purpose.strip(), list(parties), k,
                   _sha(body.get("params_sha256"), "params_sha256"), list(contributors), ttl)


@dataclass(frozen=True)
class MemberView:
    party: str
    approved: bool
    approved_at: str | None
    contributes: bool
    contributed: bool
    contribution_sha256: str | None
    withdrawn: bool


@dataclass(frozen=True)
class Waiting:
    party: str
    waiting_for: str    # "approval" or "contribution"


@dataclass(frozen=True)
class CoordinationView:
    """The inspect view: every party's part and what the work is waiting on."""

    id: str
    state: str
    purpose: str
    requester: str
    params_sha256: str
    approvals_needed: int
    approvals: int
    members: list[MemberView]
    waiting_on: list[Waiting]
    summary: str
    reason: str
    result_sha256: str | None
    created_at: str
    updated_at: str
    expires_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "purpose": self.purpose,
            "requester": self.requester, "params_sha256": self.params_sha256,
            "approvals_needed": self.approvals_needed, "approvals": self.approvals,
            "parties": [vars(m) for m in self.members],
            "waiting_on": [{"party": w.party, "for": w.waiting_for} for w in self.waiting_on],
            "summary": self.summary, "reason": self.reason,
            "result_sha256": self.result_sha256, "created_at": self.created_at,
            "updated_at": self.updated_at, "expires_at": self.expires_at,
        }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _members(session: Session, coordination_id: str) -> list[CoordinationMember]:
    return list(session.scalars(select(CoordinationMember).where(
        CoordinationMember.coordination_id == coordination_id)
        .order_by(CoordinationMember.party)))


def view(session: Session, c: Coordination) -> CoordinationView:
    members = _members(session, c.id)
    approvals = sum(1 for m in members if m.approved_at is not None)
    waiting: list[Waiting] = []
    if c.state == WAITING:
        waiting = [Waiting(m.party, "approval") for m in members
                   if m.approved_at is None and m.withdrawn_at is None]
        need = c.approvals_needed - approvals
        summary = (f"waiting for {need} more approval{'s' if need != 1 else ''} "
                   f"({approvals} of {c.approvals_needed} needed, from {len(members)} parties)")
    elif c.state == COLLECTING:
        waiting = [Waiting(m.party, "contribution") for m in members
                   if m.contributes and m.contribution_sha256 is None]
        summary = (f"approved; waiting for {len(waiting)} contribution"
                   f"{'s' if len(waiting) != 1 else ''}")
    elif c.state == READY:
        summary = "ready: every approval and contribution is in; the work can run"
    elif c.state == COMPLETE:
        summary = "complete"
    elif c.state == WITHDRAWN:
        summary = f"withdrawn: {c.reason}" if c.reason else "withdrawn"
    else:
        summary = "expired before it was complete"
    return CoordinationView(
        c.id, c.state, c.purpose, c.requester, c.params_sha256, c.approvals_needed, approvals,
        [MemberView(m.party, m.approved_at is not None, _iso(m.approved_at), m.contributes,
                    m.contribution_sha256 is not None, m.contribution_sha256,
                    m.withdrawn_at is not None) for m in members],
        waiting, summary, c.reason, c.result_sha256, c.created_at.isoformat(),
        c.updated_at.isoformat(), c.expires_at.isoformat())


def _subject(c: Coordination) -> str:
    return f"coordination:{c.id}"


def create(session: Session, key: SigningKey, who: Principal,
           req: NewCoordination) -> CoordinationView:
    """Start a coordination for the signed-in ``who``; every named party must be registered."""
    parties = list(dict.fromkeys(req.parties))
    if len(parties) != len(req.parties):
        raise InvalidInput("parties names a party twice: name each once")
    if not 1 <= len(parties) <= MAX_PARTIES:
        raise InvalidInput(f"name between 1 and {MAX_PARTIES} parties")
    for p in parties:
        require_identity(session, p)
    if not 1 <= req.approvals_needed <= len(parties):
        raise InvalidInput(f"approvals_needed must be between 1 and the number of parties "
                           f"({len(parties)}), got {req.approvals_needed}")
    strangers = sorted(set(req.contributors) - set(parties))
    if strangers:
        raise InvalidInput(f"contributors must be among the parties; not named: "
                           f"{', '.join(strangers)}")
    if not 60 <= req.ttl_seconds <= MAX_TTL:
        raise InvalidInput(f"ttl_seconds must be between 60 and {MAX_TTL}")
    now = utcnow()
    c = Coordination(
        id=str(uuid.uuid4()), requester_id=who.user_id, requester=f"user:{who.username}",
        purpose=req.purpose, params_sha256=req.params_sha256,
        approvals_needed=req.approvals_needed, state=WAITING, reason="", created_at=now,
        updated_at=now, expires_at=now + timedelta(seconds=req.ttl_seconds))
    session.add(c)
    session.flush()
    for p in parties:
        session.add(CoordinationMember(coordination_id=c.id, party=p,
                                       contributes=p in req.contributors))
    session.flush()
    register.append(session, key, kind="work.submitted", actor=f"user#{who.user_id}",
                    subject=_subject(c),
                    payload={"params_sha256": req.params_sha256, "parties": parties,
                             "approvals_needed": req.approvals_needed,
                             "contributors": sorted(set(req.contributors))})
    return view(session, c)


def _load(session: Session, key: SigningKey, coordination_id: object) -> Coordination:
    if not isinstance(coordination_id, str) or len(coordination_id) > 64:
        raise InvalidInput("coordination_id must be the id the hub gave when it was created")
    c = session.get(Coordination, coordination_id)
    if c is None:
        raise NotFound(f"no coordination {coordination_id!r}")
    if c.state not in FINAL and c.expires_at <= utcnow():
        c.state, c.updated_at = EXPIRED, utcnow()
        _stop_work(session, key, c, reason="the coordination expired", actor="hub")
    return c


def _member(session: Session, c: Coordination, party: PartyIdentity) -> CoordinationMember:
    m = session.get(CoordinationMember, (c.id, party.principal))
    if m is None:
        raise PermissionDenied(f"{party.principal} is not a party to coordination {c.id}")
    return m


def _open_for(c: Coordination, action: str) -> None:
    if c.state in FINAL:
        raise Conflict(f"coordination {c.id} is {c.state}: it can no longer be {action}")


def inspect_for_user(session: Session, key: SigningKey, who: Principal,
                     coordination_id: str) -> CoordinationView:
    """The requester's view; anyone else is refused (parties inspect with their key)."""
    c = _load(session, key, coordination_id)
    if c.requester_id != who.user_id:
        raise PermissionDenied("only the requester and the parties named in a coordination "
                               "can inspect it")
    return view(session, c)


def inspect_for_party(session: Session, key: SigningKey, party: PartyIdentity,
                      coordination_id: object) -> CoordinationView:
    c = _load(session, key, coordination_id)
    _member(session, c, party)
    return view(session, c)


@dataclass(frozen=True)
class Approval:
    counted: bool          # False when this party had already approved
    view: CoordinationView


def approve(session: Session, key: SigningKey, party: PartyIdentity, coordination_id: object,
            params_sha256: object) -> Approval:
    """Approve the exact work hashed ``params_sha256``; approving twice counts once."""
    c = _load(session, key, coordination_id)
    m = _member(session, c, party)
    if _sha(params_sha256, "params_sha256") != c.params_sha256:
        raise Conflict(f"you approved work {params_sha256}, but this coordination is for "
                       f"{c.params_sha256}: check what you were asked to approve")
    if m.approved_at is not None:
        return Approval(False, view(session, c))
    _open_for(c, "approved")
    if m.withdrawn_at is not None:
        raise Conflict("you withdrew from this coordination")
    if c.state != WAITING:
        return Approval(False, view(session, c))  # enough approvals already: nothing to add
    now = utcnow()
    m.approved_at, c.updated_at = now, now
    session.flush()
    approvals = sum(1 for x in _members(session, c.id) if x.approved_at is not None)
    register.append(session, key, kind="work.approved", actor=party.principal,
                    subject=_subject(c),
                    payload={"params_sha256": c.params_sha256, "approvals": approvals,
                             "approvals_needed": c.approvals_needed})
    if approvals >= c.approvals_needed:
        _advance(session, c)
    return Approval(True, view(session, c))


def _advance(session: Session, c: Coordination) -> None:
    """Move on once approvals are in: collect contributions, or be ready if none are due."""
    missing = [m for m in _members(session, c.id)
               if m.contributes and m.contribution_sha256 is None]
    c.state = COLLECTING if missing else READY


def contribute(session: Session, key: SigningKey, party: PartyIdentity, coordination_id: object,
               sha256: object) -> CoordinationView:
    """Record a contributor's blob (by hash). Allowed once the approvals are in."""
    c = _load(session, key, coordination_id)
    m = _member(session, c, party)
    digest = _sha(sha256, "sha256")
    _open_for(c, "contributed to")
    if not m.contributes:
        raise PermissionDenied(f"{party.principal} is not expected to contribute to {c.id}")
    if c.state == WAITING:
        raise Conflict("contributions are taken once the approvals are in; see "
                       "waiting_on in the coordination for who has yet to approve")
    if m.contribution_sha256 is not None:
        if m.contribution_sha256 == digest:
            return view(session, c)
        raise Conflict("you already contributed a different blob to this coordination")
    _check_blob(session, party, digest)
    now = utcnow()
    m.contribution_sha256, m.contributed_at, c.updated_at = digest, now, now
    session.flush()
    if c.state == COLLECTING:
        _advance(session, c)
    return view(session, c)


def _check_blob(session: Session, party: PartyIdentity, digest: str) -> None:
    """A contribution must name a blob the contributor holds at the hub, when there is a
    blob store; the hash alone is recorded either way, never the content."""
    try:
        from ndl.federation import blob_service
    except ImportError:
        return
    info = blob_service.blob_info(session, digest)
    if info is None or not info.complete:
        raise NotFound(f"no complete blob {digest} at the hub: upload it before contributing")
    if not blob_service.may_read(session, digest, party.principal):
        raise PermissionDenied("that blob is not yours: contribute a blob you uploaded")


def withdraw(session: Session, key: SigningKey, party: PartyIdentity, coordination_id: object,
             reason: object) -> CoordinationView:
    """A party withdraws: the coordination stops and its work items are cancelled."""
    c = _load(session, key, coordination_id)
    m = _member(session, c, party)
    _open_for(c, "withdrawn from")
    text = reason.strip()[:300] if isinstance(reason, str) else ""
    now = utcnow()
    m.withdrawn_at = now
    c.state, c.updated_at = WITHDRAWN, now
    c.reason = f"{party.principal} withdrew" + (f": {text}" if text else "")
    _stop_work(session, key, c, reason=c.reason, actor=party.principal)
    return view(session, c)


def cancel(session: Session, key: SigningKey, who: Principal, coordination_id: str,
           reason: str) -> CoordinationView:
    """The requester calls the work off."""
    c = _load(session, key, coordination_id)
    if c.requester_id != who.user_id:
        raise PermissionDenied("only the requester can cancel a coordination; a party "
                               "withdraws instead")
    _open_for(c, "cancelled")
    c.state, c.updated_at = WITHDRAWN, utcnow()
    c.reason = "the requester cancelled it" + (f": {reason.strip()[:300]}"
                                               if reason.strip() else "")
    _stop_work(session, key, c, reason=c.reason, actor=f"user#{who.user_id}")
    return view(session, c)


def complete(session: Session, key: SigningKey, party: PartyIdentity, coordination_id: object,
             result_sha256: object) -> CoordinationView:
    """A party that ran the work reports its result (by hash) once the coordination is ready."""
    c = _load(session, key, coordination_id)
    _member(session, c, party)
    digest = _sha(result_sha256, "result_sha256")
    _open_for(c, "completed")
    if c.state != READY:
        raise Conflict(f"coordination {c.id} is {c.state}, not ready: "
                       f"{view(session, c).summary}")
    c.state, c.result_sha256, c.updated_at = COMPLETE, digest, utcnow()
    register.append(session, key, kind="work.finished", actor=party.principal,
                    subject=_subject(c), payload={"ok": True, "result_sha256": digest})
    return view(session, c)


def _stop_work(session: Session, key: SigningKey, c: Coordination, *, reason: str,
               actor: str) -> None:
    """Cancel the coordination's linked work items and record the cancellation."""
    from ndl.federation import work  # work items link to coordinations, not the reverse

    cancelled = work.cancel_for(session, key, coordination_id=c.id, reason=reason, actor=actor)
    register.append(session, key, kind="work.cancelled", actor=actor, subject=_subject(c),
                    payload={"reason": reason, "state": c.state,
                             "work_items_cancelled": len(cancelled)})

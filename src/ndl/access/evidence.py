"""Evidence on people: accreditations and training as records, not a flag.

An admin records what an issuer vouched for (``accredited-researcher`` under the Digital
Economy Act, ``safe-researcher-training``, ``information-governance-training``), with the
issuer's reference and the day it lapses. A person holds a kind when a record of that kind
is unrevoked, already issued and not yet expired. A dataset's policy (``requires.evidence``)
names the kinds every project member must hold; :func:`shortfalls` is the one check, made
when access is requested (every member) and each time granted data are used (the user).

Evidence expiring within :data:`RENEW_WITHIN_DAYS` shows on the holder's account page and in
``ndl evidence list``; the hub's housekeeping records a reminder (:func:`remind_due`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal, official_actor
from ndl.access.models import ACCREDITATION_KINDS, Baseline, Evidence, User
from ndl.access.policy import EvidenceKind, ReferenceKind, Requirements, one_line
from ndl.access.project_models import Project
from ndl.access.references import reference_shortfalls
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.ledger import register

if TYPE_CHECKING:
    from ndl.access.service import Operator

# Evidence this close to lapsing is shown for renewal and reminded of.
RENEW_WITHIN_DAYS = 30
# The furthest ahead a record may run: accreditations and certificates last a few years.
MAX_YEARS = 10

State = Literal["valid", "expired", "revoked", "not-yet-valid"]


def _check_dates(issued_on: date, expires_on: date) -> None:
    today = date.today()
    if issued_on > today:
        raise InvalidInput(f"issued: {issued_on} is in the future; give the day the issuer "
                           "issued it (YYYY-MM-DD)")
    if expires_on <= today:
        raise InvalidInput(f"expires: {expires_on} is not in the future; record evidence that "
                           "is still valid, with the day it lapses (YYYY-MM-DD)")
    if expires_on > today + timedelta(days=366 * MAX_YEARS):
        raise InvalidInput(f"expires: {expires_on} is more than {MAX_YEARS} years away; give "
                           "the day the issuer says it lapses")


class NewEvidence(BaseModel):
    """What an admin records: ``legacy-flag`` is the migration's, never recorded by hand."""

    kind: EvidenceKind
    issuer: str = Field(min_length=2, max_length=200)
    reference: str = Field(min_length=1, max_length=200)
    issued_on: date = Field(default_factory=date.today)
    expires_on: date

    @field_validator("issuer", "reference")
    @classmethod
    def _clean(cls, value: str) -> str:
        return one_line(value)


class EvidenceView(BaseModel):
    id: int
    username: str
    kind: str
    issuer: str
    reference: str
    issued_on: date
    expires_on: date | None
    recorded_by: str
    state: State
    days_left: int | None          # until it lapses; None: no expiry recorded (legacy-flag)
    renew: bool                    # valid, and lapsing within RENEW_WITHIN_DAYS
    reminded: bool                 # the hub has sent a renewal reminder


def _state(day: date, revoked: bool, issued_on: date, expires_on: date | None) -> State:
    if revoked:
        return "revoked"
    if issued_on > day:
        return "not-yet-valid"
    if expires_on is not None and expires_on < day:
        return "expired"
    return "valid"


def view(e: Evidence, username: str) -> EvidenceView:
    today = date.today()
    state = _state(today, e.revoked_at is not None, e.issued_on, e.expires_on)
    left = (e.expires_on - today).days if e.expires_on is not None else None
    return EvidenceView(
        id=e.id, username=username, kind=e.kind, issuer=e.issuer, reference=e.reference,
        issued_on=e.issued_on, expires_on=e.expires_on, recorded_by=e.recorded_by,
        state=state, days_left=left,
        renew=state == "valid" and left is not None and left <= RENEW_WITHIN_DAYS,
        reminded=e.reminded_at is not None)


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return user


def _recorder(who: Principal | Operator, username: str) -> str:
    # Principals must be another admin; an Operator holds the hub's database and key.
    if isinstance(who, Principal):
        return official_actor(rules.require_evidence_recorder(who, username))
    return who.name


def add_evidence(session: Session, key: SigningKey, who: Principal | Operator,
                 username: str, body: NewEvidence) -> EvidenceView:
    """Record evidence about ``username``; the register says what kind and until when."""
    actor = _recorder(who, username)
    _check_dates(body.issued_on, body.expires_on)
    user = _user(session, username)
    row = Evidence(kind=body.kind, issuer=body.issuer, reference=body.reference,
                   issued_on=body.issued_on, expires_on=body.expires_on, recorded_by=actor,
                   revoked_reason="")
    user.evidence.append(row)
    session.flush()
    register.append(session, key, kind="evidence.recorded", actor=actor,
                    subject=f"user#{user.id}",
                    payload={"kind": body.kind, "expires_on": body.expires_on.isoformat()})
    return view(row, user.username)


def revoke_evidence(session: Session, key: SigningKey, who: Principal | Operator,
                    evidence_id: int, reason: str) -> EvidenceView:
    row = session.get(Evidence, evidence_id)
    if row is None:
        raise NotFound(f"evidence #{evidence_id} does not exist: 'ndl evidence list "
                       "--user NAME' shows its ids")
    user = session.get(User, row.user_id)
    assert user is not None
    actor = _recorder(who, user.username)
    if row.revoked_at is not None:
        raise Conflict(f"evidence #{evidence_id} was already revoked")
    if len(reason.strip()) < 5:
        raise InvalidInput("reason: say why the evidence is revoked (at least 5 characters)")
    row.revoked_at, row.revoked_reason = utcnow(), reason.strip()[:2000]
    register.append(session, key, kind="evidence.revoked", actor=actor,
                    subject=f"user#{user.id}", payload={"kind": row.kind})
    return view(row, user.username)


def list_evidence(session: Session, who: Principal | None,
                  username: str | None = None) -> list[EvidenceView]:
    """``who``'s own evidence, or (admins and stewards) anyone's."""
    who = rules.require_signed_in(who, doing="see evidence")
    name = username or who.username
    if not rules.may_see_evidence_of(who, name):
        raise PermissionDenied("you may see your own evidence; admins and data stewards see "
                               "anyone's")
    user = _user(session, name)
    return [view(e, user.username) for e in user.evidence]


# --- the check -----------------------------------------------------------------------------

def _satisfies(kind: str, wanted: str) -> bool:
    # The migrated flag meant "accredited researcher"; it stands for that kind until replaced.
    return kind == wanted or (wanted == "accredited-researcher" and kind in ACCREDITATION_KINDS)


def holds(user: User, kind: str, day: date | None = None) -> bool:
    day = day or date.today()
    return any(_satisfies(e.kind, kind) and e.valid_on(day) for e in user.evidence)


def _person_shortfalls(user: User, kinds: list[str], day: date) -> list[str]:
    out = []
    for kind in kinds:
        if holds(user, kind, day):
            continue
        lapsed = [e for e in user.evidence if _satisfies(e.kind, kind) and e.revoked_at is None
                  and e.expires_on is not None and e.expires_on < day]
        what = (f"{user.username}'s {kind} evidence expired on "
                f"{max(e.expires_on for e in lapsed if e.expires_on)}: renew it"
                if lapsed else f"{user.username} holds no valid {kind} evidence")
        out.append(f"{what} (an admin records it: 'ndl admin evidence add {user.username} "
                   f"--kind {kind} --issuer ... --reference ... --expires YYYY-MM-DD')")
    return out


def shortfalls(session: Session, project: Project, people: list[int],
               requires: Requirements, day: date | None = None) -> list[str]:
    """Everything ``requires`` asks that is not valid on ``day``: each person's missing or
    lapsed evidence and the project's missing or lapsed references, each with its fix."""
    day = day or date.today()
    out: list[str] = []
    if requires.evidence:
        for uid in people:
            user = session.get(User, uid)
            if user is not None:
                out += _person_shortfalls(user, list(requires.evidence), day)
    return out + reference_shortfalls(project, list(requires.references), day)


def accredited(session: Session, user_id: int) -> bool:
    """Whether a user is an accredited researcher today (auto-approval asks this)."""
    user = session.get(User, user_id)
    return user is not None and user.accredited


# --- the federation's baseline (SATRE 5.2.01, 5.3.02) ----------------------------------------

class NewBaseline(BaseModel):
    """What every user of a tier's data must hold, whatever the dataset's own policy says."""

    tier: Literal["safeguarded", "controlled"]
    evidence: list[EvidenceKind] = Field(default_factory=list, max_length=3)
    references: list[ReferenceKind] = Field(default_factory=list, max_length=3)


class BaselineView(BaseModel):
    tier: str
    evidence: list[str]
    references: list[str]


def baseline(session: Session, tier: str) -> Requirements:
    rows = session.scalars(select(Baseline).where(Baseline.tier == tier)
                           .order_by(Baseline.kind)).all()
    return Requirements.model_validate({
        "evidence": [r.kind for r in rows if r.applies_to == "person"],
        "references": [r.kind for r in rows if r.applies_to == "project"]})


def baselines(session: Session) -> list[BaselineView]:
    """The baseline of every tier that serves granted data (public: what the federation
    agreed every user must hold)."""
    return [BaselineView(tier=t, **baseline(session, t).model_dump())
            for t in ("safeguarded", "controlled")]


def set_baseline(session: Session, key: SigningKey, who: Principal | Operator,
                 body: NewBaseline) -> BaselineView:
    """Replace a tier's baseline (an admin records what the federation agreed)."""
    actor = (official_actor(rules.require_admin(who, doing="set the federation's baseline"))
             if isinstance(who, Principal) else who.name)
    for row in session.scalars(select(Baseline).where(Baseline.tier == body.tier)):
        session.delete(row)
    session.flush()
    kinds = [(k, "person") for k in dict.fromkeys(body.evidence)] + \
        [(k, "project") for k in dict.fromkeys(body.references)]
    for kind, applies_to in kinds:
        session.add(Baseline(tier=body.tier, kind=kind, applies_to=applies_to, set_by=actor))
    session.flush()
    view_ = BaselineView(tier=body.tier, **baseline(session, body.tier).model_dump())
    register.append(session, key, kind="evidence.baseline", actor=actor,
                    subject=f"tier:{body.tier}",
                    payload={"evidence": view_.evidence, "references": view_.references})
    return view_


def requirements_for(session: Session, tier: str, requires: Requirements) -> Requirements:
    """A dataset's own requirements together with its tier's federation baseline."""
    base = baseline(session, tier)
    return Requirements.model_validate({
        "evidence": list(dict.fromkeys([*base.evidence, *requires.evidence])),
        "references": list(dict.fromkeys([*base.references, *requires.references]))})


# --- renewal reminders ---------------------------------------------------------------------

@dataclass(frozen=True)
class Reminder:
    user_id: int
    kind: str
    expires_on: date


def remind_due(session: Session, key: SigningKey, *,
               within: int = RENEW_WITHIN_DAYS) -> list[Reminder]:
    """Mark each valid record lapsing within ``within`` days that was not yet reminded of, and
    record the reminder in the register (kind and day only). The holder sees it on their
    account page and in ``ndl evidence list``."""
    today = date.today()
    due = session.scalars(select(Evidence).where(
        Evidence.revoked_at.is_(None), Evidence.reminded_at.is_(None),
        Evidence.expires_on.is_not(None), Evidence.expires_on >= today,
        Evidence.expires_on <= today + timedelta(days=within)).with_for_update()).all()
    sent = []
    for e in due:
        assert e.expires_on is not None
        e.reminded_at = utcnow()
        register.append(session, key, kind="evidence.reminder", actor="hub",
                        subject=f"user#{e.user_id}",
                        payload={"kind": e.kind, "expires_on": e.expires_on.isoformat()})
        sent.append(Reminder(e.user_id, e.kind, e.expires_on))
    return sent

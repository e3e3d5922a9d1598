"""References on projects: ethics approval, DPIA, data-sharing agreement.

A project's lead (or an admin) records each document's reference, its issuer and the day it
lapses. ndl keeps the reference and its dates; it does not hold or judge the document, which
the data steward reads when deciding. A dataset's policy (``requires.references``) names the
kinds a project must hold: checked when access is requested and each time the data are used
(:func:`ndl.access.evidence.shortfalls`), so an expired DPIA stops use until it is renewed.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal, official_actor
from ndl.access.policy import ReferenceKind, one_line
from ndl.access.project_models import Project, ProjectMember, ProjectReference
from ndl.access.projects import get_project, member_of
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.ledger import register

if TYPE_CHECKING:
    from ndl.access.service import Operator

MAX_YEARS = 10
RENEW_WITHIN_DAYS = 30


class NewReference(BaseModel):
    kind: ReferenceKind
    issuer: str = Field(min_length=2, max_length=200)
    reference: str = Field(min_length=1, max_length=200)
    expires_on: date

    @field_validator("issuer", "reference")
    @classmethod
    def _clean(cls, value: str) -> str:
        return one_line(value)


class ReferenceView(BaseModel):
    id: int
    project: str
    kind: str
    issuer: str
    reference: str
    expires_on: date
    recorded_by: str
    state: Literal["valid", "expired", "revoked"]
    days_left: int
    renew: bool
    reminded: bool


def view(r: ProjectReference) -> ReferenceView:
    today = date.today()
    state: Literal["valid", "expired", "revoked"] = (
        "revoked" if r.revoked_at is not None else
        "expired" if r.expires_on < today else "valid")
    left = (r.expires_on - today).days
    return ReferenceView(id=r.id, project=r.project_id, kind=r.kind, issuer=r.issuer,
                         reference=r.reference, expires_on=r.expires_on,
                         recorded_by=r.recorded_by, state=state, days_left=left,
                         renew=state == "valid" and left <= RENEW_WITHIN_DAYS,
                         reminded=r.reminded_at is not None)


def _lead(project: Project, who: Principal) -> bool:
    return any(m.user_id == who.user_id and m.role == "lead" for m in project.members)


def _recorder(project: Project, who: Principal | Operator) -> str:
    if isinstance(who, Principal):
        who = rules.require_reference_recorder(who, lead=_lead(project, who),
                                               project=project.id)
        return official_actor(who)
    return who.name


def add_reference(session: Session, key: SigningKey, who: Principal | Operator,
                  project_id: str, body: NewReference) -> ReferenceView:
    project = get_project(session, project_id)
    actor = _recorder(project, who)
    today = date.today()
    if body.expires_on <= today:
        raise InvalidInput(f"expires: {body.expires_on} is not in the future; record a "
                           "reference that is still valid, with the day it lapses (YYYY-MM-DD)")
    if body.expires_on > today + timedelta(days=366 * MAX_YEARS):
        raise InvalidInput(f"expires: {body.expires_on} is more than {MAX_YEARS} years away")
    if project.end_date < today:
        raise Conflict(f"project {project.id} ended on {project.end_date}")
    row = ProjectReference(kind=body.kind, issuer=body.issuer, reference=body.reference,
                           expires_on=body.expires_on, recorded_by=actor)
    project.references.append(row)
    session.flush()
    # The register says that a reference of this kind exists and until when, not its number.
    register.append(session, key, kind="project.reference", actor=actor,
                    subject=f"project:{project.id}",
                    payload={"kind": body.kind, "expires_on": body.expires_on.isoformat()})
    return view(row)


def revoke_reference(session: Session, key: SigningKey, who: Principal | Operator,
                     project_id: str, reference_id: int) -> ReferenceView:
    project = get_project(session, project_id)
    actor = _recorder(project, who)
    row = next((r for r in project.references if r.id == reference_id), None)
    if row is None:
        raise NotFound(f"project {project_id} has no reference #{reference_id}")
    if row.revoked_at is not None:
        raise Conflict(f"reference #{reference_id} was already revoked")
    row.revoked_at = utcnow()
    register.append(session, key, kind="project.reference-revoked", actor=actor,
                    subject=f"project:{project.id}", payload={"kind": row.kind})
    return view(row)


def list_references(session: Session, who: Principal | None,
                    project_id: str) -> list[ReferenceView]:
    who = rules.require_signed_in(who, doing="see a project's references")
    project = get_project(session, project_id)
    if not rules.may_see_references(who, member=member_of(project, who)):
        raise PermissionDenied(f"project {project_id}'s references are seen by its members, "
                               "data stewards and admins")
    return [view(r) for r in project.references]


def remind_due(session: Session, key: SigningKey, *,
               within: int = RENEW_WITHIN_DAYS) -> list[ReferenceView]:
    """Mark each valid reference lapsing within ``within`` days that was not yet reminded
    of, and record the reminder in the register (kind and day, not the number)."""
    today = date.today()
    due = session.scalars(select(ProjectReference).where(
        ProjectReference.revoked_at.is_(None), ProjectReference.reminded_at.is_(None),
        ProjectReference.expires_on >= today,
        ProjectReference.expires_on <= today + timedelta(days=within))
        .with_for_update()).all()
    for r in due:
        r.reminded_at = utcnow()
        register.append(session, key, kind="project.reference-reminder", actor="hub",
                        subject=f"project:{r.project_id}",
                        payload={"kind": r.kind, "expires_on": r.expires_on.isoformat()})
    return [view(r) for r in due]


def due_for_lead(session: Session, who: Principal) -> list[ReferenceView]:
    """References of the projects ``who`` leads that are due for renewal (account page)."""
    led = session.scalars(select(ProjectMember.project_id).where(
        ProjectMember.user_id == who.user_id, ProjectMember.role == "lead")).all()
    rows = session.scalars(select(ProjectReference).where(
        ProjectReference.project_id.in_(led), ProjectReference.revoked_at.is_(None))
        .order_by(ProjectReference.expires_on)).all() if led else []
    return [v for v in map(view, rows) if v.renew]


def reference_shortfalls(project: Project, kinds: list[str], day: date) -> list[str]:
    """Each required kind the project holds no valid reference of, saying which to renew."""
    out = []
    for kind in kinds:
        rows = [r for r in project.references if r.kind == kind and r.revoked_at is None]
        if any(r.valid_on(day) for r in rows):
            continue
        fix = (f"'ndl project add-reference {project.id} --kind {kind} --issuer ... "
               "--reference ... --expires YYYY-MM-DD' (the project's lead)")
        if rows:
            last = max(rows, key=lambda r: r.expires_on)
            out.append(f"project {project.id}'s {kind} {last.reference!r} expired on "
                       f"{last.expires_on}: renew it and record the new one with {fix}")
        else:
            out.append(f"project {project.id} holds no valid {kind} reference: record one "
                       f"with {fix}")
    return out

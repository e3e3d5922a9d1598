"""Ending access: grants ended by a withdrawal or a datasite leaving, and projects closed.

A PROJECT is closed by its lead or an admin (``ndl project close ID``), or by the hub's
housekeeping once its end date plus its retention period has passed: its grants are revoked
(each datasite told, so it refuses new work itself), its pending requests closed, new jobs
and requests refused, and its job outputs kept read-only for the retention period, after
which housekeeping expires them (downloads refused, the register says so). The closure is
in the public register.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal, official_actor
from ndl.access.project_models import AccessRequest, Grant, Project, RequestItem
from ndl.access.projects import get_project
from ndl.catalogue.models import Dataset
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput
from ndl.core.keys import SigningKey
from ndl.federation.lifecycle_models import ProjectClosure
from ndl.federation.service import enqueue
from ndl.ledger import register

# Days a project's outputs stay (and, after its end date, the project stays open) when the
# project sets no retention period of its own.
DEFAULT_RETENTION_DAYS = 365


def end_grants_on(session: Session, key: SigningKey, dataset_ids: list[str], *, actor: str,
                  reason: str, notify: bool) -> int:
    """Revoke every live grant on these datasets, with ``reason``; how many. ``notify``
    tells each datasite (not done for one that is leaving: it no longer listens)."""
    if not dataset_ids:
        return 0
    now = utcnow()
    grants = session.scalars(select(Grant).where(
        Grant.dataset_id.in_(dataset_ids), Grant.revoked_at.is_(None),
        Grant.expires_at > now).order_by(Grant.id)).all()
    for g in grants:
        _end(session, key, g, actor=actor, reason=reason, notify=notify)
    return len(grants)


def _end(session: Session, key: SigningKey, g: Grant, *, actor: str, reason: str,
         notify: bool) -> None:
    g.revoked_at, g.revoked_reason = utcnow(), reason[:2000]
    item = session.get(RequestItem, g.item_id)
    if item is not None:
        item.state = "revoked"
    ds = session.get(Dataset, g.dataset_id)
    if notify and ds is not None:
        enqueue(session, datasite_id=ds.datasite_id, kind="grant.revoked",
                body={"dataset": ds.name, "grant_id": g.id}, timeout=3600)
    register.append(session, key, kind="grant.revoked", actor=actor, subject=f"grant:{g.id}",
                    payload={"project": g.project_id, "dataset": g.dataset_id,
                             "reason": reason[:500]})


def close_pending_requests(session: Session, dataset_ids: list[str], *, reason: str) -> int:
    items = session.scalars(select(RequestItem).where(
        RequestItem.dataset_id.in_(dataset_ids), RequestItem.state == "pending")).all()
    for item in items:
        item.state, item.decision_reason, item.decided_at = "withdrawn", reason, utcnow()
    return len(items)


# -- projects ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Closure:
    project: str
    closed_at: str
    closed_by: str
    reason: str
    outputs_until: str
    outputs_expired_at: str | None
    grants_revoked: int = 0

    def to_json(self) -> dict[str, object]:
        return {"project": self.project, "closed_at": self.closed_at,
                "closed_by": self.closed_by, "reason": self.reason,
                "outputs_until": self.outputs_until,
                "outputs_expired_at": self.outputs_expired_at,
                "grants_revoked": self.grants_revoked}


def view(c: ProjectClosure, grants_revoked: int = 0) -> Closure:
    return Closure(c.project_id, c.closed_at.isoformat(), c.closed_by, c.reason,
                   c.outputs_until.isoformat(),
                   c.outputs_expired_at.isoformat() if c.outputs_expired_at else None,
                   grants_revoked)


def retention_days(project: Project) -> int:
    return project.retention_days if project.retention_days is not None \
        else DEFAULT_RETENTION_DAYS


def closure_of(session: Session, project_id: str) -> ProjectClosure | None:
    return session.get(ProjectClosure, project_id)


def require_open(session: Session, project_id: str) -> None:
    """Refuse new work for a closed project."""
    c = session.get(ProjectClosure, project_id)
    if c is not None:
        raise Conflict(f"project {project_id} was closed on {c.closed_at.date()} ({c.reason}):"
                       " it takes no new requests or jobs; its released outputs stay "
                       f"readable until {c.outputs_until.date()}")


def require_outputs_kept(session: Session, project_id: str) -> None:
    """Refuse a closed project's job outputs once its retention period has passed."""
    c = session.get(ProjectClosure, project_id)
    if c is not None and c.outputs_expired_at is not None:
        raise Conflict(f"project {project_id} was closed on {c.closed_at.date()} and its "
                       f"outputs expired on {c.outputs_expired_at.date()} at the end of its "
                       "retention period: they are no longer available")


def close_project(session: Session, key: SigningKey, who: Principal | None, project_id: str,
                  *, reason: str) -> Closure:
    project = get_project(session, project_id)
    official = rules.require_project_lead(who, project.owner_id,
                                          doing=f"close project {project_id}")
    reason = reason.strip()
    if len(reason) < 5:
        raise InvalidInput("reason: say why the project closes (at least 5 characters)")
    actor = official_actor(official)
    return _close(session, key, project, actor=actor, reason=reason)


def _close(session: Session, key: SigningKey, project: Project, *, actor: str,
           reason: str) -> Closure:
    if session.get(ProjectClosure, project.id) is not None:
        raise Conflict(f"project {project.id} is already closed")
    now = utcnow()
    c = ProjectClosure(project_id=project.id, closed_at=now, closed_by=actor, reason=reason,
                       outputs_until=now + timedelta(days=retention_days(project)))
    session.add(c)
    grants = session.scalars(select(Grant).where(
        Grant.project_id == project.id, Grant.revoked_at.is_(None),
        Grant.expires_at > now).order_by(Grant.id)).all()
    for g in grants:
        _end(session, key, g, actor=actor, reason=f"project {project.id} closed: {reason}",
             notify=True)
    pending = session.scalars(select(RequestItem).join(
        AccessRequest, AccessRequest.id == RequestItem.request_id).where(
        AccessRequest.project_id == project.id, RequestItem.state == "pending")).all()
    for item in pending:
        item.state, item.decided_at = "withdrawn", now
        item.decision_reason = f"project {project.id} closed"
    register.append(session, key, kind="project.closed", actor=actor, subject=project.id,
                    payload={"reason": reason, "grants_revoked": len(grants),
                             "outputs_until": c.outputs_until.date().isoformat()})
    session.flush()
    return view(c, len(grants))


def enforce_retention(session: Session, key: SigningKey, today: date | None = None
                      ) -> tuple[list[str], list[str]]:
    """Close projects past end date + retention; expire the outputs of closures past their
    ``outputs_until``. Returns (closed, expired) project ids."""
    today = today or date.today()
    closed_ids = set(session.scalars(select(ProjectClosure.project_id)))
    closed = []
    for p in session.scalars(select(Project).where(Project.end_date < today)
                             .order_by(Project.id)):
        if p.id in closed_ids or p.end_date + timedelta(days=retention_days(p)) >= today:
            continue
        _close(session, key, p, actor="hub",
               reason=f"ended {p.end_date} and its {retention_days(p)}-day retention passed")
        closed.append(p.id)
    expired = []
    now = utcnow()
    for c in session.scalars(select(ProjectClosure).where(
            ProjectClosure.outputs_expired_at.is_(None), ProjectClosure.outputs_until < now)):
        c.outputs_expired_at = now
        register.append(session, key, kind="project.outputs_expired", actor="hub",
                        subject=c.project_id, payload={"closed_at": c.closed_at.isoformat()})
        expired.append(c.project_id)
    return closed, expired

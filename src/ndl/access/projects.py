"""Projects: who wants data, for what purpose, on what legal basis, until when."""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access.accounts import Principal
from ndl.access.models import User
from ndl.access.policy import LEGAL_BASES, PURPOSES
from ndl.access.project_models import Project, ProjectMember
from ndl.core.errors import InvalidInput, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.ledger import register

MIN_PURPOSE = 20


def create_project(
    session: Session, key: SigningKey, who: Principal, *, title: str, purpose: str,
    purpose_category: str, lay_summary: str, legal_basis: str, end_date: date,
    members: list[str] | None = None,
) -> Project:
    if not who.has("researcher"):
        raise PermissionDenied("only researchers can create projects")
    problems = []
    if not title.strip():
        problems.append({"field": "title", "problem": "give the project a title"})
    if len(purpose.strip()) < MIN_PURPOSE:
        problems.append({"field": "purpose", "problem":
                         f"state the purpose in at least {MIN_PURPOSE} characters: what "
                         "question, and why the public benefits"})
    if purpose_category not in PURPOSES:
        problems.append({"field": "purpose_category",
                         "problem": f"must be one of {', '.join(PURPOSES)}"})
    if legal_basis not in LEGAL_BASES:
        problems.append({"field": "legal_basis",
                         "problem": f"must be one of {', '.join(LEGAL_BASES)}"})
    if not lay_summary.strip():
        problems.append({"field": "lay_summary",
                         "problem": "add a plain-English summary for the public register"})
    if end_date <= date.today():
        problems.append({"field": "end_date", "problem": "must be in the future"})
    if problems:
        raise InvalidInput(f"{problems[0]['field']}: {problems[0]['problem']}", detail=problems)
    owner = session.get(User, who.user_id)
    assert owner is not None
    people = [owner]
    for name in dict.fromkeys(members or []):
        if name == owner.username:
            continue
        user = session.scalar(select(User).where(User.username == name))
        if user is None or "researcher" not in user.role_names:
            raise InvalidInput(f"members: {name!r} is not a registered researcher")
        people.append(user)
    project = Project(
        id="p-" + secrets.token_hex(4), title=title.strip(), purpose=purpose.strip(),
        purpose_category=purpose_category, lay_summary=lay_summary.strip(),
        legal_basis=legal_basis, owner_id=owner.id, end_date=end_date,
        members=[ProjectMember(user_id=u.id, username=u.username, accredited=u.accredited,
                               role="lead" if u is owner else "researcher") for u in people],
    )
    session.add(project)
    session.flush()
    register.append(session, key, kind="project.created", actor=f"project:{project.id}",
                    subject=f"project:{project.id}", payload=public_project(project))
    return project


def get_project(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id!r} does not exist")
    return project


def member_of(project: Project, who: Principal) -> bool:
    return any(m.user_id == who.user_id for m in project.members)


def require_member(project: Project, who: Principal) -> None:
    if not member_of(project, who):
        raise PermissionDenied(f"you are not a member of project {project.id}")


def projects_of(session: Session, who: Principal) -> list[Project]:
    return list(session.scalars(
        select(Project).join(ProjectMember).where(ProjectMember.user_id == who.user_id)
        .order_by(Project.created_at.desc())))


def public_project(project: Project) -> dict[str, Any]:
    """What the public register shows: no names, only how many and how accredited."""
    return {
        "id": project.id, "title": project.title, "purpose": project.purpose,
        "purpose_category": project.purpose_category, "lay_summary": project.lay_summary,
        "legal_basis": project.legal_basis, "end_date": project.end_date.isoformat(),
        "team_size": len(project.members),
        # Accredited today (evidence lapses), not when they joined.
        "accredited_members": sum(1 for m in project.members if m.user.accredited),
    }


def project_json(project: Project) -> dict[str, Any]:
    """What members see: the public record plus the team."""
    return {**public_project(project),
            "members": [{"username": m.username, "role": m.role,
                         "accredited": m.user.accredited}
                        for m in project.members],
            "created_at": project.created_at.isoformat()}

"""The access capabilities every face calls: organisations and users, projects, requests,
stewards' decisions, grants and the time-to-access measure.

Each function takes the acting principal and what is asked, checks its rule
(:mod:`ndl.access.rules`), does the work with its side effects (register entries, the
datasite's notice of a revocation) and returns a typed result. The JSON API, the web pages,
the CLI and the demo call these; none of them tests a role or reads the database itself.

Read results carry the rows they were built from (frozen dataclasses over ORM rows): a page
arranges them for display inside the same read session, and nothing writes through them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ndl.access import accounts, rules
from ndl.access import projects as proj
from ndl.access import requests as access
from ndl.access.accounts import Principal, official_actor
from ndl.access.models import Org, User
from ndl.access.project_models import AccessRequest, Grant, Project, RequestItem
from ndl.catalogue import service as catalogue
from ndl.catalogue.models import Dataset
from ndl.core.db import utcnow
from ndl.core.errors import AuthenticationRequired, Conflict, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.core.tiers import Operation, require_operation, tiers_serving
from ndl.hub.state import HubState
from ndl.ledger import register, security_log

MAX_REQUESTABLE = 300  # a form of checkboxes; a bigger catalogue is searched first


def _can(check: Callable[[], object]) -> bool:
    try:
        check()
    except (PermissionDenied, AuthenticationRequired):
        return False
    return True


# --- what a face may offer ------------------------------------------------------------------
# Faces decide which forms and links to show from these; every action checks again itself.

def can_create_projects(who: Principal | None) -> bool:
    return _can(lambda: rules.require_role(who, "researcher", doing="create projects"))


def can_ask_private_questions(who: Principal | None) -> bool:
    return _can(lambda: rules.require_role(who, "researcher", doing="ask private questions"))


def can_decide_requests(who: Principal | None) -> bool:
    return _can(lambda: rules.require_role(who, "steward", doing="decide requests"))


# --- organisations and users ----------------------------------------------------------------

@dataclass(frozen=True)
class Operator:
    """Someone acting with the hub's own database and key (the admin CLI on the hub's
    machine, the demo's bootstrap): holding those is the authority. ``name`` is how the
    register names them."""

    name: str


Actor = Principal | Operator


def _official(who: Actor, doing: str) -> str:
    if isinstance(who, Operator):
        return who.name
    return official_actor(rules.require_admin(who, doing=doing))


def _log_actor(who: Actor) -> str:
    """How the security log (not the public register) names who acted: by name."""
    return f"operator:{who.name}" if isinstance(who, Operator) else f"user:{who.username}"


class NewOrg(BaseModel):
    id: str
    name: str
    kind: str = "other"


class OrgView(BaseModel):
    id: str
    name: str
    kind: str


class NewUser(BaseModel):
    username: str
    roles: list[str]
    display_name: str | None = None
    org: str | None = None
    password: str | None = Field(default=None, repr=False)


class UserView(BaseModel):
    user_id: int = Field(exclude=True)
    username: str
    roles: list[str]
    org: str | None


def create_org(session: Session, key: SigningKey, who: Actor, body: NewOrg) -> OrgView:
    """An organisation, and its register entry ``org.created``."""
    actor = _official(who, f"create the organisation {body.id!r}")
    org = accounts.create_org(session, body.id, body.name, body.kind)
    register.append(session, key, kind="org.created", actor=actor, subject=org.id,
                    payload={"name": org.name, "kind": org.kind})
    security_log.record(session, "admin.org_created", actor=_log_actor(who),
                        subject=f"org:{org.id}", org=org.id, details={"kind": org.kind})
    return OrgView(id=org.id, name=org.name, kind=org.kind)


def create_user(session: Session, key: SigningKey, who: Actor, body: NewUser) -> UserView:
    """A user, and its register entry ``user.created`` (roles and organisation, no name)."""
    actor = _official(who, f"create the user {body.username!r}")
    user = accounts.create_user(session, body.username, roles=body.roles,
                                display_name=body.display_name, org_id=body.org,
                                password=body.password)
    roles = sorted(set(body.roles))
    register.append(session, key, kind="user.created", actor=actor, subject=f"user#{user.id}",
                    payload={"roles": roles, "org": body.org})
    security_log.record(session, "admin.user_created", actor=_log_actor(who),
                        subject=f"user:{user.username}", org=body.org,
                        details={"roles": roles})
    return UserView(user_id=user.id, username=user.username, roles=roles, org=body.org)


def operator_token(session: Session, who: Operator, user_id: int) -> str:
    """A full API token for a user, minted by an operator holding the hub's database (the
    admin CLI's ``create-user --token``); never reachable from the API."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user #{user_id} does not exist")
    return accounts.issue_token(session, user, name=who.name)


def list_orgs(session: Session) -> list[OrgView]:
    return [OrgView(id=o.id, name=o.name, kind=o.kind)
            for o in session.scalars(select(Org).order_by(Org.id))]


def org_names(session: Session) -> dict[str, str]:
    """Organisation id to name, by name."""
    return {o.id: o.name for o in session.scalars(select(Org).order_by(Org.name))}


class Accreditation(BaseModel):
    username: str
    accredited: bool


def set_accreditation(session: Session, key: SigningKey, who: Principal,
                      body: Accreditation) -> Accreditation:
    """An admin records whether a user is an accredited researcher."""
    rules.require_admin(who, doing=f"change the accreditation of {body.username!r}")
    user = session.scalar(select(User).where(User.username == body.username))
    if user is None:
        raise NotFound(f"user {body.username!r} does not exist")
    user.accredited = body.accredited
    register.append(session, key, kind="user.accreditation", actor=official_actor(who),
                    subject=f"user#{user.id}", payload={"accredited": body.accredited})
    return body


# --- projects -------------------------------------------------------------------------------

class NewProject(BaseModel):
    title: str = Field(max_length=300)
    purpose: str = Field(max_length=5000)
    purpose_category: str
    lay_summary: str = Field(max_length=5000)
    legal_basis: str
    end_date: date
    members: list[str] = Field(default_factory=list, max_length=50)


def create_project(session: Session, key: SigningKey, who: Principal,
                   body: NewProject) -> Project:
    rules.require_role(who, "researcher", doing="create projects")
    return proj.create_project(session, key, who, **body.model_dump())


@dataclass(frozen=True)
class MyProject:
    project: Project
    role: str  # the caller's role on it: lead or researcher


def my_projects(session: Session, who: Principal | None) -> list[MyProject]:
    who = rules.require_signed_in(who, doing="see your projects")
    return [MyProject(p, next((m.role for m in p.members if m.user_id == who.user_id), ""))
            for p in proj.projects_of(session, who)]


@dataclass(frozen=True)
class ProjectRecord:
    """A project's register record; members also get its grants and what it may ask for."""

    project: Project
    member: bool
    live: bool                         # not yet ended: may ask for more
    requests: list[AccessRequest]      # newest first
    grants: list[Grant]                # members only, oldest first
    datasets: dict[str, Dataset]       # the datasets the requests and grants name
    org_names: dict[str, str]
    requestable: list[Dataset]         # members of a live project: non-open, not yet asked

    def grant_active(self, g: Grant) -> bool:
        return g.revoked_at is None and g.expires_at > utcnow()


def project_record(session: Session, who: Principal | None, project_id: str) -> ProjectRecord:
    """Anyone may read the public record; :attr:`ProjectRecord.member` says who sees more."""
    p = proj.get_project(session, project_id)
    member = who is not None and proj.member_of(p, who)
    reqs = list(session.scalars(select(AccessRequest).where(AccessRequest.project_id == p.id)
                                .order_by(AccessRequest.id.desc())))
    grants = list(session.scalars(select(Grant).where(Grant.project_id == p.id)
                                  .order_by(Grant.granted_at))) if member else []
    ids = {i.dataset_id for r in reqs for i in r.items} | {g.dataset_id for g in grants}
    datasets = {d.id: d for d in session.scalars(select(Dataset).where(Dataset.id.in_(ids)))} \
        if ids else {}
    now = utcnow()
    live = p.end_date >= now.date()
    requestable: list[Dataset] = []
    if member and live:
        busy = {i.dataset_id for r in reqs for i in r.items if i.state == "pending"} | {
            g.dataset_id for g in grants if g.revoked_at is None and g.expires_at > now}
        requestable = [d for d in session.scalars(
            select(Dataset).where(Dataset.tier.in_(tiers_serving(Operation.REQUEST_ACCESS)))
            .order_by(Dataset.org_id, Dataset.title).limit(MAX_REQUESTABLE))
            if d.id not in busy]
    return ProjectRecord(p, member, live, reqs, grants, datasets, org_names(session),
                         requestable)


def require_member(session: Session, who: Principal, project_id: str) -> Project:
    """The project, if ``who`` is on its team (checked before a form is even read)."""
    p = proj.get_project(session, project_id)
    proj.require_member(p, who)
    return p


def request_access(session: Session, key: SigningKey, who: Principal, project_id: str,
                   datasets: list[str]) -> AccessRequest:
    """Ask for several datasets, at several organisations, in one request."""
    require_member(session, who, project_id)
    rules.require_role(who, "researcher", doing="ask for access")
    return access.submit_request(session, key, who, project_id, datasets)


def get_request(session: Session, who: Principal, request_id: int) -> AccessRequest:
    """A request, for its project's members and the officials of the organisations asked."""
    req = session.get(AccessRequest, request_id)
    if req is None:
        raise NotFound(f"request {request_id} does not exist")
    project = proj.get_project(session, req.project_id)
    if not (proj.member_of(project, who)
            or any(rules.is_org_official(who, i.org_id) for i in req.items)):
        raise PermissionDenied("only the project's members and the stewards involved "
                               "can see this request")
    return req


# --- stewards -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PendingItem:
    item: RequestItem
    project: Project
    dataset: Dataset | None
    own: bool                  # the steward is on the project: another steward must decide


@dataclass(frozen=True)
class LiveGrant:
    grant: Grant
    dataset: Dataset
    project_title: str


@dataclass(frozen=True)
class StewardQueue:
    org: Org | None
    pending: list[PendingItem]
    grants: list[LiveGrant]    # active grants on the organisation's datasets, newest first


def steward_queue(session: Session, who: Principal | None) -> StewardQueue:
    """Requests waiting for the caller's organisation, then its active grants."""
    who = rules.require_role(who, "steward", doing="see the stewards' queue")
    org = session.get(Org, who.org_id) if who.org_id else None
    org_id = org.id if org else ""
    pending = []
    for item in access.pending_for_org(session, org_id):
        req = session.get(AccessRequest, item.request_id)
        assert req is not None
        project = proj.get_project(session, req.project_id)
        pending.append(PendingItem(item, project, session.get(Dataset, item.dataset_id),
                                   proj.member_of(project, who)))
    now = utcnow()
    rows = session.execute(
        select(Grant, Dataset).join(Dataset, Dataset.id == Grant.dataset_id)
        .where(Dataset.org_id == org_id, Grant.revoked_at.is_(None), Grant.expires_at > now)
        .order_by(Grant.granted_at.desc())).all() if org_id else []
    titles = {p.id: p.title for p in session.scalars(select(Project).where(
        Project.id.in_({g.project_id for g, _ in rows})))} if rows else {}
    return StewardQueue(org, pending, [LiveGrant(g, ds, titles.get(g.project_id, g.project_id))
                                       for g, ds in rows])


class Decision(BaseModel):
    item_id: int
    approve: bool
    reason: str = Field(default="", max_length=5000)


def decide(state: HubState, who: Principal, body: Decision) -> dict[str, Any]:
    """A steward of the dataset's organisation approves or rejects one item of a request."""
    rules.require_role(who, "steward", doing="decide requests")
    try:
        with state.db.write() as s:
            item = access.decide_item(s, state.key, who, body.item_id, approve=body.approve,
                                      reason=body.reason)
            return access.item_json(item)
    except StaleDataError as exc:  # a concurrent decision changed the row under us
        raise Conflict("someone else decided this request at the same moment; reload and "
                       "check its state") from exc


class Revocation(BaseModel):
    grant_id: str
    reason: str = Field(max_length=5000)


def revoke_grant(state: HubState, who: Principal, body: Revocation) -> dict[str, Any]:
    """An official of the dataset's organisation revokes a grant; its datasite hears at once
    (a mailbox message, and a wake-up of its open long-poll), so it refuses new work."""
    rules.require_role(who, "steward", "admin", doing="revoke grants")
    with state.db.write() as s:
        g = access.revoke_grant(s, state.key, who, body.grant_id, body.reason)
        out, site = access.grant_json(g), g.dataset_id.split("/", 1)[0]
    state.notifier.notify(f"site:{site}")
    return out


# --- the headline measure -------------------------------------------------------------------

@dataclass(frozen=True)
class AccessTimes:
    measure: dict[str, Any]    # ndl.access.requests.time_to_access, as the JSON API gives it
    org_names: dict[str, str]


def access_times(session: Session) -> AccessTimes:
    """Hours from request to access, by tier and organisation: public."""
    return AccessTimes(access.time_to_access(session), org_names(session))


# --- private questions ------------------------------------------------------------------------

@dataclass(frozen=True)
class ProjectRef:
    id: str
    title: str


def granted_projects(session: Session, who: Principal, dataset_id: str) -> list[ProjectRef]:
    """``who``'s projects holding an active grant for ``dataset_id``, newest first."""
    mine = proj.projects_of(session, who)
    if not mine:
        return []
    live = set(session.scalars(select(Grant.project_id).where(
        Grant.dataset_id == dataset_id, Grant.revoked_at.is_(None),
        Grant.expires_at > utcnow(), Grant.project_id.in_([p.id for p in mine]))))
    return [ProjectRef(p.id, p.title) for p in mine if p.id in live]


@dataclass(frozen=True)
class PrivateQuestionSetup:
    dataset: Dataset
    per_query: float               # the most rho one question may spend
    projects: list[ProjectRef]     # the caller's projects granted this dataset


def private_question_setup(session: Session, who: Principal | None,
                           dataset_id: str) -> PrivateQuestionSetup:
    """What the form for a private question needs: the dataset (its tier must serve private
    questions), the per-question limit and the caller's granted projects."""
    who = rules.require_role(who, "researcher", doing="ask private questions")
    ds = catalogue.get_dataset(session, dataset_id)
    require_operation(ds.tier, Operation.PRIVATE_QUERY, dataset=ds.title)
    return PrivateQuestionSetup(ds, access.policy_of(ds).budget.per_query,
                                granted_projects(session, who, ds.id))

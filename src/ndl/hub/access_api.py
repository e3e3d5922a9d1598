"""Projects, access requests, steward decisions, grants and the time-to-access measure."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from ndl.access import projects as proj
from ndl.access import requests as access
from ndl.access.accounts import Principal, official_actor
from ndl.access.models import User
from ndl.access.project_models import AccessRequest, Grant
from ndl.core.errors import Conflict, NotFound, PermissionDenied
from ndl.hub.deps import authenticated, hub, public, requires
from ndl.hub.state import HubState
from ndl.ledger import register

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]


class ProjectBody(BaseModel):
    title: str = Field(max_length=300)
    purpose: str = Field(max_length=5000)
    purpose_category: str
    lay_summary: str = Field(max_length=5000)
    legal_basis: str
    end_date: date
    members: list[str] = Field(default_factory=list, max_length=50)


@router.post("/projects", status_code=201)
def create_project(body: ProjectBody, state: HubDep,
                   who: Annotated[Principal, Depends(requires("researcher"))]) -> dict[str, Any]:
    with state.db.write() as s:
        p = proj.create_project(s, state.key, who, **body.model_dump())
        return proj.project_json(p)


@router.get("/projects")
def my_projects(state: HubDep,
                who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.read() as s:
        return {"projects": [proj.project_json(p) for p in proj.projects_of(s, who)]}


@router.get("/projects/{project_id}")
def get_project(project_id: str, state: HubDep,
                who: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """The public register page of a project; members also see the team and grants."""
    with state.db.read() as s:
        p = proj.get_project(s, project_id)
        reqs = list(s.scalars(select(AccessRequest).where(AccessRequest.project_id == p.id)
                              .order_by(AccessRequest.id)))
        out = proj.public_project(p)
        out["requests"] = [access.request_json(r, names=False) for r in reqs]
        if who is not None and proj.member_of(p, who):
            out = {**proj.project_json(p),
                   "requests": [access.request_json(r) for r in reqs], "grants": [
                access.grant_json(g) for g in s.scalars(
                    select(Grant).where(Grant.project_id == p.id))]}
        return out


class RequestBody(BaseModel):
    datasets: list[str] = Field(min_length=1, max_length=50)


@router.post("/projects/{project_id}/requests", status_code=201)
def request_access(project_id: str, body: RequestBody, state: HubDep,
                   who: Annotated[Principal, Depends(requires("researcher"))]) -> dict[str, Any]:
    """Ask for several datasets, at several organisations, in one request."""
    with state.db.write() as s:
        req = access.submit_request(s, state.key, who, project_id, body.datasets)
        return access.request_json(req)


@router.get("/requests/{request_id}")
def get_request(request_id: int, state: HubDep,
                who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.read() as s:
        req = s.get(AccessRequest, request_id)
        if req is None:
            raise NotFound(f"request {request_id} does not exist")
        project = proj.get_project(s, req.project_id)
        orgs = {i.org_id for i in req.items}
        if not (proj.member_of(project, who) or who.has("admin")
                or (who.has("steward") and who.org_id in orgs)):
            raise PermissionDenied("only the project's members and the stewards involved "
                                   "can see this request")
        return access.request_json(req)


@router.get("/stewards/queue")
def steward_queue(state: HubDep,
                  who: Annotated[Principal, Depends(requires("steward"))]) -> dict[str, Any]:
    """Requests waiting for a decision by the caller's organisation."""
    with state.db.read() as s:
        items = access.pending_for_org(s, who.org_id or "")
        out = []
        for i in items:
            req = s.get(AccessRequest, i.request_id)
            assert req is not None
            p = proj.get_project(s, req.project_id)
            out.append({**access.item_json(i), "project": proj.project_json(p)})
        return {"org": who.org_id, "pending": out}


class DecisionBody(BaseModel):
    decision: str = Field(pattern="^(approve|reject)$")
    reason: str = Field(default="", max_length=5000)


@router.post("/requests/items/{item_id}/decision")
def decide(item_id: int, body: DecisionBody, state: HubDep,
           who: Annotated[Principal, Depends(requires("steward"))]) -> dict[str, Any]:
    try:
        with state.db.write() as s:
            item = access.decide_item(s, state.key, who, item_id,
                                      approve=body.decision == "approve", reason=body.reason)
            return access.item_json(item)
    except Exception as exc:  # a concurrent decision changed the row under us
        if type(exc).__name__ == "StaleDataError":
            raise Conflict("someone else decided this request at the same moment; reload "
                           "and check its state") from exc
        raise


class RevokeBody(BaseModel):
    reason: str = Field(max_length=5000)


@router.post("/grants/{grant_id}/revoke")
async def revoke(grant_id: str, body: RevokeBody, state: HubDep,
                 who: Annotated[Principal, Depends(requires("steward", "admin"))]
                 ) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    def do() -> tuple[dict[str, Any], str]:
        with state.db.write() as s:
            g = access.revoke_grant(s, state.key, who, grant_id, body.reason)
            site = g.dataset_id.split("/", 1)[0]
            return access.grant_json(g), site

    out, site = await run_in_threadpool(do)
    state.notifier.notify(f"site:{site}")  # the datasite hears of it on its open long-poll
    return out


@router.get("/metrics/time-to-access")
def time_to_access(state: HubDep,
                   _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """The library's headline measure: hours from request to access, by tier and organisation."""
    with state.db.read() as s:
        return access.time_to_access(s)


class AccreditationBody(BaseModel):
    accredited: bool


@router.post("/users/{username}/accreditation")
def set_accreditation(username: str, body: AccreditationBody, state: HubDep,
                      who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    with state.db.write() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"user {username!r} does not exist")
        user.accredited = body.accredited
        register.append(s, state.key, kind="user.accreditation", actor=official_actor(who),
                        subject=f"user#{user.id}", payload={"accredited": body.accredited})
        return {"username": username, "accredited": body.accredited}

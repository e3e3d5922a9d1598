"""Projects, access requests, steward decisions, grants and the time-to-access measure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ndl.access import projects as proj
from ndl.access import requests as access
from ndl.access import service
from ndl.access.accounts import Principal
from ndl.access.service import NewProject
from ndl.core.db import RowId
from ndl.hub.deps import authenticated, hub, public, requires
from ndl.hub.state import HubState

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]


@router.post("/projects", status_code=201)
def create_project(body: NewProject, state: HubDep,
                   who: Annotated[Principal, Depends(requires("researcher"))]) -> dict[str, Any]:
    with state.db.write() as s:
        return proj.project_json(service.create_project(s, state.key, who, body))


@router.get("/projects")
def my_projects(state: HubDep,
                who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.read() as s:
        return {"projects": [proj.project_json(m.project) for m in service.my_projects(s, who)]}


@router.get("/projects/{project_id}")
def get_project(project_id: str, state: HubDep,
                who: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """The public register page of a project; members also see the team and grants."""
    with state.db.read() as s:
        record = service.project_record(s, who, project_id)
        reqs = sorted(record.requests, key=lambda r: r.id)
        if record.member:
            return {**proj.project_json(record.project),
                    "requests": [access.request_json(r) for r in reqs],
                    "grants": [access.grant_json(g) for g in record.grants]}
        return {**proj.public_project(record.project),
                "requests": [access.request_json(r, names=False) for r in reqs]}


class RequestBody(BaseModel):
    datasets: list[str] = Field(min_length=1, max_length=50)


@router.post("/projects/{project_id}/requests", status_code=201)
def request_access(project_id: str, body: RequestBody, state: HubDep,
                   who: Annotated[Principal, Depends(requires("researcher"))]) -> dict[str, Any]:
    """Ask for several datasets, at several organisations, in one request."""
    with state.db.write() as s:
        return access.request_json(
            service.request_access(s, state.key, who, project_id, body.datasets))


@router.get("/requests/{request_id}")
def get_request(request_id: RowId, state: HubDep,
                who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.read() as s:
        return access.request_json(service.get_request(s, who, request_id))


@router.get("/stewards/queue")
def steward_queue(state: HubDep,
                  who: Annotated[Principal, Depends(requires("steward"))]) -> dict[str, Any]:
    """Requests waiting for a decision by the caller's organisation."""
    with state.db.read() as s:
        queue = service.steward_queue(s, who)
        return {"org": who.org_id, "pending": [
            {**access.item_json(p.item), "project": proj.project_json(p.project)}
            for p in queue.pending]}


class DecisionBody(BaseModel):
    decision: str = Field(pattern="^(approve|reject)$")
    reason: str = Field(default="", max_length=5000)


@router.post("/requests/items/{item_id}/decision")
async def decide(item_id: RowId, body: DecisionBody, state: HubDep,
                 who: Annotated[Principal, Depends(requires("steward"))]) -> dict[str, Any]:
    return await run_in_threadpool(service.decide, state, who, service.Decision(
        item_id=item_id, approve=body.decision == "approve", reason=body.reason))


class RevokeBody(BaseModel):
    reason: str = Field(max_length=5000)


@router.post("/grants/{grant_id}/revoke")
async def revoke(grant_id: str, body: RevokeBody, state: HubDep,
                 who: Annotated[Principal, Depends(requires("steward", "admin"))]
                 ) -> dict[str, Any]:
    return await run_in_threadpool(service.revoke_grant, state, who,
                                   service.Revocation(grant_id=grant_id, reason=body.reason))


@router.get("/metrics/time-to-access")
def time_to_access(state: HubDep,
                   _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """The library's headline measure: hours from request to access, by tier and organisation."""
    with state.db.read() as s:
        return service.access_times(s).measure


class AccreditationBody(BaseModel):
    accredited: bool


@router.post("/users/{username}/accreditation")
def set_accreditation(username: str, body: AccreditationBody, state: HubDep,
                      who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    with state.db.write() as s:
        return service.set_accreditation(s, state.key, who, service.Accreditation(
            username=username, accredited=body.accredited)).model_dump()

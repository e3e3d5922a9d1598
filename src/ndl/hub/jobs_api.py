"""Controlled-tier jobs over HTTP: submit, review code, follow, cancel, check and fetch outputs.

Thin: every decision is :mod:`ndl.jobs.service`'s or :mod:`ndl.jobs.checking`'s.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.hub.deps import authenticated, hub, public
from ndl.hub.state import HubState
from ndl.jobs import checking, environments, service

router = APIRouter(prefix="/api/jobs")
# Routes about one job take any caller: someone who may not see it is told it does not exist,
# signed in or not (a job's existence is private).
HubDep = Annotated[HubState, Depends(hub)]
Public = Annotated[Principal | None, Depends(public)]
SignedIn = Annotated[Principal, Depends(authenticated)]


class JobSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str = Field(max_length=64, description="the project whose grant covers the data")
    files: dict[str, str] = Field(description="the bundle: path → text, with ndl-job.toml")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject", "return"]
    reasons: str = Field(default="", max_length=4000)


@router.get("/environments")
def list_environments(_: Public) -> dict[str, Any]:
    """The environments this library's datasites offer jobs (fixed package versions)."""
    return {"environments": [{"name": e.name, "description": e.description,
                              "languages": list(e.languages), "packages": e.packages}
                             for e in environments.offered().values()]}


@router.post("", status_code=202, responses={202: {"description": "submitted; follow Location"}})
def submit(body: JobSubmission, state: HubDep, who: SignedIn) -> JSONResponse:
    """Submit a job bundle for review (or to run at once, for code already approved)."""
    view = service.submit(state, who, project=body.project, files=body.files)
    return JSONResponse(view.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/api/jobs/{view.id}"})


@router.get("")
def list_mine(state: HubDep, who: SignedIn,
              limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
    return {"jobs": [v.model_dump(mode="json") for v in service.mine(state, who, limit=limit)]}


@router.get("/review-queue")
def review_queue(state: HubDep, who: SignedIn) -> dict[str, Any]:
    """Jobs whose code waits for a steward of your organisation."""
    return {"jobs": [v.model_dump(mode="json") for v in service.review_queue(state, who)]}


@router.get("/output-queue")
def output_queue(state: HubDep, who: SignedIn) -> dict[str, Any]:
    """Jobs whose outputs wait for you, an output checker."""
    return {"jobs": [v.model_dump(mode="json") for v in checking.queue(state, who)]}


@router.get("/code/{sha256}")
def code(sha256: str, state: HubDep, who: Public) -> dict[str, Any]:
    """A bundle's files by hash: public once a job running it was approved."""
    return service.code(state, who, sha256).model_dump(mode="json")


@router.get("/{job_id}")
def show(job_id: str, state: HubDep, who: Public) -> dict[str, Any]:
    return service.get(state, who, job_id).model_dump(mode="json")


@router.get("/{job_id}/diff")
def diff(job_id: str, state: HubDep, who: Public) -> dict[str, Any]:
    """The code against the last code approved for the same project (unified diff)."""
    before, text = service.diff(state, who, job_id)
    return {"against": before, "diff": text}


@router.get("/{job_id}/logs")
def logs(job_id: str, state: HubDep, who: Public) -> dict[str, Any]:
    """The researcher-safe log (ndl's own lines; never the job's printed output)."""
    return {"lines": service.logs(state, who, job_id)}


@router.post("/{job_id}/review")
def review(job_id: str, body: Decision, state: HubDep, who: SignedIn) -> dict[str, Any]:
    """A data steward approves or rejects the job's code."""
    return service.review(state, who, job_id, decision=body.decision,
                          reasons=body.reasons).model_dump(mode="json")


@router.post("/{job_id}/cancel")
def cancel(job_id: str, state: HubDep, who: SignedIn) -> dict[str, Any]:
    return service.cancel(state, who, job_id).model_dump(mode="json")


@router.post("/{job_id}/output-check")
def output_check(job_id: str, body: Decision, state: HubDep, who: SignedIn) -> dict[str, Any]:
    """An output checker approves, returns (with comments) or rejects the outputs."""
    return checking.decide(state, who, job_id, decision=body.decision,
                           comments=body.reasons).model_dump(mode="json")


@router.get("/{job_id}/outputs/files")
def output_files(job_id: str, state: HubDep, who: Public) -> dict[str, Any]:
    return {"files": [f.model_dump(mode="json")
                      for f in checking.files(state, who, job_id)]}


@router.get("/{job_id}/outputs", responses={
    200: {"content": {"application/zip": {}}}, 206: {"description": "a byte range"}})
async def outputs(job_id: str, request: Request, state: HubDep, who: Public) -> Response:
    """The outputs' ZIP (released to the project; output checkers may read it to judge)."""
    return await run_in_threadpool(checking.outputs_response, state, who, job_id,
                                   request.headers.get("range"))

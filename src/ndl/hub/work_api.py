"""Long work over HTTP: submit (202 + Location), follow (poll or server-sent events), cancel,
fetch the result. Thin: every decision is :mod:`ndl.work.service`'s."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.hub.deps import authenticated, hub, public
from ndl.hub.login_limits import request_source
from ndl.hub.state import HubState
from ndl.work import service

router = APIRouter(prefix="/api/work")
HubDep = Annotated[HubState, Depends(hub)]
Public = Annotated[Principal | None, Depends(public)]
SignedIn = Annotated[Principal, Depends(authenticated)]


class WorkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(max_length=40, description="the kind of work, e.g. 'export'")
    dataset: str = Field(max_length=200, description="the dataset id, 'site/name'")
    params: dict[str, Any] = Field(default_factory=dict)


@router.post("", status_code=202, responses={202: {"description": "queued; follow Location"}})
async def submit(body: WorkRequest, request: Request, state: HubDep, who: Public
                 ) -> JSONResponse:
    """Queue long work and answer at once with its id; follow it at ``Location``."""
    view = await service.submit(state, who, kind=body.kind, dataset_id=body.dataset,
                                params=body.params,
                                source=request_source(request, state.settings.trusted_proxies))
    return JSONResponse(view.to_json(), status_code=202,
                        headers={"Location": f"/api/work/{view.id}"})


@router.get("")
def list_mine(state: HubDep, who: SignedIn,
              limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
    return {"work": [v.to_json() for v in service.mine(state, who, limit=limit)]}


@router.get("/{work_id}")
def show(work_id: str, state: HubDep, who: Public) -> dict[str, Any]:
    return service.get(state, who, work_id).to_json()


@router.get("/{work_id}/events", responses={200: {"content": {"text/event-stream": {}}}})
async def events(work_id: str, state: HubDep, who: Public) -> StreamingResponse:
    """Server-sent events: one ``state`` event per change, the last when the item is final."""
    # Look it up before streaming, so a bad id is a plain 404 rather than a broken stream.
    await run_in_threadpool(service.get, state, who, work_id)

    async def stream() -> AsyncIterator[bytes]:
        async for view in service.follow(state, who, work_id):
            data = json.dumps(view.to_json(), separators=(",", ":"))
            yield f"event: state\nid: {view.progress:.4f}-{view.state}\ndata: {data}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/{work_id}/cancel")
def cancel(work_id: str, state: HubDep, who: Public) -> dict[str, Any]:
    return service.cancel(state, who, work_id).to_json()


@router.get("/{work_id}/result", responses={
    200: {"content": {"application/octet-stream": {}}}, 206: {"description": "a byte range"}})
def result(work_id: str, request: Request, state: HubDep, who: Public) -> Response:
    """The result file, streamed (``Range`` resumes); its SHA-256 is the ETag."""
    return service.result_response(state, who, work_id, request.headers.get("range"))

"""Incidents, notices and the security log over HTTP: requests in, service calls, answers out.

Who may do what is decided in :mod:`ndl.federation.incidents`, :mod:`ndl.ledger.security_export`
and :mod:`ndl.access.rules`; these routes only translate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.core.db import RowId
from ndl.federation import incidents
from ndl.hub.deps import authenticated, hub
from ndl.hub.login_limits import request_source
from ndl.hub.state import HubState
from ndl.ledger import security_export, security_log

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]
Me = Annotated[Principal, Depends(authenticated)]


def _wake(state: HubState, sites: list[str]) -> None:
    """Each datasite with a new notice hears at once (its open long-poll wakes)."""
    for site in sites:
        state.notifier.notify(f"site:{site}")


@router.post("/incidents", status_code=201)
def raise_incident(body: incidents.NewIncident, request: Request, state: HubDep, who: Me
                   ) -> dict[str, Any]:
    """Raise an incident: what happened (confidential), what it touches, how severe."""
    source = request_source(request, state.settings.trusted_proxies)
    with state.db.write() as s:
        raised = incidents.raise_incident(s, state.key, who, body, source=source)
    _wake(state, raised.datasites)
    return {**raised.incident.to_json(), "datasites_told": raised.datasites}


@router.get("/incidents")
def list_incidents(state: HubDep, who: Me,
                   incident_state: Annotated[str | None, Query(alias="state", max_length=20)
                                             ] = None) -> dict[str, Any]:
    """Admins see every incident; others those they raised or were told about."""
    with state.db.read() as s:
        return {"incidents": [i.to_json() for i in
                              incidents.list_incidents(s, who, state=incident_state)]}


@router.get("/incidents/{incident_id}")
def get_incident(incident_id: RowId, state: HubDep, who: Me) -> dict[str, Any]:
    with state.db.read() as s:
        return incidents.get_incident(s, who, incident_id).to_json()


class ActionBody(BaseModel):
    action: str = Field(max_length=40, description=", ".join(incidents.ACTIONS))
    subject: str = Field(max_length=300, description="e.g. user:alice, datasite:nhs-trust")
    note: str = Field(default="", max_length=2000)
    register_seq: int | None = Field(default=None, ge=1, le=2**53)


@router.post("/incidents/{incident_id}/actions", status_code=201)
def record_action(incident_id: RowId, body: ActionBody, state: HubDep, who: Me
                  ) -> dict[str, Any]:
    """An admin records a response taken (suspension, revocation ...) against the incident."""
    with state.db.write() as s:
        return incidents.record_action(
            s, state.key, who, incident_id, action=body.action, subject=body.subject,
            note=body.note, register_seq=body.register_seq).to_json()


class StateBody(BaseModel):
    state: str = Field(pattern="^(contained|closed)$")


@router.post("/incidents/{incident_id}/state")
def set_state(incident_id: RowId, body: StateBody, state: HubDep, who: Me) -> dict[str, Any]:
    """An admin marks the incident contained or closed; everyone told hears of it."""
    with state.db.write() as s:
        moved = incidents.set_state(s, state.key, who, incident_id, body.state)
    _wake(state, moved.datasites)
    return moved.incident.to_json()


@router.get("/notices")
def notices(state: HubDep, who: Me) -> dict[str, Any]:
    """Incident notices addressed to you (as a project member, data steward, or by name)."""
    with state.db.read() as s:
        return {"notices": [n.to_json() for n in incidents.my_notices(s, who)]}


# -- the security log -------------------------------------------------------------------------

def _stream(state: HubState, flt: security_export.EventFilter) -> StreamingResponse:
    def lines() -> Iterator[str]:
        with state.db.read() as s:
            yield from security_export.jsonl(s, flt)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/admin/security-log", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
async def export_security_log(
        request: Request, state: HubDep, who: Me,
        since: Annotated[str | None, Query(max_length=40)] = None,
        until: Annotated[str | None, Query(max_length=40)] = None,
        kind: Annotated[str | None, Query(max_length=60)] = None) -> StreamingResponse:
    """The whole security log as JSON lines, for a SIEM (admins only)."""
    flt = security_export.admin_filter(who, security_export.make_filter(
        since=since, until=until, kind=kind))
    source = request_source(request, state.settings.trusted_proxies)
    await run_in_threadpool(security_log.record_apart, state.db, "admin.security_log_export",
                            actor=f"user:{who.username}", subject="security-log",
                            source=source, details={"since": since, "until": until,
                                                    "kind": kind})
    return _stream(state, flt)


@router.get("/security-log", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def shared_security_log(
        state: HubDep, who: Me,
        since: Annotated[str | None, Query(max_length=40)] = None,
        until: Annotated[str | None, Query(max_length=40)] = None,
        kind: Annotated[str | None, Query(max_length=60)] = None) -> StreamingResponse:
    """A data steward's own organisation's security events, if the hub shares them."""
    flt = security_export.shared_filter(who, security_export.make_filter(
        since=since, until=until, kind=kind), state.settings.share_security_log)
    return _stream(state, flt)

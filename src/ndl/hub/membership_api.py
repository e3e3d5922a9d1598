"""Joining and leaving, datasite status, dataset withdrawal and deletion, project closure.

Thin: each route reads its input and calls ndl.federation.membership, ndl.catalogue.lifecycle
or ndl.access.closure, which check the rules (ndl.access.rules) and write the register.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ndl.access import closure
from ndl.access.accounts import Principal
from ndl.catalogue import lifecycle
from ndl.core.errors import InvalidInput
from ndl.federation import membership
from ndl.federation.models import Datasite
from ndl.hub import federation_api
from ndl.hub.deps import authenticated, hub, public, signed_by_datasite
from ndl.hub.openapi import ENVELOPE_BODY
from ndl.hub.state import HubState

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]
Signed = Annotated[tuple[Datasite, dict[str, Any]], Depends(signed_by_datasite)]
User = Annotated[Principal, Depends(authenticated)]
Anyone = Annotated[Principal | None, Depends(public)]


class Reason(BaseModel):
    reason: str = Field(min_length=5, max_length=2000)


# -- joining ------------------------------------------------------------------------------------

@router.post("/federation/join", status_code=201, openapi_extra=ENVELOPE_BODY)
async def join(request: Request, state: HubDep, who: User) -> dict[str, Any]:
    """Register a datasite by its key with any account (its operator's): it waits,
    ``pending``, until a data steward of its organisation or an admin approves it. A
    steward's or admin's own token approves it in the same act."""
    return await federation_api.registration(request, state, who, may_wait=True)


@router.post("/datasites/{datasite_id}/approve")
def approve(datasite_id: str, state: HubDep, who: User) -> dict[str, Any]:
    with state.db.write() as s:
        site = membership.approve(s, state.key, who, datasite_id)
        return membership.site_status(s, site).to_json()


@router.post("/datasites/{datasite_id}/retire")
def retire(datasite_id: str, body: Reason, state: HubDep, who: User) -> dict[str, Any]:
    with state.db.write() as s:
        done = membership.retire(s, state.key, who, datasite_id, reason=body.reason)
    state.notifier.notify(f"site:{datasite_id}")  # a long-poll in progress ends now
    return {"datasite": done.datasite, "withdrawn": done.withdrawn,
            "grants_ended": done.grants_ended, "messages_cancelled": done.messages_cancelled,
            "work_cancelled": done.work_cancelled}


# -- status -------------------------------------------------------------------------------------

@router.post("/federation/status", openapi_extra=ENVELOPE_BODY)
def report_status(signed: Signed, state: HubDep) -> dict[str, Any]:
    """A datasite's signed status (its signature and standing checked by the dependency)."""
    site, env = signed
    with state.db.write() as s:
        membership.report_status(s, state.key, site, env)
    return {"accepted": True}


@router.get("/datasites/{datasite_id}/status")
def datasite_status(datasite_id: str, state: HubDep, _: Anyone) -> dict[str, Any]:
    """The datasite's membership and its latest signed status, with the envelope, so anyone
    can check the signature against its registered key."""
    with state.db.read() as s:
        site = membership.get_site(s, datasite_id)
        return {**membership.site_status(s, site).to_json(envelope=True),
                "public_key": site.public_key}


# -- datasets -----------------------------------------------------------------------------------

@router.post("/datasets/{site}/{name}/withdraw")
def withdraw(site: str, name: str, body: Reason, state: HubDep, who: User) -> dict[str, Any]:
    with state.db.write() as s:
        ds = lifecycle.withdraw(s, state.key, who, f"{site}/{name}", reason=body.reason)
        return {"dataset": ds.id, "withdrawn_at": ds.withdrawn_at.isoformat()
                if ds.withdrawn_at else None, "reason": ds.withdrawn_reason}


@router.post("/datasets/{site}/{name}/delete", status_code=202)
def delete(site: str, name: str, state: HubDep, who: User) -> dict[str, Any]:
    """Ask the datasite to delete a withdrawn dataset; the signed record comes back later
    (GET .../deletions)."""
    with state.db.write() as s:
        rec = lifecycle.request_deletion(s, state.key, who, f"{site}/{name}")
        s.flush()
        out = lifecycle.deletion_view(rec).to_json()
    state.notifier.notify(f"site:{site}")
    return out


@router.get("/datasets/{site}/{name}/deletions")
def deletions(site: str, name: str, state: HubDep, _: Anyone) -> dict[str, Any]:
    with state.db.read() as s:
        return {"deletions": [d.to_json() for d in lifecycle.deletions_of(s, f"{site}/{name}")]}


@router.post("/federation/deletions", openapi_extra=ENVELOPE_BODY)
def deletion_record(signed: Signed, state: HubDep) -> dict[str, Any]:
    """A datasite's signed record that it deleted a dataset the hub asked it to."""
    site, env = signed
    if env["kind"] != lifecycle.DELETED_KIND:
        raise InvalidInput(f"expected a {lifecycle.DELETED_KIND!r} envelope, got "
                           f"{env['kind']!r}")
    with state.db.write() as s:
        rec, fresh = lifecycle.record_deletion(s, state.key, site, env)
        return {"accepted": fresh, "deletion_id": rec.id}


# -- projects -----------------------------------------------------------------------------------

@router.post("/projects/{project_id}/close")
def close_project(project_id: str, body: Reason, state: HubDep, who: User) -> dict[str, Any]:
    with state.db.write() as s:
        done = closure.close_project(s, state.key, who, project_id, reason=body.reason)
    return done.to_json()

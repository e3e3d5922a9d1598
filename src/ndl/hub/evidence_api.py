"""Evidence on people (accreditation, training) and references on projects (ethics
approval, DPIA, data-sharing agreement). Thin: each route calls :mod:`ndl.access.evidence`
or :mod:`ndl.access.references`, which check their own rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from ndl.access import evidence, references
from ndl.access.accounts import Principal
from ndl.core.db import RowId
from ndl.hub.deps import authenticated, hub, public, requires
from ndl.hub.state import HubState

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]


class RevokeBody(BaseModel):
    reason: str = Field(max_length=2000)


@router.get("/evidence")
def list_evidence(state: HubDep, who: Annotated[Principal, Depends(authenticated)],
                  user: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    """Your evidence, or (admins and data stewards) another user's: each record's state, days
    left, and whether it is due for renewal."""
    with state.db.read() as s:
        found = evidence.list_evidence(s, who, user)
    return {"evidence": [e.model_dump(mode="json") for e in found],
            "renew_within_days": evidence.RENEW_WITHIN_DAYS}


@router.get("/evidence/baseline")
def get_baseline(state: HubDep,
                 _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """What the federation agreed every user of each tier's data must hold, beside what each
    dataset's own policy requires (public)."""
    with state.db.read() as s:
        return {"baseline": [b.model_dump() for b in evidence.baselines(s)]}


@router.put("/evidence/baseline")
def set_baseline(body: evidence.NewBaseline, state: HubDep,
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    """An admin records a tier's baseline (it replaces the tier's previous one)."""
    with state.db.write() as s:
        return evidence.set_baseline(s, state.key, who, body).model_dump()


@router.post("/users/{username}/evidence", status_code=201)
def add_evidence(username: str, body: evidence.NewEvidence, state: HubDep,
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    """An admin records evidence about another user (never about themselves)."""
    with state.db.write() as s:
        return evidence.add_evidence(s, state.key, who, username, body).model_dump(mode="json")


@router.post("/evidence/{evidence_id}/revoke")
def revoke_evidence(evidence_id: RowId, body: RevokeBody, state: HubDep,
                    who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    with state.db.write() as s:
        return evidence.revoke_evidence(s, state.key, who, evidence_id,
                                        body.reason).model_dump(mode="json")


@router.get("/projects/{project_id}/references")
def list_references(project_id: str, state: HubDep,
                    who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.read() as s:
        found = references.list_references(s, who, project_id)
    return {"references": [r.model_dump(mode="json") for r in found]}


@router.post("/projects/{project_id}/references", status_code=201)
def add_reference(project_id: str, body: references.NewReference, state: HubDep,
                  who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    """The project's lead (or an admin) records an ethics approval, DPIA or data-sharing
    agreement with the day it lapses."""
    with state.db.write() as s:
        return references.add_reference(s, state.key, who, project_id,
                                        body).model_dump(mode="json")


@router.post("/projects/{project_id}/references/{reference_id}/revoke")
def revoke_reference(project_id: str, reference_id: RowId, state: HubDep,
                     who: Annotated[Principal, Depends(authenticated)]) -> dict[str, Any]:
    with state.db.write() as s:
        return references.revoke_reference(s, state.key, who, project_id,
                                           reference_id).model_dump(mode="json")

"""Suspending and reinstating users and datasites (admins only).

Thin: each route calls :mod:`ndl.access.suspension`, which checks the rule, changes the
standing and writes the register entry. The change holds from the very next request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from ndl.access import suspension
from ndl.access.accounts import Principal
from ndl.hub.deps import hub, requires
from ndl.hub.state import HubState

router = APIRouter(prefix="/api/admin")
HubDep = Annotated[HubState, Depends(hub)]
Admin = Annotated[Principal, Depends(requires("admin"))]
Name = Annotated[str, Path(min_length=1, max_length=64)]


class SuspendBody(BaseModel):
    reason: str = Field(min_length=1, max_length=suspension.MAX_REASON_CHARS,
                        description="Why; kept for admins, never published in the register.")


@router.post("/users/{username}/suspend")
def suspend_user(username: Name, body: SuspendBody, state: HubDep, who: Admin
                 ) -> dict[str, Any]:
    """Suspend a user: their tokens, sessions and grants stop working at once."""
    with state.db.write() as s:
        return suspension.suspend_user(s, state.key, who, username,
                                       reason=body.reason).to_json()


@router.post("/users/{username}/reinstate")
def reinstate_user(username: Name, state: HubDep, who: Admin) -> dict[str, Any]:
    with state.db.write() as s:
        return suspension.reinstate_user(s, state.key, who, username).to_json()


@router.post("/datasites/{datasite_id}/suspend")
def suspend_datasite(datasite_id: Name, body: SuspendBody, state: HubDep, who: Admin
                     ) -> dict[str, Any]:
    """Suspend a datasite: its signed requests are refused, its datasets answer nothing."""
    with state.db.write() as s:
        return suspension.suspend_datasite(s, state.key, who, datasite_id,
                                           reason=body.reason).to_json()


@router.post("/datasites/{datasite_id}/reinstate")
def reinstate_datasite(datasite_id: Name, state: HubDep, who: Admin) -> dict[str, Any]:
    with state.db.write() as s:
        return suspension.reinstate_datasite(s, state.key, who, datasite_id).to_json()

"""JSON routes for safeguarded-tier private queries, over :mod:`ndl.privacy.service`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ndl.access.accounts import Principal
from ndl.hub.deps import hub, requires
from ndl.hub.openapi import ASKS_DATASITE
from ndl.hub.state import HubState
from ndl.privacy import service as privacy
from ndl.privacy.service import PrivateQueryBody

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]
Researcher = Annotated[Principal, Depends(requires("researcher"))]


@router.post("/datasets/{site}/{name}/private-query", responses=ASKS_DATASITE)
async def private_query(site: str, name: str, body: PrivateQueryBody, state: HubDep,
                        who: Researcher) -> dict[str, Any]:
    """``preview: true`` returns the expected error and remaining budget and spends nothing."""
    return await privacy.private_query(state, who, f"{site}/{name}", body)


@router.get("/datasets/{site}/{name}/budget", responses=ASKS_DATASITE)
async def budget(site: str, name: str, state: HubDep, who: Researcher,
                 project: str = Query(max_length=64)) -> dict[str, Any]:
    """What is left of the privacy budget for you and your project on this dataset."""
    return await privacy.budget(state, who, f"{site}/{name}", project)

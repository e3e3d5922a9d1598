"""Safeguarded-tier private queries: preview the error, then spend budget for a DP answer.

The hub only checks and routes: the budget ledger and the computation live at the datasite,
which re-checks the grant and the query itself before anything is spent.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access import requests as access
from ndl.access.accounts import Principal
from ndl.access.requests import policy_of
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.models import Dataset
from ndl.core.errors import InvalidInput, PermissionDenied
from ndl.hub.deps import hub, requires
from ndl.hub.roundtrip import ask_datasite
from ndl.hub.state import HubState

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]
Researcher = Annotated[Principal, Depends(requires("researcher"))]


class PrivateQueryBody(BaseModel):
    project: str = Field(max_length=64)
    sql: str | None = Field(default=None, max_length=10_000)
    query: dict[str, Any] | None = None
    rho: float | None = Field(default=None, gt=0, le=100)
    preview: bool = False
    n_estimate: int | None = Field(default=None, ge=1)


def _granted(who: Principal, project: str) -> Any:
    """A check for ask_datasite: safeguarded data, with the project's active grant attached."""

    def check(s: Session, ds: Dataset) -> dict[str, Any]:
        if ds.tier != "safeguarded":
            raise PermissionDenied(f"{ds.id} is {ds.tier} data: private (DP) queries are for "
                                   "the safeguarded tier")
        return {"grant": access.active_grant(s, who, project, ds.id).document}

    return check


def _parse(body: PrivateQueryBody, meta: DatasetMeta, max_rows: int) -> Any:
    from ndl.privacy import from_sql, parse_query

    if bool(body.sql) == bool(body.query):
        raise InvalidInput("give either 'sql' (with 'rho') or 'query' (a query spec), not both")
    if body.sql:
        if body.rho is None:
            raise InvalidInput("rho: say how much privacy budget to spend, e.g. 0.1")
        return from_sql(body.sql, meta, rho=body.rho, project=body.project,
                        max_rows_per_person=max_rows)
    return parse_query({**(body.query or {}), "dataset": meta.name, "project": body.project,
                        **({"rho": body.rho} if body.rho is not None else {})})


@router.post("/datasets/{site}/{name}/private-query")
async def private_query(site: str, name: str, body: PrivateQueryBody, state: HubDep,
                        who: Researcher) -> dict[str, Any]:
    """``preview: true`` returns the expected error and remaining budget and spends nothing."""
    from ndl.privacy import preview

    dataset_id = f"{site}/{name}"

    def prepare() -> tuple[Any, dict[str, Any] | None]:
        with state.db.read() as s:
            ds = catalogue.get_dataset(s, dataset_id)
            if ds.tier != "safeguarded":
                raise PermissionDenied(f"{ds.id} is {ds.tier} data: private (DP) queries are "
                                       "for the safeguarded tier")
            policy = policy_of(ds)
            meta = DatasetMeta.model_validate(ds.meta)
            q = _parse(body, meta, policy.budget.max_rows_per_person)
            if q.rho > policy.budget.per_query:
                raise InvalidInput(f"rho={q.rho:g} is over this dataset's per-query limit of "
                                   f"{policy.budget.per_query:g}")
            shown = None
            if body.preview:
                shown = preview(q, meta, body.n_estimate or ds.row_count,
                                max_rows_per_person=policy.budget.max_rows_per_person)
            return q, shown

    q, shown = await run_in_threadpool(prepare)
    check = _granted(who, body.project)
    if shown is not None:
        status = await ask_datasite(state, who, dataset_id, kind="budget.status",
                                    body={"project": body.project}, check=check,
                                    record="budget.checked", actor=f"project:{body.project}")
        return {"preview": shown, "budget_remaining": status["budget_remaining"],
                "spent": 0}
    spec = q.model_dump(mode="json")
    return await ask_datasite(
        state, who, dataset_id, kind="private_query",
        body={"project": body.project, "query": spec}, check=check,
        record="private_query.submitted", actor=f"project:{body.project}",
        payload={"query": spec, "rho": q.rho, **({"sql": body.sql} if body.sql else {})},
    )


@router.get("/datasets/{site}/{name}/budget")
async def budget(site: str, name: str, state: HubDep, who: Researcher,
                 project: str = Query(max_length=64)) -> dict[str, Any]:
    """What is left of the privacy budget for you and your project on this dataset."""
    return await ask_datasite(state, who, f"{site}/{name}", kind="budget.status",
                              body={"project": project}, check=_granted(who, project),
                              record="budget.checked", actor=f"project:{project}")

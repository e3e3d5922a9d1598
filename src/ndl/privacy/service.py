"""Private (differentially private) questions on safeguarded data: the front door.

Preview the expected error (spends nothing), or spend budget for an answer. The hub only
checks and routes: the budget ledger and the computation live at the datasite, which checks
the tier, the grant and the query again before anything is spent. Every face — the JSON API,
the dataset page, the MCP tool through the API — calls :func:`private_query` and
:func:`budget`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access import requests as access
from ndl.access import rules
from ndl.access.accounts import Principal
from ndl.access.requests import policy_of
from ndl.catalogue import lifecycle
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.models import Dataset
from ndl.core.errors import InvalidInput
from ndl.core.tiers import Operation
from ndl.hub.roundtrip import ask_datasite
from ndl.hub.state import HubState


class PrivateQueryBody(BaseModel):
    """A private question: restricted SQL with ``rho``, or a query spec."""

    project: str = Field(max_length=64)
    sql: str | None = Field(default=None, max_length=10_000)
    query: dict[str, Any] | None = None
    rho: float | None = Field(default=None, gt=0, le=100)
    preview: bool = False
    n_estimate: int | None = Field(default=None, ge=1)


def _granted(who: Principal, project: str, op: Operation = Operation.PRIVATE_QUERY) -> Any:
    """A check for ask_datasite: the tier serves ``op`` to this researcher, and the project's
    active grant goes with the message for the datasite to verify."""

    def check(s: Session, ds: Dataset) -> dict[str, Any]:
        rules.require_data_operation(who, ds.tier, op, dataset=ds.id, project=project)
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


async def private_query(state: HubState, who: Principal, dataset_id: str,
                        body: PrivateQueryBody) -> dict[str, Any]:
    """``preview: true`` returns the expected error and remaining budget and spends nothing."""
    from ndl.privacy import preview

    rules.require_role(who, "researcher", doing=f"ask private questions of {dataset_id}")

    def prepare() -> tuple[Any, dict[str, Any] | None]:
        with state.db.read() as s:
            ds = catalogue.get_dataset(s, dataset_id)
            lifecycle.require_live(ds)
            rules.require_data_operation(who, ds.tier, Operation.PRIVATE_QUERY, dataset=ds.id,
                                         project=body.project)
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
    if shown is not None:
        status = await budget(state, who, dataset_id, body.project)
        return {"preview": shown, "budget_remaining": status["budget_remaining"],
                "spent": 0}
    spec = q.model_dump(mode="json")
    # The register keeps the checked spec (what was computed), never the caller's SQL text.
    return await ask_datasite(
        state, who, dataset_id, kind="private_query",
        body={"project": body.project, "query": spec},
        check=_granted(who, body.project), record="private_query.submitted",
        actor=f"project:{body.project}", payload={"query": spec, "rho": q.rho},
    )


async def budget(state: HubState, who: Principal, dataset_id: str, project: str
                 ) -> dict[str, Any]:
    """What is left of the privacy budget for ``who`` and ``project`` on this dataset."""
    return await ask_datasite(state, who, dataset_id, kind="budget.status",
                              body={"project": project},
                              check=_granted(who, project, Operation.BUDGET_STATUS),
                              record="budget.checked", actor=f"project:{project}")

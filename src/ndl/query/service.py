"""Asking a dataset's data something: the one front door for every face.

Each function takes the acting principal and a typed request, checks the tier and the rule
(:mod:`ndl.core.tiers`, :mod:`ndl.access.rules`) against the catalogue entry *before*
anything is queued, asks the datasite, and returns a typed answer. The datasite checks the
same tier definition again before it touches the data.

Open data: exact counts, read-only SQL, row downloads. Safeguarded data is answered only by
differentially private queries (:mod:`ndl.hub.privacy_api` for now); controlled data by
nothing here at all.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access import rules
from ndl.access.accounts import Principal
from ndl.catalogue.models import Dataset
from ndl.core import tiers
from ndl.core.tiers import ColumnUse, Operation
from ndl.hub.roundtrip import ask_datasite
from ndl.hub.state import HubState
from ndl.query.spec import CountQuery

ANONYMOUS = Principal(0, "anonymous", frozenset(), None)


class CountAnswer(BaseModel):
    """Exact counts (open data only). ``None`` in the last column marks a withheld count."""

    dataset: str
    message_id: str
    columns: list[str]
    rows: list[list[Any]]
    suppressed: int = 0
    threshold: int | None = None
    tier: str


class RowsAnswer(BaseModel):
    """Rows from open data: a SELECT's result or a download."""

    dataset: str
    message_id: str
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False
    limit: int


def _columns(ds: Dataset) -> list[Any]:
    from ndl.catalogue.metadata import ColumnMeta

    return [ColumnMeta.model_validate(c) for c in ds.columns]


def _operation_check(who: Principal | None, op: Operation, *, project: str | None = None
                     ) -> Any:
    """A check for ask_datasite: the tier serves ``op`` and ``who`` may ask it."""

    def check(_: Session, ds: Dataset) -> None:
        rules.require_data_operation(who, ds.tier, op, dataset=ds.id, project=project)

    return check


async def count(state: HubState, who: Principal | None, dataset_id: str, spec: CountQuery
                ) -> CountAnswer:
    """Exact row counts grouped by up to three columns: open data only, for anyone."""

    def check(_: Session, ds: Dataset) -> None:
        rules.require_data_operation(who, ds.tier, Operation.EXACT_AGGREGATE, dataset=ds.id,
                                     project=spec.project)
        spec.check_against(ds.columns)
        # Unreachable while only open data serves exact counts; kept so that widening the
        # tier table can never release an identifier as a group key.
        tiers.check_column_use(ds.tier, _columns(ds), spec.by, ColumnUse.GROUP_KEY)

    spec_json = spec.model_dump(exclude={"project"})
    result = await ask_datasite(
        state, who or ANONYMOUS, dataset_id, kind="query",
        body={"spec": spec_json, "project": spec.project}, check=check,
        record="query.submitted", payload={"spec": spec_json},
    )
    return CountAnswer.model_validate(result)


def _sql_fingerprint(sql: str) -> dict[str, Any]:
    # The register keeps decisions, not what a caller typed: a hash proves which text was
    # asked (to whoever holds it) without publishing anyone's free text forever.
    return {"sql_sha256": hashlib.sha256(sql.encode("utf-8")).hexdigest(),
            "sql_chars": len(sql)}


async def open_sql(state: HubState, who: Principal | None, dataset_id: str, sql: str, *,
                   limit: int, source: str) -> RowsAnswer:
    """One read-only SELECT over an open dataset's rows (the table is ``data``).

    Anonymous callers are rate-limited per ``source`` address, so one caller cannot keep a
    datasite busy for everyone.
    """
    if who is None:
        # The budget is in the database (shared by hub processes): not on the event loop.
        await run_in_threadpool(state.sql_limiter.take, f"sql:{source}",
                                what="anonymous SQL queries")
    result = await ask_datasite(
        state, who or ANONYMOUS, dataset_id, kind="open_sql",
        body={"sql": sql, "limit": limit}, check=_operation_check(who, Operation.OPEN_SQL),
        record="open.sql", payload=_sql_fingerprint(sql),
    )
    return RowsAnswer.model_validate(result)


async def download(state: HubState, who: Principal | None, dataset_id: str, *, limit: int,
                   source: str) -> RowsAnswer:
    """An open dataset's rows, read at the datasite through the same path as SQL."""
    if who is None:
        await run_in_threadpool(state.sql_limiter.take, f"sql:{source}",
                                what="anonymous downloads and SQL queries")
    result = await ask_datasite(
        state, who or ANONYMOUS, dataset_id, kind="open_sql",
        body={"sql": "SELECT * FROM data", "limit": limit},
        check=_operation_check(who, Operation.DOWNLOAD), record="open.download",
        payload={"limit": limit},
    )
    return RowsAnswer.model_validate(result)

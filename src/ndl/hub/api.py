"""The hub's JSON API for people and their programs (the SDK, the CLI, the web pages' forms)."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access import service as access_service
from ndl.access.accounts import Principal
from ndl.catalogue import mocks
from ndl.catalogue import service as catalogue
from ndl.catalogue.models import Dataset
from ndl.catalogue.search import search
from ndl.core.db import MAX_DB_INT
from ndl.federation import key_service, membership
from ndl.federation import service as federation
from ndl.federation.models import Datasite
from ndl.hub.deps import authenticated, hub, public, requires
from ndl.hub.login_limits import request_source
from ndl.hub.openapi import ASKS_DATASITE, RATE_LIMITED
from ndl.hub.roundtrip import ask_datasite
from ndl.hub.state import HubState
from ndl.ledger import register
from ndl.query import service as queries
from ndl.query.spec import CountQuery

router = APIRouter(prefix="/api")
ANONYMOUS = Principal(0, "anonymous", frozenset(), None)
HubDep = Annotated[HubState, Depends(hub)]
# The orders ndl.catalogue.search.SORTS knows (a unit test keeps the two the same).
Sort = Literal["relevance", "title", "updated", "rows"]


# Signing in (/api/auth/login), /api/me and each user's tokens: ndl.hub.auth_api.


@router.get("/orgs")
def list_orgs(state: HubDep, _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        return {"orgs": [o.model_dump() for o in access_service.list_orgs(s)]}


@router.post("/orgs", status_code=201)
def create_org(body: access_service.NewOrg, state: HubDep,
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    with state.db.write() as s:
        return access_service.create_org(s, state.key, who, body).model_dump()


@router.post("/users", status_code=201)
def create_user(body: access_service.NewUser, state: HubDep,
                who: Annotated[Principal, Depends(requires("admin"))]) -> dict[str, Any]:
    with state.db.write() as s:
        return access_service.create_user(s, state.key, who, body).model_dump()


@router.get("/datasets")
def search_datasets(
    state: HubDep, _: Annotated[Principal | None, Depends(public)],
    q: str | None = Query(default=None, max_length=500),
    publisher: str | None = None, tier: str | None = None, theme: str | None = None,
    geography: str | None = None, year: str | None = None, join_key: str | None = None,
    sort: Sort = "relevance",
    limit: int = Query(default=20, ge=1, le=100),
    offset: int = Query(default=0, ge=0, le=MAX_DB_INT),
) -> dict[str, Any]:
    filters = {"publisher": publisher, "tier": tier, "theme": theme, "geography": geography,
               "year": year, "join_key": join_key}
    with state.db.read() as s:
        res = search(s, q, filters=filters, limit=limit, offset=offset, sort=sort)
        return {"total": res.total, "limit": limit, "offset": offset,
                "results": [catalogue.summary_json(d) for d in res.items],
                "facets": res.facets}


@router.get("/datasets/{site}/{name}")
def get_dataset(site: str, name: str, state: HubDep,
                _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        return catalogue.detail_json(catalogue.get_dataset(s, f"{site}/{name}"))


@router.get("/datasets/{site}/{name}/versions")
def dataset_versions(site: str, name: str, state: HubDep,
                     _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        catalogue.get_dataset(s, f"{site}/{name}")
        return {"versions": [
            {"version": v.version, "published_at": v.published_at.isoformat(),
             "metadata_hash": v.metadata_hash}
            for v in catalogue.versions(s, f"{site}/{name}")]}


@router.get("/datasets/{site}/{name}/mock",
            responses={200: {"content": {"application/json": {}, "text/csv": {},
                                         "application/vnd.apache.parquet": {}}}})
def dataset_mock(
    site: str, name: str, state: HubDep, who: Annotated[Principal, Depends(authenticated)],
    limit: int = Query(default=100, ge=1, le=10_000),
    format: str = Query(default="json", pattern="^(json|csv|parquet)$"),
) -> Any:
    """Synthetic mock rows: same schema as the real data, no real row. Any signed-in user.

    ``format=parquet`` keeps the column types, for ``ndl run --mock``."""
    with state.db.read() as s:
        mock = mocks.get_mock(s, f"{site}/{name}")
    table = mocks.read_rows(mock, limit)
    if format == "parquet":
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf)
        return Response(buf.getvalue(), media_type="application/vnd.apache.parquet",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{site}--{name}--mock.parquet"'})
    if format == "csv":
        return Response(mocks.to_csv(table), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{site}--{name}--mock.csv"'})
    return {"dataset": f"{site}/{name}", "synthetic": True, "method": mock.method,
            "version": mock.version, "total_rows": mock.rows, **mocks.to_json(table)}


class SqlBody(BaseModel):
    sql: str = Field(min_length=1, max_length=10_000)
    limit: int = Field(default=1000, ge=1, le=10_000)


@router.post("/datasets/{site}/{name}/sql", responses={**RATE_LIMITED, **ASKS_DATASITE})
async def dataset_sql(site: str, name: str, body: SqlBody, request: Request, state: HubDep,
                      who: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """Read-only SQL over an open dataset's rows (the table is called ``data``)."""
    answer = await queries.open_sql(state, who, f"{site}/{name}", body.sql, limit=body.limit,
                                    source=request_source(request, state.settings.trusted_proxies))
    return answer.model_dump()


@router.patch("/datasets/{site}/{name}/metadata", responses=ASKS_DATASITE)
async def edit_metadata(site: str, name: str, changes: dict[str, Any], state: HubDep,
                        who: Annotated[Principal, Depends(requires("steward", "admin"))],
                        ) -> dict[str, Any]:
    """A steward edits metadata; the datasite validates and keeps it, then republishes."""

    def own_org(_: Session, ds: Dataset) -> None:
        rules.require_org_official(who, ds.org_id, doing=f"edit the metadata of {ds.id}")

    result = await ask_datasite(
        state, who, f"{site}/{name}", kind="metadata.update", body={"changes": changes},
        check=own_org, record="metadata.edit.submitted", payload={"fields": sorted(changes)},
    )
    return {"dataset": result["dataset"], "metadata": result["metadata"]}


@router.get("/datasites")
def list_datasites(state: HubDep,
                   _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        sites = s.scalars(select(Datasite).order_by(Datasite.id))
        # Each with its membership state and latest signed status (stale when late).
        return {"datasites": [{**federation.datasite_json(d),
                               **membership.site_status(s, d).to_json()} for d in sites]}


@router.post("/datasets/{site}/{name}/query", responses=ASKS_DATASITE)
async def query_dataset(
    site: str, name: str, spec: CountQuery, state: HubDep,
    caller: Annotated[Principal | None, Depends(public)],
) -> dict[str, Any]:
    """Exact counts of an open dataset's rows, grouped by up to three columns.

    Safeguarded data is answered only by private (differentially private) queries and
    controlled data not at all: see ``ndl.core.tiers``.
    """
    answer = await queries.count(state, caller, f"{site}/{name}", spec)
    return answer.model_dump()


@router.get("/register")
def register_feed(
    state: HubDep, _: Annotated[Principal | None, Depends(public)],
    after: int = Query(default=0, ge=0, le=MAX_DB_INT),
    limit: int = Query(default=100, ge=1, le=1000),
    kind: str | None = None,
) -> dict[str, Any]:
    with state.db.read() as s:
        entries = register.list_entries(s, after=after, limit=limit, kind=kind)
        seq, digest = register.head(s)
        return {"entries": [register.entry_json(e) for e in entries],
                "head": {"seq": seq, "hash": digest}, "hub_public_key": state.key.public_b64,
                "hub_keys": [k.to_json() for k in key_service.hub_validities(s, state.key)]}


@router.get("/register/verify")
def register_verify(state: HubDep,
                    _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    with state.db.read() as s:
        return register.verify(s, key_service.register_keys(
            key_service.hub_validities(s, state.key))).to_json()

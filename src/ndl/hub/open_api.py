"""The catalogue for machines: Croissant, rows by GET, ``/llms.txt`` and Markdown dataset
pages here; DCAT-3 in Turtle, RDF/XML and JSON-LD in :mod:`ndl.hub.dcat_api`; a CKAN-compatible
Action API in :mod:`ndl.hub.ckan_api` (both included in this module's router).

Every route here is public, like the catalogue itself, and only arranges what
:mod:`ndl.catalogue.service` returns through the pure exporters in
:mod:`ndl.catalogue.exporters`.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.access.rules import principal_string
from ndl.catalogue import service as catalogue
from ndl.catalogue.exporters import croissant, dcat, llms, markdown
from ndl.catalogue.models import Dataset, DatasetMock
from ndl.core.db import MAX_DB_INT
from ndl.core.errors import InvalidInput
from ndl.hub import ckan_api, dcat_api
from ndl.hub.deps import hub, public
from ndl.hub.login_limits import request_source
from ndl.hub.openapi import ASKS_DATASITE, RATE_LIMITED
from ndl.hub.state import HubState
from ndl.ledger import security_log
from ndl.query import service as queries
from ndl.work import service as work_service

router = APIRouter()
# DCAT in every RDF syntax, and the CKAN Action API, live in their own modules; they are served
# through this router so the app includes the catalogue for machines in one place.
router.include_router(dcat_api.router)
router.include_router(ckan_api.router)
Public = Annotated[Principal | None, Depends(public)]
HubDep = Annotated[HubState, Depends(hub)]

JSON_LD = "application/ld+json"
MARKDOWN = "text/markdown; charset=utf-8"
ROWS_MAX = 10_000


def base_url(request: Request) -> str:
    """The hub's public address as this request reached it, without a trailing slash."""
    return str(request.base_url).rstrip("/")


def _json_ld(doc: dict[str, Any]) -> JSONResponse:
    return JSONResponse(doc, media_type=JSON_LD)


def _has_mock(session: Session, ds_id: str) -> bool:
    # Select the key only: the mock row also holds the Parquet bytes.
    return session.scalar(select(DatasetMock.dataset_id)
                          .where(DatasetMock.dataset_id == ds_id)) is not None


def _detail(session: Session, site: str, name: str) -> dict[str, Any]:
    return catalogue.detail_json(catalogue.get_dataset(session, f"{site}/{name}"))


def _all_details(session: Session, limit: int, offset: int = 0
                 ) -> tuple[list[dict[str, Any]], int]:
    total = int(session.scalar(select(func.count()).select_from(Dataset).where(
        Dataset.withdrawn_at.is_(None))) or 0)  # withdrawn entries are not listed
    rows = session.scalars(select(Dataset).where(Dataset.withdrawn_at.is_(None))
                           .order_by(Dataset.id).limit(limit).offset(offset))
    return [catalogue.detail_json(d) for d in rows], total


# --- Croissant and rows -----------------------------------------------------------------

@router.get("/api/datasets/{site}/{name}/croissant", response_class=JSONResponse,
            responses={200: {"content": {JSON_LD: {}}}})
def dataset_croissant(site: str, name: str, request: Request, state: HubDep, _: Public
                      ) -> JSONResponse:
    """The dataset's columns as Croissant 1.1 JSON-LD, for ML data loaders."""
    with state.db.read() as s:
        detail = _detail(s, site, name)
        has_mock = _has_mock(s, detail["id"])
    return _json_ld(croissant.dataset_croissant(detail, base_url(request), has_mock=has_mock))


@router.get("/api/datasets/{site}/{name}/rows", responses={
    200: {"content": {"text/csv": {}, "application/json": {}}},
    **RATE_LIMITED, **ASKS_DATASITE})
async def dataset_rows(
    site: str, name: str, request: Request, state: HubDep, who: Public,
    format: str = Query(default="csv", pattern="^(csv|json)$"),
    limit: int | None = Query(default=None, ge=1, le=MAX_DB_INT,
                              description=f"rows wanted; JSON answers at most {ROWS_MAX:,}"),
) -> Any:
    """An open dataset's rows by plain GET, so downloaders and Croissant loaders can fetch
    them. CSV is the whole dataset (or its first ``limit`` rows), any size: an export work
    item made at the datasite and streamed from the hub's blob store. JSON is for small
    reads (at most 10,000 rows) and is answered directly."""
    source = request_source(request, state.settings.trusted_proxies)
    if format == "csv":
        return await work_service.export_now(state, who, f"{site}/{name}", limit=limit,
                                             source=source, range_header=None)
    if limit is not None and limit > ROWS_MAX:
        raise InvalidInput(f"JSON rows are for reads of at most {ROWS_MAX:,} rows; ask for "
                           "format=csv (any size) or 'ndl download' for the whole dataset")
    answer = await queries.download(state, who, f"{site}/{name}", limit=limit or ROWS_MAX,
                                    source=source)
    result = answer.model_dump()
    await run_in_threadpool(functools.partial(
        security_log.rows_served, state.db, f"{site}/{name}", actor=principal_string(who),
        source=source, fmt="json", rows=len(result["rows"])))
    return {"dataset": f"{site}/{name}", "columns": result["columns"],
            "rows": result["rows"], "truncated": result.get("truncated", False)}


# --- llms.txt and Markdown --------------------------------------------------------------

@router.get("/llms.txt", response_class=PlainTextResponse, include_in_schema=False)
def llms_txt(request: Request, state: HubDep, _: Public) -> PlainTextResponse:
    with state.db.read() as s:
        details, total = _all_details(s, llms.MAX_LISTED)
    return PlainTextResponse(llms.llms_txt(details, base_url(request), total=total),
                             media_type=MARKDOWN)


@router.get("/catalogue.md", response_class=PlainTextResponse, include_in_schema=False)
def catalogue_md(request: Request, state: HubDep, _: Public) -> PlainTextResponse:
    with state.db.read() as s:
        details, total = _all_details(s, dcat.CATALOGUE_PAGE_SIZE)
    return PlainTextResponse(markdown.catalogue_markdown(details, base_url(request),
                                                         total=total), media_type=MARKDOWN)


# Registered before the web pages' /datasets/{site}/{name}, so ".md" reaches this route.
@router.get("/datasets/{site}/{name}.md", response_class=PlainTextResponse,
            include_in_schema=False)
def dataset_md(site: str, name: str, request: Request, state: HubDep, _: Public
               ) -> PlainTextResponse:
    with state.db.read() as s:
        detail = _detail(s, site, name)
    return PlainTextResponse(markdown.dataset_markdown(detail, base_url(request)),
                             media_type=MARKDOWN)

"""The catalogue for machines: DCAT-3, Croissant, a CKAN-compatible Action API, ``/llms.txt``
and Markdown dataset pages.

Every route here is public, like the catalogue itself, and only arranges what
:mod:`ndl.catalogue.service` returns through the pure exporters in
:mod:`ndl.catalogue.exporters`. The CKAN routes answer in CKAN's envelope
(``{"help", "success", "result"}`` or ``{"success": false, "error": {"__type", "message"}}``)
because that is what CKAN clients parse.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.access.models import Org
from ndl.catalogue import service as catalogue
from ndl.catalogue.exporters import ckan, croissant, dcat, llms, markdown
from ndl.catalogue.models import Dataset, DatasetMock
from ndl.catalogue.search import search
from ndl.core.csvsafe import csv_text
from ndl.core.errors import InvalidInput, NdlError, NotFound, PermissionDenied
from ndl.hub.deps import hub, public
from ndl.hub.login_limits import request_source
from ndl.hub.state import HubState
from ndl.query import service as queries

router = APIRouter()
Public = Annotated[Principal | None, Depends(public)]
HubDep = Annotated[HubState, Depends(hub)]

JSON_LD = "application/ld+json"
MARKDOWN = "text/markdown; charset=utf-8"
ROWS_MAX = 10_000
CKAN_ROWS_MAX = 1000
CKAN_SCAN_MAX = 10_000


def base_url(request: Request) -> str:
    """The hub's public address as this request reached it, without a trailing slash."""
    return str(request.base_url).rstrip("/")


def _json_ld(doc: dict[str, Any]) -> JSONResponse:
    return JSONResponse(doc, media_type=JSON_LD)


def _has_mock(session: Session, ds_id: str) -> bool:
    # Select the key only: the mock row also holds the Parquet bytes.
    return session.scalar(select(DatasetMock.dataset_id)
                          .where(DatasetMock.dataset_id == ds_id)) is not None


def _with_mock(session: Session) -> set[str]:
    return set(session.scalars(select(DatasetMock.dataset_id)))


def _detail(session: Session, site: str, name: str) -> dict[str, Any]:
    return catalogue.detail_json(catalogue.get_dataset(session, f"{site}/{name}"))


def _all_details(session: Session, limit: int, offset: int = 0
                 ) -> tuple[list[dict[str, Any]], int]:
    total = int(session.scalar(select(func.count()).select_from(Dataset)) or 0)
    rows = session.scalars(select(Dataset).order_by(Dataset.id).limit(limit).offset(offset))
    return [catalogue.detail_json(d) for d in rows], total


# --- DCAT-3 and Croissant ---------------------------------------------------------------

@router.get("/api/datasets/{site}/{name}/dcat", response_class=JSONResponse,
            responses={200: {"content": {JSON_LD: {}}}})
def dataset_dcat(site: str, name: str, request: Request, state: HubDep, _: Public
                 ) -> JSONResponse:
    """The dataset as DCAT-3 JSON-LD, conforming to DCAT-AP 3.0.0."""
    with state.db.read() as s:
        detail = _detail(s, site, name)
        has_mock = _has_mock(s, detail["id"])
    return _json_ld(dcat.dataset_dcat(detail, base_url(request), has_mock=has_mock))


@router.get("/api/catalogue/dcat", response_class=JSONResponse,
            responses={200: {"content": {JSON_LD: {}}}})
def catalogue_dcat(request: Request, state: HubDep, _: Public,
                   page: int = Query(default=1, ge=1, le=100_000)) -> JSONResponse:
    """The whole catalogue as a ``dcat:Catalog``, 1,000 datasets a page (Hydra links)."""
    size = dcat.CATALOGUE_PAGE_SIZE
    with state.db.read() as s:
        details, total = _all_details(s, size, (page - 1) * size)
        with_mock = _with_mock(s)
    if page > 1 and not details:
        raise NotFound(f"the catalogue has {total} datasets, so page {page} is empty; "
                       f"pages run from 1 to {max(1, -(-total // size))}")
    return _json_ld(dcat.catalogue_dcat(details, base_url(request), with_mock=with_mock,
                                        page=page, total=total))


@router.get("/api/datasets/{site}/{name}/croissant", response_class=JSONResponse,
            responses={200: {"content": {JSON_LD: {}}}})
def dataset_croissant(site: str, name: str, request: Request, state: HubDep, _: Public
                      ) -> JSONResponse:
    """The dataset's columns as Croissant 1.1 JSON-LD, for ML data loaders."""
    with state.db.read() as s:
        detail = _detail(s, site, name)
        has_mock = _has_mock(s, detail["id"])
    return _json_ld(croissant.dataset_croissant(detail, base_url(request), has_mock=has_mock))


@router.get("/api/datasets/{site}/{name}/rows")
async def dataset_rows(
    site: str, name: str, request: Request, state: HubDep, who: Public,
    format: str = Query(default="csv", pattern="^(csv|json)$"),
    limit: int = Query(default=ROWS_MAX, ge=1, le=ROWS_MAX),
) -> Any:
    """An open dataset's rows by plain GET (CSV or JSON), so downloaders and Croissant
    loaders can fetch them; read at the datasite through the same path as the SQL endpoint."""
    answer = await queries.download(state, who, f"{site}/{name}", limit=limit,
                                    source=request_source(request, state.settings.trusted_proxies))
    result = answer.model_dump()
    truncated = "true" if result.get("truncated") else "false"
    if format == "json":
        return {"dataset": f"{site}/{name}", "columns": result["columns"],
                "rows": result["rows"], "truncated": result.get("truncated", False)}
    return Response(csv_text(result["columns"], result["rows"]),
                    media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{site}--{name}.csv"',
        "X-NDL-Truncated": truncated,
    })


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


# --- CKAN Action API --------------------------------------------------------------------

CKAN_ERRORS: dict[type[NdlError], tuple[int, str]] = {
    NotFound: (404, "Not Found Error"),
    InvalidInput: (409, "Validation Error"),
    PermissionDenied: (403, "Authorization Error"),
}


class SearchQueryError(InvalidInput):
    """A q, fq or sort CKAN cannot run; CKAN answers these with HTTP 400."""


def _ckan_error(exc: NdlError) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, SearchQueryError):
        return 400, {"__type": "Search Query Error",
                     "message": f"Search Query is invalid: {exc.message}"}
    for cls, (status, kind) in CKAN_ERRORS.items():
        if isinstance(exc, cls):
            return status, {"__type": kind, "message": exc.message}
    return exc.http_status, {"__type": "Internal Server Error", "message": exc.message}


async def _ckan_params(request: Request) -> dict[str, Any]:
    """Action parameters from the query string (GET) and the JSON or form body (POST)."""
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        body = await request.body()
        if body.strip():
            if request.headers.get("content-type", "").startswith("application/json"):
                try:
                    data = json.loads(body)
                except ValueError as exc:
                    raise InvalidInput("the body must be a JSON object of parameters") from exc
            else:
                form = await request.form()
                data = {k: v for k, v in form.items() if isinstance(v, str)}
            if not isinstance(data, dict):
                raise InvalidInput("the body must be a JSON object of parameters")
            params.update(data)
    return params


async def _ckan_call(action: str, request: Request, state: HubState,
                     fn: Callable[[Session, dict[str, Any], str], Any]) -> JSONResponse:
    base = base_url(request)
    help_url = f"{base}/api/3/action/help_show?name={action}"
    try:
        params = await _ckan_params(request)

        def run() -> Any:
            with state.db.read() as s:
                return fn(s, params, base)

        result = await run_in_threadpool(run)
    except NdlError as exc:
        status, error = _ckan_error(exc)
        return JSONResponse({"help": help_url, "success": False, "error": error},
                            status_code=status)
    return JSONResponse({"help": help_url, "success": True, "result": result})


def _int(params: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{key}: {raw!r} is not a whole number") from exc
    if not lo <= value <= hi:
        raise InvalidInput(f"{key}: must be between {lo} and {hi}; got {value}")
    return value


def _bool(params: dict[str, Any], key: str) -> bool:
    raw = params.get(key, False)
    return raw is True or str(raw).lower() in ("true", "1", "yes", "on")


def _org_titles(session: Session) -> dict[str, str]:
    return {o.id: o.name for o in session.scalars(select(Org))}


def _packages(session: Session, items: list[Dataset], base: str) -> list[dict[str, Any]]:
    titles, with_mock = _org_titles(session), _with_mock(session)
    return [ckan.package(catalogue.detail_json(d), base, org_title=titles.get(d.org_id),
                         has_mock=d.id in with_mock) for d in items]


def _facet_fields(params: dict[str, Any]) -> list[str]:
    raw = params.get("facet.field")
    if raw in (None, ""):
        return []
    fields = raw if isinstance(raw, list) else json.loads(raw) if str(raw).startswith("[") \
        else [raw]
    allowed = ("organization", "tags", "groups", "license_id", "res_format")
    bad = [f for f in fields if f not in allowed]
    if bad:
        raise SearchQueryError(f"facet.field: cannot facet on {bad[0]!r}; use "
                               f"{', '.join(allowed)}")
    return [str(f) for f in fields]


def package_search(session: Session, params: dict[str, Any], base: str) -> dict[str, Any]:
    """Search datasets: q (free text), fq (field:value terms), rows, start, sort, facet.field.

    fq understands organization, tags, groups, tier, theme, publisher, geography, year,
    join_key, name, id, license_id and res_format.
    """
    rows = _int(params, "rows", 10, 0, CKAN_ROWS_MAX)
    start = _int(params, "start", 0, 0, 1_000_000)
    q = str(params.get("q") or "").strip()
    q = "" if q in ("*:*", "*") else q
    try:
        terms = ckan.parse_fq(str(params.get("fq") or ""))
        order = ckan.parse_sort(params.get("sort"))
        facet_fields = _facet_fields(params)
    except ValueError as exc:
        raise SearchQueryError(f"facet.field: not a JSON list ({exc})") from exc
    except InvalidInput as exc:
        raise SearchQueryError(exc.message) from exc
    filters: dict[str, str | None] = {}
    for field, value in terms:
        facet = ckan.FACET_FIELDS.get(field)
        if facet is None:
            continue
        if filters.get(facet) not in (None, value):  # two different values, ANDed: none match
            return {"count": 0, "results": [], "sort": params.get("sort") or "score desc",
                    "facets": {}, "search_facets": {}}
        filters[facet] = value
    needs_scan = bool(facet_fields) or any(f not in ckan.FACET_FIELDS for f, _ in terms)
    if not needs_scan:
        res = search(session, q or None, filters=filters, limit=rows, offset=start, sort=order)
        return {"count": res.total, "results": _packages(session, res.items, base),
                "sort": params.get("sort") or "score desc", "facets": {},
                "search_facets": {}}
    # Package-level terms (organization, tags, ...) are checked here, over every match.
    res = search(session, q or None, filters=filters, limit=CKAN_SCAN_MAX, sort=order)
    matched = [p for p in _packages(session, res.items, base) if ckan.package_matches(p, terms)]
    facets = ckan.search_facets(matched, facet_fields)
    return {"count": len(matched), "results": matched[start:start + rows],
            "sort": params.get("sort") or "score desc",
            "facets": {f: {i["name"]: i["count"] for i in v["items"]} for f, v in facets.items()},
            "search_facets": facets}


def package_show(session: Session, params: dict[str, Any], base: str) -> dict[str, Any]:
    """One dataset by id (``site/name``) or CKAN name (``site--name``)."""
    ref = str(params.get("id") or params.get("name") or "").strip()
    if not ref:
        raise InvalidInput("id: give the package id (site/name) or name (site--name)")
    for ds_id in ckan.candidate_ids(ref):
        ds = session.get(Dataset, ds_id)
        if ds is not None:
            return _packages(session, [ds], base)[0]
    raise NotFound(f"Package {ref!r} was not found; list packages with package_search")


def organization_list(session: Session, params: dict[str, Any], base: str) -> list[Any]:
    """Organisations that publish here: names, or full dicts with all_fields=true."""
    sort = str(params.get("sort") or "name asc").split()
    key, desc = (sort[0] if sort else "name"), len(sort) > 1 and sort[1].lower() == "desc"
    if key not in ("name", "title", "package_count"):
        raise InvalidInput(f"sort: cannot sort organisations on {key!r}; use name, title or "
                           "package_count")
    counts: dict[str, int] = {
        org_id: int(n) for org_id, n in
        session.execute(select(Dataset.org_id, func.count()).group_by(Dataset.org_id))}
    wanted = params.get("organizations")
    orgs = [ckan.organization({"id": o.id, "name": o.name, "kind": o.kind,
                               "created_at": o.created_at.isoformat()}, base,
                              package_count=int(counts.get(o.id, 0)))
            for o in session.scalars(select(Org))
            if not wanted or o.id in (wanted if isinstance(wanted, list) else [wanted])]
    field = {"name": "name", "title": "title", "package_count": "package_count"}[key]
    orgs.sort(key=lambda o: (o[field], o["name"]), reverse=desc)
    offset = _int(params, "offset", 0, 0, 1_000_000)
    limit = _int(params, "limit", len(orgs) or 1, 1, 1_000_000)
    page = orgs[offset:offset + limit]
    return page if _bool(params, "all_fields") else [o["name"] for o in page]


def help_show(session: Session, params: dict[str, Any], base: str) -> str:
    """The documentation of one action."""
    name = str(params.get("name") or "")
    fn = ACTIONS.get(name)
    if fn is None:
        raise NotFound(f"no action {name!r}; actions are {', '.join(sorted(ACTIONS))}")
    return (fn.__doc__ or "").strip()


ACTIONS: dict[str, Callable[[Session, dict[str, Any], str], Any]] = {
    "package_search": package_search, "package_show": package_show,
    "organization_list": organization_list, "help_show": help_show,
}


# CKAN serves the Action API at /api/3/action/ and, unversioned, at /api/action/ (the path
# the ckanapi client uses by default).
@router.get("/api/3/action/{action}")
@router.post("/api/3/action/{action}")
@router.api_route("/api/action/{action}", methods=["GET", "POST"], include_in_schema=False)
async def ckan_action(action: str, request: Request, state: HubDep, _: Public) -> JSONResponse:
    """CKAN-compatible Action API: package_search, package_show, organization_list and
    help_show, by GET (query string) or POST (JSON body), in CKAN's response envelope."""
    fn = ACTIONS.get(action)
    if fn is None:
        return JSONResponse({
            "help": f"{base_url(request)}/api/3/action/help_show?name=help_show",
            "success": False,
            "error": {"__type": "Bad Request Error", "message": (
                f"Bad request - Action name not known: {action}; this hub answers "
                f"{', '.join(sorted(ACTIONS))}")},
        }, status_code=400)
    return await _ckan_call(action, request, state, fn)

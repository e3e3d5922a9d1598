"""A CKAN-compatible Action API (version 3), read-only, so CKAN clients can harvest the catalogue.

The actions are the ones CKAN harvesters and ``ckanapi`` call: ckanext-harvest's CKAN harvester
pages ``package_search`` with ``sort=id asc`` and Solr ``fq`` terms (ranges, ``OR``,
``-field:value``) and reads ``organization_show``/``group_show``; ``ckanapi dump`` lists with
``package_list`` and reads each ``package_show``. Every route is public, like the catalogue, and
only arranges what :mod:`ndl.catalogue.service` and :mod:`ndl.catalogue.search` return through
the pure exporter :mod:`ndl.catalogue.exporters.ckan`. Answers use CKAN's envelope
(``{"help", "success", "result"}`` or ``{"success": false, "error": {"__type", "message"}}``)
because that is what CKAN clients parse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.access.models import Org
from ndl.catalogue import service as catalogue
from ndl.catalogue.exporters import ckan
from ndl.catalogue.exporters import ckan_query as solr
from ndl.catalogue.exporters._links import LIBRARY_NAME
from ndl.catalogue.metadata import LICENCES
from ndl.catalogue.models import Dataset, DatasetMock
from ndl.catalogue.search import search
from ndl.core.errors import InvalidInput, NdlError, NotFound, PermissionDenied
from ndl.hub.deps import hub, public
from ndl.hub.openapi import CKAN_RESPONSES
from ndl.hub.state import HubState

router = APIRouter()
Public = Annotated[Principal | None, Depends(public)]
HubDep = Annotated[HubState, Depends(hub)]
Params = dict[str, Any]  # CKAN action parameters: CKAN clients send free-form JSON

CKAN_ROWS_MAX = 1000
CKAN_SCAN_MAX = 10_000
# The CKAN API this hub answers like; clients check it to choose request shapes.
CKAN_VERSION = "2.11.0"
RESOURCE_KEYS = ("page", "rows-csv", "mock-csv", "dcat", "croissant")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# search()'s own orders, for the fast path that pages in the database.
_FAST_ORDERS = {("score", True): "relevance", ("score", False): "relevance",
                ("title", False): "title", ("metadata_modified", True): "updated"}

CKAN_ERRORS: dict[type[NdlError], tuple[int, str]] = {
    NotFound: (404, "Not Found Error"),
    InvalidInput: (409, "Validation Error"),
    PermissionDenied: (403, "Authorization Error"),
}


class SearchQueryError(InvalidInput):
    """A q, fq or sort CKAN cannot run; CKAN answers these with HTTP 400."""


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _ckan_error(exc: NdlError) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, SearchQueryError):
        return 400, {"__type": "Search Query Error",
                     "message": f"Search Query is invalid: {exc.message}"}
    for cls, (status, kind) in CKAN_ERRORS.items():
        if isinstance(exc, cls):
            return status, {"__type": kind, "message": exc.message}
    return exc.http_status, {"__type": "Internal Server Error", "message": exc.message}


async def _ckan_params(request: Request) -> Params:
    """Action parameters from the query string (GET) and the JSON or form body (POST)."""
    params: Params = dict(request.query_params)
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


def _int(params: Params, key: str, default: int, lo: int, hi: int) -> int:
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


def _bool(params: Params, key: str, default: bool = False) -> bool:
    raw = params.get(key, default)
    return raw is True or str(raw).lower() in ("true", "1", "yes", "on")


def _ref(params: Params, what: str) -> str:
    ref = str(params.get("id") or params.get("name") or "").strip()
    if not ref:
        raise InvalidInput(f"id: give the {what}'s id or name")
    return ref


# --- reading the catalogue as packages ------------------------------------------------------

def _orgs(session: Session) -> dict[str, Org]:
    return {o.id: o for o in session.scalars(select(Org))}


def _packages(session: Session, items: list[Dataset], base: str) -> list[dict[str, Any]]:
    orgs = _orgs(session)
    with_mock = set(session.scalars(select(DatasetMock.dataset_id)))
    out = []
    for d in items:
        org = orgs.get(d.org_id)
        out.append(ckan.package(
            catalogue.detail_json(d), base, org_title=org.name if org else None,
            org_created=org.created_at.isoformat() if org else None,
            has_mock=d.id in with_mock))
    return out


def _all_datasets(session: Session) -> list[Dataset]:
    # Withdrawn entries are not listed (ndl.catalogue.lifecycle).
    return list(session.scalars(select(Dataset).where(Dataset.withdrawn_at.is_(None))
                                .order_by(Dataset.id).limit(CKAN_SCAN_MAX)))


def _find_dataset(session: Session, ref: str) -> Dataset | None:
    if _UUID.match(ref.lower()):
        for ds_id in session.scalars(select(Dataset.id)):
            if ckan.package_uuid(ds_id) == ref.lower():
                return session.get(Dataset, ds_id)
        return None
    for ds_id in ckan.candidate_ids(ref):
        ds = session.get(Dataset, ds_id)
        if ds is not None:
            return ds
    return None


def _find_org(session: Session, ref: str) -> Org | None:
    org = session.get(Org, ref)
    if org is not None:
        return org
    return next((o for o in session.scalars(select(Org)) if ckan.org_uuid(o.id) == ref), None)


def _org_dict(session: Session, org: Org, base: str, count: int) -> dict[str, Any]:
    return ckan.organization({"id": org.id, "name": org.name, "kind": org.kind,
                              "created_at": org.created_at.isoformat()}, base,
                             package_count=count)


def _org_counts(session: Session) -> dict[str, int]:
    counts: dict[str, int] = {}
    for org_id in session.scalars(select(Dataset.org_id).where(Dataset.withdrawn_at.is_(None))):
        counts[org_id] = counts.get(org_id, 0) + 1
    return counts


def _page(items: list[Any], params: Params) -> list[Any]:
    offset = _int(params, "offset", 0, 0, 1_000_000)
    limit = _int(params, "limit", len(items) or 1, 0, 1_000_000)
    return items[offset:offset + limit]


def _sorted_dicts(items: list[dict[str, Any]], sort: str, allowed: tuple[str, ...]
                  ) -> list[dict[str, Any]]:
    words = sort.split()
    key = words[0] if words else "name"
    desc = len(words) > 1 and words[1].lower() == "desc"
    if key not in allowed:
        raise InvalidInput(f"sort: cannot sort on {key!r}; use {', '.join(allowed)}")
    return sorted(items, key=lambda o: (o[key], o["name"]), reverse=desc)


# --- the actions ------------------------------------------------------------------------------

def _facet_fields(params: Params) -> list[str]:
    raw = params.get("facet.field")
    if raw in (None, ""):
        return []
    try:
        fields = raw if isinstance(raw, list) else json.loads(raw) \
            if str(raw).startswith("[") else [raw]
    except ValueError as exc:
        raise SearchQueryError(f"facet.field: not a JSON list ({exc})") from exc
    bad = [f for f in fields if f not in ckan.FACETABLE]
    if bad:
        raise SearchQueryError(f"facet.field: cannot facet on {bad[0]!r}; use "
                               f"{', '.join(ckan.FACETABLE)}")
    return [str(f) for f in fields]


def package_search(session: Session, params: Params, base: str) -> dict[str, Any]:
    """Search datasets as CKAN does: q (free text, or Solr field terms like title:attainment),
    fq (Solr filter: field:value, field:"two words", field:[from TO to], a OR b, -field:value),
    rows, start, sort (id, name, title_string, metadata_modified, metadata_created, score;
    asc or desc), facet.field, facet.limit and facet.mincount.

    Fields: organization, owner_org, tags, groups, theme, name, id, title, notes, text,
    license_id, res_format, tier, publisher, geography, year, join_key, metadata_modified,
    metadata_created, dataset_type, state.
    """
    rows = _int(params, "rows", 10, 0, CKAN_ROWS_MAX)
    start = _int(params, "start", 0, 0, 1_000_000)
    facet_limit = _int(params, "facet.limit", 50, -1, 10_000)
    facet_mincount = _int(params, "facet.mincount", 1, 0, 1_000_000)
    sort_text = str(params.get("sort") or "score desc, metadata_modified desc")
    try:
        q_text, q_tree = solr.split_q(str(params.get("q") or ""))
        fq_tree = solr.parse(str(params.get("fq") or ""))
        keys = solr.parse_sort(sort_text)
    except InvalidInput as exc:
        raise SearchQueryError(exc.message) from exc
    facet_fields = _facet_fields(params)
    fast = _FAST_ORDERS.get((keys[0].field, keys[0].descending))
    if (fast and not facet_fields and q_tree is solr.EVERYTHING
            and fq_tree is solr.EVERYTHING):
        res = search(session, q_text or None, limit=rows, offset=start, sort=fast)
        return {"count": res.total, "results": _packages(session, res.items, base),
                "sort": sort_text, "facets": {}, "search_facets": {}}
    res = search(session, q_text or None, limit=CKAN_SCAN_MAX, sort="relevance")
    try:
        matched = [p for p in _packages(session, res.items, base)
                   if solr.matches(p, q_tree) and solr.matches(p, fq_tree)]
    except InvalidInput as exc:  # a range bound that is not a date
        raise SearchQueryError(exc.message) from exc
    matched = solr.sort_packages(matched, keys)
    facets = ckan.search_facets(matched, facet_fields, limit=facet_limit,
                                mincount=facet_mincount)
    return {"count": len(matched), "results": matched[start:start + rows], "sort": sort_text,
            "facets": {f: {i["name"]: i["count"] for i in v["items"]} for f, v in facets.items()},
            "search_facets": facets}


def package_show(session: Session, params: Params, base: str) -> dict[str, Any]:
    """One dataset by its CKAN id (a UUID), its CKAN name (site--name) or its ndl id
    (site/name)."""
    ref = _ref(params, "package")
    ds = _find_dataset(session, ref)
    if ds is None:
        raise NotFound(f"Package {ref!r} was not found; list packages with package_list")
    return _packages(session, [ds], base)[0]


def package_list(session: Session, params: Params, base: str) -> list[str]:
    """The names of every dataset, sorted; limit and offset page them."""
    names = sorted(ckan.package_name(i) for i in session.scalars(
        select(Dataset.id).where(Dataset.withdrawn_at.is_(None))))
    return _page(names, params)


def current_package_list_with_resources(session: Session, params: Params, base: str
                                        ) -> list[dict[str, Any]]:
    """Every dataset with its resources, most recently changed first; limit and offset."""
    pkgs = _packages(session, _all_datasets(session), base)
    pkgs.sort(key=lambda p: str(p["metadata_modified"] or ""), reverse=True)
    return _page(pkgs, params)


def resource_show(session: Session, params: Params, base: str) -> dict[str, Any]:
    """One resource by its id (a UUID)."""
    ref = _ref(params, "resource").lower()
    for ds_id in session.scalars(select(Dataset.id)):
        if any(ckan.resource_uuid(ds_id, key) == ref for key in RESOURCE_KEYS):
            ds = session.get(Dataset, ds_id)
            pkg = _packages(session, [ds], base)[0] if ds else {"resources": []}
            for res in pkg["resources"]:
                if res["id"] == ref:
                    return dict(res)
    raise NotFound(f"Resource {ref!r} was not found; resources are listed in package_show")


def organization_list(session: Session, params: Params, base: str) -> list[Any]:
    """Organisations that publish here: names, or full dicts with all_fields=true; sort by
    name, title or package_count; limit and offset."""
    counts = _org_counts(session)
    wanted = params.get("organizations")
    wanted_ids = wanted if isinstance(wanted, list) else [wanted] if wanted else []
    orgs = [_org_dict(session, o, base, counts.get(o.id, 0)) for o in _orgs(session).values()
            if not wanted_ids or o.id in wanted_ids]
    return _listing(orgs, params)


def _listing(items: list[dict[str, Any]], params: Params) -> list[Any]:
    """CKAN's *_list answer: sorted, paged, and names unless all_fields=true."""
    items = _sorted_dicts(items, str(params.get("sort") or "name asc"),
                          ("name", "title", "package_count"))
    page = _page(items, params)
    return page if _bool(params, "all_fields") else [i["name"] for i in page]


def organization_show(session: Session, params: Params, base: str) -> dict[str, Any]:
    """One organisation by id (UUID) or name; include_datasets=true adds its packages."""
    ref = _ref(params, "organization")
    org = _find_org(session, ref)
    if org is None:
        raise NotFound(f"Organization {ref!r} was not found; list them with "
                       "organization_list")
    datasets = list(session.scalars(select(Dataset).where(
        Dataset.org_id == org.id, Dataset.withdrawn_at.is_(None)).order_by(Dataset.id)))
    out = _org_dict(session, org, base, len(datasets))
    out.update({"users": [], "groups": [], "tags": [], "extras": []})
    if _bool(params, "include_datasets"):
        out["packages"] = _packages(session, datasets, base)
    return out


def _theme_counts(session: Session, base: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ds in _all_datasets(session):
        for theme in catalogue.detail_json(ds).get("themes") or []:
            counts[theme] = counts.get(theme, 0) + 1
    return counts


def group_list(session: Session, params: Params, base: str) -> list[Any]:
    """The themes, as CKAN groups: names, or dicts with all_fields=true."""
    groups = [ckan.group(t, base, package_count=n)
              for t, n in _theme_counts(session, base).items()]
    return _listing(groups, params)


def group_show(session: Session, params: Params, base: str) -> dict[str, Any]:
    """One theme by id (UUID) or name; include_datasets=true adds its packages."""
    ref = _ref(params, "group")
    counts = _theme_counts(session, base)
    theme = next((t for t in counts if ref in (t, ckan.group_uuid(t))), None)
    if theme is None:
        raise NotFound(f"Group {ref!r} was not found; list them with group_list")
    out = ckan.group(theme, base, package_count=counts[theme])
    out.update({"users": [], "groups": [], "tags": [], "extras": []})
    if _bool(params, "include_datasets"):
        pkgs = _packages(session, _all_datasets(session), base)
        out["packages"] = [p for p in pkgs if theme in {g["name"] for g in p["groups"]}]
    return out


def tag_list(session: Session, params: Params, base: str) -> list[Any]:
    """Every tag in its CKAN-safe form; query= keeps tags containing the text;
    all_fields=true gives dicts with the publisher's wording as display_name."""
    tags: dict[str, dict[str, Any]] = {}
    for pkg in _packages(session, _all_datasets(session), base):
        for t in pkg["tags"]:
            tags.setdefault(t["name"], {k: t[k] for k in ("id", "name", "display_name",
                                                           "vocabulary_id")})
    query = str(params.get("query") or "").lower()
    found = [t for name, t in sorted(tags.items())
             if not query or query in name.lower() or query in t["display_name"].lower()]
    return found if _bool(params, "all_fields") else [t["name"] for t in found]


def license_list(session: Session, params: Params, base: str) -> list[dict[str, Any]]:
    """The licences datasets here may carry."""
    return [{"id": lid, "title": ckan.licence_title(lid), "url": url, "status": "active",
             "od_conformance": "approved" if lid != "restricted" else "not reviewed",
             "osd_conformance": "not reviewed", "family": "", "maintainer": "",
             "domain_content": lid != "restricted", "domain_data": lid != "restricted",
             "domain_software": False, "is_generic": False}
            for lid, url in LICENCES.items()]


def status_show(session: Session, params: Params, base: str) -> dict[str, Any]:
    """What this site is and which CKAN API it answers like."""
    return {"site_title": LIBRARY_NAME, "site_url": base,
            "site_description": "A federated catalogue of UK public-sector datasets; read-only "
                                "CKAN Action API for harvesters.",
            "ckan_version": CKAN_VERSION, "error_emails_to": None, "locale_default": "en_GB",
            "extensions": [], "ndl_actions": sorted(ACTIONS)}


def help_show(session: Session, params: Params, base: str) -> str:
    """The documentation of one action."""
    name = str(params.get("name") or "")
    fn = ACTIONS.get(name)
    if fn is None:
        raise NotFound(f"no action {name!r}; actions are {', '.join(sorted(ACTIONS))}")
    return (fn.__doc__ or "").strip()


ACTIONS: dict[str, Callable[[Session, Params, str], Any]] = {
    "package_search": package_search, "package_show": package_show,
    "package_list": package_list,
    "current_package_list_with_resources": current_package_list_with_resources,
    "resource_show": resource_show, "organization_list": organization_list,
    "organization_show": organization_show, "group_list": group_list,
    "group_show": group_show, "tag_list": tag_list, "license_list": license_list,
    "status_show": status_show, "help_show": help_show,
}
# The schema lists the actions (an enum) while the route itself still answers any other name
# with CKAN's own "Action name not known" envelope, which CKAN clients expect.
ActionName = Annotated[str, Path(description="A read-only CKAN action: "
                                 + ", ".join(sorted(ACTIONS)),
                                 json_schema_extra={"enum": sorted(ACTIONS)})]


async def _ckan_call(action: str, request: Request, state: HubState,
                     fn: Callable[[Session, Params, str], Any]) -> JSONResponse:
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


# CKAN serves the Action API at /api/3/action/ and, unversioned, at /api/action/ (the path
# the ckanapi client uses by default).
@router.get("/api/3/action/{action}", responses=CKAN_RESPONSES)
@router.post("/api/3/action/{action}", responses=CKAN_RESPONSES)
@router.api_route("/api/action/{action}", methods=["GET", "POST"], include_in_schema=False)
async def ckan_action(action: ActionName, request: Request, state: HubDep, _: Public
                      ) -> JSONResponse:
    """CKAN-compatible, read-only Action API (package_search, package_show, package_list,
    organization_show, ...; see help_show), by GET (query string) or POST (JSON body), in
    CKAN's response envelope."""
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

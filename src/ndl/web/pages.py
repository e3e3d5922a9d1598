"""The hub's server-rendered catalogue pages: home, search and dataset pages.

Every route depends on ``ndl.hub.deps.public``: the catalogue is open to everyone. The pages
call the same service functions as the JSON API and only arrange their results for display.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ndl.access.accounts import Principal
from ndl.access.models import Org
from ndl.catalogue import service as catalogue
from ndl.catalogue.models import Dataset
from ndl.catalogue.search import FACETS, search
from ndl.core.errors import NotFound
from ndl.federation.models import Datasite
from ndl.hub.deps import hub, public
from ndl.web.render import pages_of

log = logging.getLogger("ndl.web")

router = APIRouter(include_in_schema=False)
Public = Annotated[Principal | None, Depends(public)]

PAGE_SIZE = 20
MAX_QUERY_CHARS = 200
FACET_LABELS = {"publisher": "Publisher", "tier": "Access tier"}

Build = Callable[[Session], tuple[str, dict[str, Any]]]


def _page(request: Request, build: Build) -> HTMLResponse:
    """Run ``build`` in a read session and render what it returns; errors become HTML pages."""
    pages = pages_of(request)
    try:
        with hub(request).db.read() as session:
            template, context = build(session)
            return pages.render(request, template, context)
    except NotFound:
        return not_found(request)
    except Exception:
        log.exception("error rendering %s", request.url.path)
        return pages.error(
            request, 500, "Sorry, there is a problem with the service",
            "Try again later. Nothing was changed. The hub log has the details.",
        )


def not_found(request: Request) -> HTMLResponse:
    return pages_of(request).error(
        request, 404, "Page not found",
        "If you typed the web address, check it is correct. If you pasted the web address, "
        "check you copied the entire address.",
    )


def _count(session: Session, model: type[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _search_url(q: str, filters: dict[str, str], page: int = 1) -> str:
    params = {"q": q, **filters, "page": str(page) if page > 1 else ""}
    query = urlencode({k: v for k, v in params.items() if v})
    return "/search" + (f"?{query}" if query else "")


def _facets(
    q: str, filters: dict[str, str], counts: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    """Each facet value links to the search with that value chosen, or un-chosen if it is."""
    out = []
    for facet in FACETS:
        chosen = filters.get(facet, "")
        values = dict(counts.get(facet, {}))
        if chosen and chosen not in values:
            values[chosen] = 0
        options = []
        for value, n in values.items():
            toggled = {**filters, facet: "" if value == chosen else value}
            options.append({"value": value, "count": n, "selected": value == chosen,
                            "href": _search_url(q, toggled)})
        out.append({"name": facet, "label": FACET_LABELS.get(facet, facet.title()),
                    "options": options})
    return out


def _pagination(q: str, filters: dict[str, str], page: int, pages: int) -> dict[str, Any] | None:
    """Options for the govukPagination macro: neighbours of the current page, with ellipses."""
    if pages <= 1:
        return None
    shown = sorted({1, pages, page - 1, page, page + 1} & set(range(1, pages + 1)))
    items: list[dict[str, Any]] = []
    for i, n in enumerate(shown):
        if i and n - shown[i - 1] > 1:
            items.append({"ellipsis": True})
        items.append({"number": n, "href": _search_url(q, filters, n), "current": n == page})
    options: dict[str, Any] = {"items": items}
    if page > 1:
        options["previous"] = {"href": _search_url(q, filters, page - 1)}
    if page < pages:
        options["next"] = {"href": _search_url(q, filters, page + 1)}
    return options


def _page_number(raw: str) -> int:
    return max(1, min(int(raw), 10_000)) if raw.isdigit() else 1


@router.get("/", response_class=HTMLResponse)
def home(request: Request, _: Public) -> HTMLResponse:
    def build(session: Session) -> tuple[str, dict[str, Any]]:
        counts = {"datasets": _count(session, Dataset), "datasites": _count(session, Datasite),
                  "organisations": _count(session, Org)}
        return "home.html", {"counts": counts}

    return _page(request, build)


@router.get("/search", response_class=HTMLResponse)
def search_page(
    request: Request, _: Public, q: str = "", publisher: str = "", tier: str = "",
    page: str = "1",
) -> HTMLResponse:
    q = q.strip()[:MAX_QUERY_CHARS]
    filters = {k: v for k, v in {"publisher": publisher, "tier": tier}.items() if v}
    number = _page_number(page)

    def build(session: Session) -> tuple[str, dict[str, Any]]:
        result = search(session, q or None, filters=dict(filters), limit=PAGE_SIZE,
                        offset=(number - 1) * PAGE_SIZE)
        pages = max(1, -(-result.total // PAGE_SIZE))
        return "search.html", {
            "q": q, "filters": filters, "total": result.total, "page": number,
            "pages": pages, "results": [catalogue.summary_json(ds) for ds in result.items],
            "facets": _facets(q, filters, result.facets),
            "pagination": _pagination(q, filters, number, pages),
            "clear_filters_href": _search_url(q, {}) if filters else None,
        }

    return _page(request, build)


@router.get("/datasets/{site}/{name}", response_class=HTMLResponse)
def dataset_page(request: Request, site: str, name: str, _: Public) -> HTMLResponse:
    def build(session: Session) -> tuple[str, dict[str, Any]]:
        ds = catalogue.get_dataset(session, f"{site}/{name}")
        return "dataset.html", {"ds": ds}

    return _page(request, build)

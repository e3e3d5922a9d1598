"""The hub's server-rendered catalogue pages: home, search and dataset pages.

Every route depends on ``ndl.hub.deps.public``: the catalogue is open to everyone (signed-in
users also see mock rows). The pages call the same service functions as the JSON API and only
arrange their results for display. Everything works without JavaScript: facets are links and
sorting is a GET form.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import Principal
from ndl.catalogue import service as catalogue
from ndl.catalogue.models import Dataset
from ndl.catalogue.search import FACETS, SORTS, search
from ndl.core.errors import InvalidInput, NotFound
from ndl.core.tiers import TIER_NAMES, TIERS
from ndl.hub.deps import hub, public
from ndl.web.dataset_view import dataset_context
from ndl.web.render import JOIN_KEY_LABELS, THEME_LABELS, pages_of

log = logging.getLogger("ndl.web")

router = APIRouter(include_in_schema=False)
Public = Annotated[Principal | None, Depends(public)]

PAGE_SIZE = 20
MAX_QUERY_CHARS = 200
MAX_FILTER_CHARS = 200
SNIPPET_CHARS = 240
FACETS_SHOWN = 8  # values beyond this sit behind a "Show more" disclosure
FACET_LABELS = {
    "publisher": "Publisher", "tier": "Access tier", "theme": "Theme",
    "geography": "Geography", "year": "Year (time coverage)", "join_key": "Join key type",
}
SORT_LABELS = {
    "relevance": "Relevance", "title": "Title (A to Z)", "updated": "Recently updated",
    "rows": "Most rows",
}
TIER_ORDER = TIER_NAMES

Build = Callable[[Session], tuple[str, dict[str, Any]]]


def _page(request: Request, build: Build) -> HTMLResponse:
    """Run ``build`` in a read session and render what it returns; errors become HTML pages.

    A context may carry ``status`` (e.g. 400 for a search the service refused).
    """
    pages = pages_of(request)
    try:
        with hub(request).db.read() as session:
            template, context = build(session)
            status = int(context.pop("status", 200))
            return pages.render(request, template, context, status=status)
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


# --- search ---------------------------------------------------------------------------------

def search_url(q: str, filters: dict[str, str], page: int = 1, sort: str = "relevance") -> str:
    params = {"q": q, **filters, "sort": "" if sort == "relevance" else sort,
              "page": str(page) if page > 1 else ""}
    query = urlencode({k: v for k, v in params.items() if v})
    return "/search" + (f"?{query}" if query else "")


def facet_label(facet: str, value: str) -> str:
    if facet == "tier":
        return TIERS[value].title if value in TIERS else value.capitalize()
    if facet == "theme":
        return THEME_LABELS.get(value, value)
    if facet == "join_key":
        return JOIN_KEY_LABELS.get(value, value)
    return value


def _ordered(facet: str, values: dict[str, int]) -> list[tuple[str, int]]:
    """Tiers in their natural order, years newest first, the rest as counted (most first)."""
    if facet == "tier":
        return sorted(values.items(), key=lambda kv: (
            TIER_ORDER.index(kv[0]) if kv[0] in TIER_ORDER else len(TIER_ORDER), kv[0]))
    if facet == "year":
        return sorted(values.items(), key=lambda kv: kv[0], reverse=True)
    return list(values.items())


def facets_view(q: str, filters: dict[str, str], counts: dict[str, dict[str, int]],
                sort: str = "relevance") -> list[dict[str, Any]]:
    """Each facet value links to the search with that value chosen, or un-chosen if it is."""
    out = []
    for facet in FACETS:
        chosen = filters.get(facet, "")
        values = dict(counts.get(facet, {}))
        if chosen and chosen not in values:
            values[chosen] = 0
        options = []
        for value, n in _ordered(facet, values):
            toggled = {**filters, facet: "" if value == chosen else value}
            options.append({"value": value, "label": facet_label(facet, value), "count": n,
                            "selected": value == chosen,
                            "href": search_url(q, {k: v for k, v in toggled.items() if v},
                                               sort=sort)})
        # The chosen value always shows, even when it would fall behind "Show more".
        shown = [o for i, o in enumerate(options) if i < FACETS_SHOWN or o["selected"]]
        more = [o for i, o in enumerate(options) if i >= FACETS_SHOWN and not o["selected"]]
        out.append({"name": facet, "label": FACET_LABELS.get(facet, facet.title()),
                    "options": shown, "more": more, "chosen": chosen})
    return out


def pagination_view(q: str, filters: dict[str, str], page: int, pages: int,
                    sort: str = "relevance") -> dict[str, Any] | None:
    """Options for the govukPagination macro: neighbours of the current page, with ellipses."""
    if pages <= 1:
        return None
    shown = sorted({1, pages, page - 1, page, page + 1} & set(range(1, pages + 1)))
    items: list[dict[str, Any]] = []
    for i, n in enumerate(shown):
        if i and n - shown[i - 1] > 1:
            items.append({"ellipsis": True})
        items.append({"number": n, "href": search_url(q, filters, n, sort),
                      "current": n == page})
    options: dict[str, Any] = {"items": items}
    if page > 1:
        options["previous"] = {"href": search_url(q, filters, page - 1, sort)}
    if page < pages:
        options["next"] = {"href": search_url(q, filters, page + 1, sort)}
    return options


def _page_number(raw: str) -> int:
    # isdecimal, not isdigit: int() refuses '²'; and over 4,300 digits int() refuses too.
    return max(1, min(int(raw), 10_000)) if raw.isdecimal() and len(raw) < 10 else 1


def snippet(text: str, q: str, width: int = SNIPPET_CHARS) -> Markup:
    """A piece of ``text`` around the first query word it contains, words marked; escaped."""
    words = _words(q)
    text = " ".join(text.split())
    if not words:
        return escape(_cut(text, 0, width))
    pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)),
                         re.IGNORECASE)
    first = pattern.search(text)
    start = 0 if first is None or first.start() < width // 3 else first.start() - width // 3
    piece = _cut(text, start, width)
    out, last = [], 0
    for m in pattern.finditer(piece):
        out.append(escape(piece[last:m.start()]))
        out.append(Markup('<mark class="ndl-mark">{}</mark>').format(m.group(0)))
        last = m.end()
    out.append(escape(piece[last:]))
    return Markup("").join(out)


def _cut(text: str, start: int, width: int) -> str:
    """``width`` characters from ``start``, on word boundaries, with ellipses where cut."""
    if start > 0:
        space = text.rfind(" ", 0, start)
        start = space + 1 if space >= 0 else start
    end = start + width
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    return (("…" if start > 0 else "") + text[start:end].strip()
            + ("…" if end < len(text) else ""))


def _words(q: str) -> list[str]:
    return [w for w in re.findall(r"\w+", q.lower()) if len(w) > 1]


def _matching_columns(ds: Dataset, words: list[str]) -> list[str]:
    """Columns whose name or description holds a query word: why a dataset matched."""
    hits = []
    for col in ds.columns:
        hay = f"{col.get('name', '')} {col.get('description', '')}".replace("_", " ").lower()
        if any(w in hay for w in words):
            hits.append(str(col.get("name", "")))
    return hits[:5]


def result_view(ds: Dataset, q: str) -> dict[str, Any]:
    meta = ds.meta or {}
    description = ds.description or ""
    words = _words(q)
    # Say which columns matched only when the description does not show why it matched.
    in_text = any(w in description.lower() for w in words)
    return {
        **catalogue.summary_json(ds),
        "themes": [THEME_LABELS.get(t, t) for t in meta.get("themes", [])],
        "spatial": meta.get("spatial"),
        "temporal": meta.get("temporal"),
        "snippet": snippet(description, q) if description else None,
        "matching_columns": [] if in_text or not words else _matching_columns(ds, words),
    }


@router.get("/", response_class=HTMLResponse)
def home(request: Request, who: Public) -> HTMLResponse:
    def build(session: Session) -> tuple[str, dict[str, Any]]:
        found = catalogue.counts(session)
        counts = {"datasets": found.datasets, "datasites": found.datasites,
                  "organisations": found.organisations}
        return "home.html", {"counts": counts,
                             "output_checker_note": rules.is_output_checker(who)}

    return _page(request, build)


@router.get("/search", response_class=HTMLResponse)
def search_page(
    request: Request, _: Public, q: str = "", publisher: str = "", tier: str = "",
    theme: str = "", geography: str = "", year: str = "", join_key: str = "",
    sort: str = "relevance", page: str = "1",
) -> HTMLResponse:
    q = q.strip()[:MAX_QUERY_CHARS]
    given = {"publisher": publisher, "tier": tier, "theme": theme, "geography": geography,
             "year": year, "join_key": join_key}
    filters = {k: v.strip()[:MAX_FILTER_CHARS] for k, v in given.items() if v.strip()}
    sort = sort.strip()[:20] or "relevance"
    number = _page_number(page)
    view: dict[str, Any] = {
        "q": q, "filters": filters, "sort": sort, "page": number,
        "sort_options": [{"value": s, "text": SORT_LABELS.get(s, s), "selected": s == sort}
                         for s in SORTS],
        "chosen": [{"facet": FACET_LABELS[k], "value": facet_label(k, v)}
                   for k, v in filters.items()],
        "clear_filters_href": search_url(q, {}, sort=sort) if filters else None,
    }

    def build(session: Session) -> tuple[str, dict[str, Any]]:
        try:
            result = search(session, q or None, filters=dict(filters), sort=sort,
                            limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
        except InvalidInput as exc:
            return "search.html", {**view, "error": exc.message, "total": 0, "results": [],
                                   "facets": facets_view(q, filters, {}, "relevance"),
                                   "pagination": None, "pages": 1, "status": 400}
        pages = max(1, -(-result.total // PAGE_SIZE))
        return "search.html", {
            **view, "total": result.total, "pages": pages,
            "results": [result_view(ds, q) for ds in result.items],
            "facets": facets_view(q, filters, result.facets, sort),
            "pagination": pagination_view(q, filters, number, pages, sort),
        }

    return _page(request, build)


@router.get("/datasets/{site}/{name}", response_class=HTMLResponse)
def dataset_page(request: Request, site: str, name: str, who: Public) -> HTMLResponse:
    base = str(request.base_url).rstrip("/")

    def build(session: Session) -> tuple[str, dict[str, Any]]:
        return "dataset.html", dataset_context(session, f"{site}/{name}", who, base)

    return _page(request, build)

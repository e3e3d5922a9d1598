"""The public register and the time-to-access measure, as pages anyone can read.

The register page reads the same hash-chained entries as ``GET /api/register`` (newest
first, filtered by kind and subject) and says how to check them with ``ndl verify``. The
time-to-access page shows ``ndl.access.requests.time_to_access``: the library's headline
measure, how long people wait for data.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ndl.access import requests as access
from ndl.access.models import Org
from ndl.ledger import register
from ndl.ledger.models import LedgerEntry
from ndl.web.dataset_view import links_for
from ndl.web.forms import Who, show

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE = 100_000
SUMMARY_CHARS = 160
TIER_LABELS = {"open": "Open", "safeguarded": "Safeguarded", "controlled": "Controlled"}


# --- the register ---------------------------------------------------------------------------

def _entries(s: Session, kind: str, subject: str, page: int) -> tuple[int, list[LedgerEntry]]:
    """One page of entries, newest first. ``ndl.ledger.register.list_entries`` walks forwards
    from a sequence number for verifiers, and has no subject filter, so the page asks here."""
    stmt = select(LedgerEntry)
    if kind:
        stmt = stmt.where(LedgerEntry.kind == kind)
    if subject:
        stmt = stmt.where(LedgerEntry.subject.contains(subject, autoescape=True))
    total = int(s.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = s.scalars(stmt.order_by(LedgerEntry.seq.desc())
                     .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))
    return total, list(rows)


def payload_summary(payload: dict[str, Any]) -> str:
    """``key: value; key: value``, cut to a line: the full payload is in the JSON feed."""
    parts = []
    for key, val in payload.items():
        text = val if isinstance(val, str) else json.dumps(val, ensure_ascii=False)
        parts.append(f"{key}: {text}")
    out = "; ".join(parts)
    return out if len(out) <= SUMMARY_CHARS else out[:SUMMARY_CHARS - 1].rstrip() + "…"


def subject_href(subject: str) -> str | None:
    """Where an entry's subject has a page of its own."""
    kind, sep, rest = subject.partition(":")
    if sep and kind == "project" and rest:
        return f"/projects/{quote(rest, safe='')}"
    if sep and kind == "wish" and rest.isdigit():
        return f"/wishlist/{rest}"
    if not sep and subject.count("/") == 1:
        return links_for(subject)["page"]
    return None


def register_url(kind: str, subject: str, page: int = 1) -> str:
    params = {"kind": kind, "subject": subject, "page": str(page) if page > 1 else ""}
    query = urlencode({k: v for k, v in params.items() if v})
    return "/register" + (f"?{query}" if query else "")


def _pagination(kind: str, subject: str, page: int, pages: int) -> dict[str, Any] | None:
    if pages <= 1:
        return None
    shown = sorted({1, pages, page - 1, page, page + 1} & set(range(1, pages + 1)))
    items: list[dict[str, Any]] = []
    for i, n in enumerate(shown):
        if i and n - shown[i - 1] > 1:
            items.append({"ellipsis": True})
        items.append({"number": n, "href": register_url(kind, subject, n),
                      "current": n == page})
    options: dict[str, Any] = {"items": items}
    if page > 1:
        options["previous"] = {"href": register_url(kind, subject, page - 1)}
    if page < pages:
        options["next"] = {"href": register_url(kind, subject, page + 1)}
    return options


@router.get("/register", response_class=HTMLResponse)
def register_page(request: Request, _: Who, kind: str = "", subject: str = "",
                  page: str = "1") -> HTMLResponse:
    kind, subject = kind.strip()[:60], subject.strip()[:200]
    number = max(1, min(int(page), MAX_PAGE)) if page.isdigit() else 1
    base = str(request.base_url).rstrip("/")

    def build(s: Session) -> tuple[str, dict[str, Any]]:
        total, rows = _entries(s, kind, subject, number)
        kinds = list(s.scalars(select(LedgerEntry.kind).distinct().order_by(LedgerEntry.kind)))
        seq, digest = register.head(s)
        pages = max(1, -(-total // PAGE_SIZE))
        return "register.html", {
            "entries": [{**register.entry_json(e), "summary": payload_summary(e.payload),
                         "href": subject_href(e.subject)} for e in rows],
            "total": total, "kind": kind, "subject": subject, "page": number,
            "kinds": [{"value": "", "text": "All kinds"}] + [
                {"value": k, "text": k, "selected": k == kind} for k in kinds],
            "head": {"seq": seq, "hash": digest}, "hub_url": base,
            "feed_href": "/api/register" + (f"?{urlencode({'kind': kind})}" if kind else ""),
            "pagination": _pagination(kind, subject, number, pages),
            "clear_href": "/register" if kind or subject else None,
        }

    return show(request, build)


# --- time to access -------------------------------------------------------------------------

@router.get("/access-times", response_class=HTMLResponse)
def access_times_page(request: Request, _: Who) -> HTMLResponse:
    def build(s: Session) -> tuple[str, dict[str, Any]]:
        measure = access.time_to_access(s)
        names = {o.id: o.name for o in s.scalars(select(Org))}
        return "access_times.html", {
            "overall": measure["overall"], "pending": measure["pending"],
            "rejected": measure["rejected"],
            "by_tier": [{"label": TIER_LABELS.get(k, k), **v}
                        for k, v in sorted(measure["by_tier"].items(), key=lambda kv: (
                            list(TIER_LABELS).index(kv[0]) if kv[0] in TIER_LABELS else 9,
                            kv[0]))],
            "by_org": [{"id": k, "label": names.get(k, k), **v}
                       for k, v in measure["by_org"].items()],
        }

    return show(request, build)

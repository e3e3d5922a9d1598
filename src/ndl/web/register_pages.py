"""The public register and the time-to-access measure, as pages anyone can read.

The register page reads the same hash-chained entries as ``GET /api/register`` (newest
first, filtered by kind and subject) and says how to check them with ``ndl verify``. The
time-to-access page shows :func:`ndl.access.service.access_times`: the library's headline
measure, how long people wait for data.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from ndl.access import service as access_service
from ndl.core.tiers import TIER_NAMES, TIERS
from ndl.ledger import register
from ndl.ledger.sentences import sentence
from ndl.web.dataset_view import links_for
from ndl.web.forms import Who, show

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE = 100_000
SUMMARY_CHARS = 160


# --- the register ---------------------------------------------------------------------------

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


def code_href(payload: dict[str, Any]) -> str | None:
    """The code a job's entry names (by hash): public once a job running it was approved."""
    sha = payload.get("code_sha256")
    if isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
        return f"/jobs/code/{sha}"
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
    number = max(1, min(int(page), MAX_PAGE)) if page.isdecimal() and len(page) < 10 else 1
    base = str(request.base_url).rstrip("/")

    def build(s: Session) -> tuple[str, dict[str, Any]]:
        found = register.newest_first(s, kind=kind, subject=subject,
                                      offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        total, rows, kinds = found.total, found.entries, register.kinds(s)
        seq, digest = register.head(s)
        pages = max(1, -(-total // PAGE_SIZE))
        return "register.html", {
            "entries": [{**register.entry_json(e), "summary": payload_summary(e.payload),
                         "sentence": sentence(e.kind, e.actor, e.subject, e.payload),
                         "json": json.dumps(register.entry_json(e), indent=2,
                                            ensure_ascii=False),
                         "href": subject_href(e.subject),
                         "code_href": code_href(e.payload)} for e in rows],
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
        times = access_service.access_times(s)
        measure, names = times.measure, times.org_names
        return "access_times.html", {
            "overall": measure["overall"], "pending": measure["pending"],
            "rejected": measure["rejected"],
            "by_tier": [{"label": TIERS[k].title if k in TIERS else k, **v}
                        for k, v in sorted(measure["by_tier"].items(), key=lambda kv: (
                            TIER_NAMES.index(kv[0]) if kv[0] in TIER_NAMES else 9, kv[0]))],
            "by_org": [{"id": k, "label": names.get(k, k), **v}
                       for k, v in measure["by_org"].items()],
        }

    return show(request, build)

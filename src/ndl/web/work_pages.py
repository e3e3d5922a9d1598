"""Long work in the browser: the "download the whole dataset" button and the work page.

The button on an open dataset's page posts to ``/datasets/{site}/{name}/export``, which
queues an export through :mod:`ndl.work.service` (the module behind ``POST /api/work``) and
sends the browser to ``/work/{id}``. That page shows the item's state, a progress bar and
the datasite's message, and follows ``/api/work/{id}/events`` with ``static/work.js``
(EventSource; without JavaScript the page refreshes itself every 2 seconds while the work is
not final). It offers a cancel button while the work runs and a download link once it
succeeded.

Anyone may export open data. Work started without signing in belongs to nobody: it is
reached by its unguessable id alone, so the page says plainly to keep the link. Forms carry
the session's CSRF token, or before sign-in the ``ndl_csrf`` pre-session token the sign-in
form uses (a first-time visitor without one gets a short confirmation page that sets it).
A signed-in browser's post counts only with its session's token, so another site cannot
start or cancel work as the user.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ndl.access.accounts import Principal
from ndl.core.errors import NdlError
from ndl.hub.deps import hub
from ndl.hub.login_limits import request_source
from ndl.web.dataset_view import links_for
from ndl.web.forms import Who, crash_page, error_page, see_other, value
from ndl.web.render import pages_of
from ndl.web.session import (
    CSRF_FIELD,
    PRE_COOKIE,
    _cookie_flags,
    csrf_ok,
    csrf_token,
    forbidden,
    secret_of,
    web_of,
)
from ndl.work import service
from ndl.work.views import Work

router = APIRouter(include_in_schema=False)

FORMATS = {"parquet": "Parquet", "csv": "CSV"}
STATE_LABELS = {
    "queued": "Waiting for the datasite", "leased": "Starting", "running": "Running",
    "succeeded": "Ready to download", "failed": "Failed", "cancelled": "Cancelled",
    "expired": "Expired",
}
STATE_TAGS = {"succeeded": "govuk-tag--green", "failed": "govuk-tag--red",
              "cancelled": "govuk-tag--grey", "expired": "govuk-tag--grey",
              "running": "govuk-tag--blue"}
LIVE_SCRIPT = "work.js"
REFRESH_SECONDS = 2


def _no_store(response: Response) -> Response:
    # The page's address is the only key to an anonymous item: keep it out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _with_pre_token(request: Request, context: dict[str, Any]) -> tuple[dict[str, Any],
                                                                       str | None]:
    """The context with a CSRF token for the page's forms, and a new pre-session cookie
    value if the browser has neither a session nor one (the sign-in form's rule)."""
    token = web_of(request).csrf_token
    if token is not None:
        return context, None
    pre = secrets.token_urlsafe(32)
    return {**context, "csrf_token": csrf_token(secret_of(request).key(), "pre", pre)}, pre


def _render(request: Request, template: str, context: dict[str, Any],
            status: int = 200) -> Response:
    context, pre = _with_pre_token(request, context)
    response = pages_of(request).render(request, template, context, status=status)
    if pre is not None:
        response.set_cookie(PRE_COOKIE, pre, **_cookie_flags(hub(request)))
    return _no_store(response)


async def _sender(request: Request, who: Principal | None
                  ) -> tuple[FormData, Principal | None] | Response | None:
    """Who a form post acts for: the signed-in user (with the session's token), or nobody
    (with a pre-session token). None: a signed-out post without a token, to be confirmed."""
    web = web_of(request)
    form = await request.form()
    given = form.get(CSRF_FIELD)
    token = given if isinstance(given, str) else None
    key = secret_of(request).key()
    if web.user is not None:
        # The form acts for the browser's session, never an Authorization header beside it.
        if who is None or who.user_id != web.user.user_id or not csrf_ok(
                key, "session", web.raw_token, token):
            return forbidden(request)
        return form, who
    if csrf_ok(key, "pre", web.pre, token):
        return form, None
    return None


# --- starting an export ---------------------------------------------------------------------

@router.post("/datasets/{site}/{name}/export", response_class=HTMLResponse)
async def start_export(request: Request, site: str, name: str, who: Who) -> Response:
    dataset_id = f"{site}/{name}"[:200]
    sent = await _sender(request, who)
    if isinstance(sent, Response):
        return sent
    if sent is None:  # a first visit without a token: ask once, with one set
        form = await request.form()
        fmt = value(form, "format", 20)
        return _render(request, "work_confirm.html", {
            "dataset_id": dataset_id, "links": links_for(dataset_id),
            "format": fmt if fmt in FORMATS else "parquet", "formats": FORMATS})
    form, actor = sent
    fmt = value(form, "format", 20) or "parquet"
    state = hub(request)
    try:
        view = await service.submit(
            state, actor, kind="export", dataset_id=dataset_id, params={"format": fmt},
            source=request_source(request, state.settings.trusted_proxies))
    except NdlError as exc:
        return error_page(request, exc)
    except Exception:
        return crash_page(request)
    return see_other(f"/work/{view.id}")


# --- the work page --------------------------------------------------------------------------

def _size(n: int) -> str:
    if n < 1000:
        return f"{n:,} bytes"
    for unit, size in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < size * 1000:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e12:.1f} TB"


def work_context(view: Work, *, signed_in: bool, live: bool) -> dict[str, Any]:
    """What work.html shows for one item (pure: tested without a hub)."""
    percent = max(0, min(100, round(view.progress * 100)))
    result = view.result
    return {
        "work": view, "final": view.final, "percent": percent,
        "state_label": STATE_LABELS.get(view.state, view.state),
        "state_tag": STATE_TAGS.get(view.state, ""),
        "dataset_links": links_for(view.dataset),
        "events_url": f"/api/work/{view.id}/events",
        "result_url": f"/api/work/{view.id}/result",
        "result": None if result is None else {
            "filename": result.filename, "size": _size(result.size), "rows": result.rows,
            "sha256": result.sha256,
            "format": "CSV" if result.filename.endswith(".csv") else "Parquet"},
        "error": (view.error or {}).get("message") if view.state == "failed" else None,
        "anonymous": not signed_in,
        "live": live and not view.final,
        "refresh": None if view.final or live else REFRESH_SECONDS,
        "noscript_refresh": REFRESH_SECONDS if live and not view.final else None,
    }


def _live_script(request: Request) -> bool:
    """True when the page's script was built into /static (else the page refreshes)."""
    static = getattr(request.app.state, "ndl_static_dir", None)
    return static is not None and (Path(static) / LIVE_SCRIPT).is_file()


@router.get("/work/{work_id}", response_class=HTMLResponse)
async def work_page(request: Request, work_id: str, who: Who) -> Response:
    state = hub(request)
    try:
        view = await run_in_threadpool(service.get, state, who, work_id[:64])
    except NdlError as exc:
        return _no_store(error_page(request, exc))
    except Exception:
        return crash_page(request)
    return _render(request, "work.html", work_context(
        view, signed_in=web_of(request).user is not None, live=_live_script(request)))


@router.post("/work/{work_id}/cancel", response_class=HTMLResponse)
async def cancel_work(request: Request, work_id: str, who: Who) -> Response:
    sent = await _sender(request, who)
    if sent is None or isinstance(sent, Response):
        return sent if isinstance(sent, Response) else forbidden(request)
    _, actor = sent
    try:
        await run_in_threadpool(service.cancel, hub(request), actor, work_id[:64])
    except NdlError as exc:
        return _no_store(error_page(request, exc))
    except Exception:
        return crash_page(request)
    return see_other(f"/work/{work_id}")

"""What the signed-in pages share: who is signed in, checked form posts, and errors as pages.

The projects, stewards and wishlist pages all depend on ``ndl.hub.deps.public`` and look at
the signed-in user themselves, so an anonymous visitor is sent to sign in (and back) rather
than shown a JSON 401. A form post counts only if it carries the CSRF token of the session
that signed it in: :class:`ndl.web.session.SessionMiddleware` hides the session from a post
without one, and :func:`posted` checks the token once more against the form itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ndl.access.accounts import Principal
from ndl.core.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NdlError,
    NotFound,
    PermissionDenied,
)
from ndl.hub.deps import hub, public
from ndl.web.render import long_date, pages_of
from ndl.web.session import CSRF_FIELD, csrf_ok, forbidden, safe_next, secret_of, web_of

log = logging.getLogger("ndl.web")

Who = Annotated[Principal | None, Depends(public)]
Build = Callable[[Session], tuple[str, dict[str, Any]]]

MAX_FIELD_CHARS = 5000
MAX_SHORT_CHARS = 300


# --- who is signed in -----------------------------------------------------------------------

def sign_in_redirect(request: Request, back: str | None = None) -> RedirectResponse:
    """To the sign-in page, coming back to ``back`` (default: this page) afterwards."""
    if back is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/sign-in?" + urlencode({"next": safe_next(back)}),
                            status_code=303)


def see_other(url: str) -> RedirectResponse:
    """After a post that changed something: the browser fetches ``url`` with a GET."""
    return RedirectResponse(url, status_code=303)


def signed_in_roles(request: Request) -> frozenset[str]:
    """The signed-in user's roles, for the header navigation (empty when signed out)."""
    user = web_of(request).user
    return user.roles if user is not None else frozenset()


# --- form posts -----------------------------------------------------------------------------

async def posted(request: Request, who: Principal | None,
                 back: str) -> tuple[FormData, Principal] | Response:
    """The form and its sender, or the response to give instead.

    Signed out: sign in and come back to ``back``. Signed in but the token is missing or not
    this session's (another site's post, or an old tab): the "form has expired" page.
    """
    web = web_of(request)
    if web.user is None:
        return sign_in_redirect(request, back)
    form = await request.form()
    given = form.get(CSRF_FIELD)
    # ``who`` must be the cookie's user: a form acts for the browser's session, never for an
    # Authorization header that came along with it.
    if who is None or who.user_id != web.user.user_id or not csrf_ok(
            secret_of(request).key(), "session", web.raw_token,
            given if isinstance(given, str) else None):
        return forbidden(request)
    return form, who


def value(form: FormData, name: str, limit: int = MAX_SHORT_CHARS) -> str:
    got = form.get(name)
    return got.strip()[:limit] if isinstance(got, str) else ""


def values(form: FormData, name: str, limit: int = 50) -> list[str]:
    """Every value of a repeated field (checkboxes), first ``limit`` only, no blanks."""
    out = [v.strip()[:MAX_SHORT_CHARS] for v in form.getlist(name) if isinstance(v, str)]
    return list(dict.fromkeys(v for v in out if v))[:limit]


# --- errors ---------------------------------------------------------------------------------

def sentence(text: str) -> str:
    """Service messages start in lower case; GOV.UK error messages start with a capital."""
    return text[:1].upper() + text[1:] if text else text


def field_errors(exc: NdlError, fields: Iterable[str], default: str) -> dict[str, str]:
    """``{field: message}`` from an error's ``detail`` (a list of ``{field, problem}``), or
    from a ``"field: problem"`` message; anything else goes on ``default``."""
    known = set(fields)
    out: dict[str, str] = {}
    detail = exc.detail if isinstance(exc.detail, list) else []
    for d in detail:
        if isinstance(d, dict) and d.get("field") in known and d["field"] not in out:
            out[str(d["field"])] = sentence(str(d.get("problem", "")))
    if not out:
        head, sep, rest = exc.message.partition(": ")
        if sep and head in known:
            out[head] = sentence(rest)
        else:
            out[default] = sentence(exc.message)
    return out


def error_list(errors: dict[str, str], ids: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Items for govukErrorSummary, each linking to its field (``ids`` maps odd field ids)."""
    ids = ids or {}
    return [{"text": message, "href": "#" + ids.get(field, field)}
            for field, message in errors.items() if message]


def error_page(request: Request, exc: NdlError) -> HTMLResponse:
    """An error from a service, as a page: what happened and what to do."""
    pages = pages_of(request)
    if isinstance(exc, NotFound):
        return pages.error(request, 404, "Page not found", sentence(exc.message) + ".")
    if isinstance(exc, PermissionDenied):
        return pages.error(request, 403, "You cannot do this", sentence(exc.message) + ".")
    if isinstance(exc, Conflict):
        return pages.error(request, 409, "This has changed", sentence(exc.message) + ".")
    if isinstance(exc, InvalidInput):
        return pages.error(request, 422, "There is a problem", sentence(exc.message) + ".")
    if isinstance(exc, AuthenticationRequired):
        return pages.error(request, 401, "Sign in", sentence(exc.message) + ".")
    log.error("error on %s: %s", request.url.path, exc.message)
    return pages.error(request, exc.http_status, "Sorry, there is a problem with the service",
                       sentence(exc.message) + ".")


def crash_page(request: Request) -> HTMLResponse:
    log.exception("error rendering %s", request.url.path)
    return pages_of(request).error(
        request, 500, "Sorry, there is a problem with the service",
        "Try again later. Nothing was changed. The hub log has the details.")


def show(request: Request, build: Build) -> HTMLResponse:
    """Run ``build`` in a read session and render what it returns; errors become pages.

    A context may carry ``status`` (e.g. 422 for a form with errors).
    """
    try:
        with hub(request).db.read() as session:
            template, context = build(session)
            status = int(context.pop("status", 200))
            return pages_of(request).render(request, template, context, status=status)
    except NdlError as exc:
        return error_page(request, exc)
    except Exception:
        return crash_page(request)


async def ashow(request: Request, build: Build) -> HTMLResponse:
    """:func:`show` from an async route, off the event loop."""
    return await run_in_threadpool(show, request, build)


# --- formatting -----------------------------------------------------------------------------

def duration(hours: float | None) -> str:
    """A wait in the unit a person would use: seconds, minutes, hours or days."""
    if hours is None:
        return "no decisions yet"
    seconds = hours * 3600
    if seconds < 1:
        return "under a second"
    if seconds < 59.5:
        whole = round(seconds)
        return f"{whole} second{'s' if whole != 1 else ''}"
    if seconds < 90 * 60:
        whole = round(seconds / 60)
        return f"{whole} minute{'s' if whole != 1 else ''}"
    if hours < 48:
        return f"{round(hours, 1):g} hours"
    return f"{round(hours / 24, 1):g} days"


def date_time(value: datetime | str | None) -> str:
    """25 November 2026 at 08:01 UTC. Takes the ISO strings the services return too."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        when = value
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return f"{long_date(when)} at {when:%H:%M} UTC"


def install(env: Environment) -> None:
    """The filters and globals these pages' templates use (``mount`` calls this)."""
    env.filters["duration"] = duration
    env.filters["date_time"] = date_time
    env.globals["signed_in_roles"] = signed_in_roles

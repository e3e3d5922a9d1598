"""Signing in to the web pages, and keeping cookies from being used by other sites.

Security decisions, each for a reason:

* The session cookie ``ndl_session`` holds an ordinary API token issued for 12 hours (and
  revoked on sign-out), so the web pages and the JSON API check sessions the same way. It is
  ``HttpOnly`` (page scripts cannot read it), ``SameSite=Lax`` (other sites' sub-requests and
  form posts do not carry it), ``Path=/`` and ``Secure`` unless the operator turned that off
  for plain-HTTP development (``ndl hub --insecure-cookies``).
* :class:`SessionMiddleware` lets the API see the cookie (``request.state.session_token``,
  which ``ndl.hub.deps`` falls back to) only for GET/HEAD requests, or for other requests that
  carry a valid CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``). A post from
  another site that rides the cookie is therefore anonymous, whatever the browser sends.
* CSRF tokens are HMAC-SHA256, keyed by a per-hub secret (``<data_dir>/web-secret``, mode
  0600), over the session token, or before sign-in over a random ``ndl_csrf`` cookie (so a
  site cannot sign a victim in to the attacker's account either). Nothing is stored per form.
* A cookie whose token no longer works (expired, revoked) is ignored and cleared, so an old
  cookie never locks anyone out of the public pages.
* A suspended user's cookie (``ndl.access.accounts.require_user_standing``) is answered at
  once with a page (or, under ``/api/``, a JSON error) saying so, and the cookie is cleared.
* Sign-in shares the API's login limiter (``ndl.hub.login_limits``): failures slow down one
  (account, address) pair, so nobody can lock another person out from elsewhere.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ndl.access import accounts
from ndl.access.accounts import Principal
from ndl.core.errors import (
    AuthenticationRequired,
    InternalError,
    PermissionDenied,
    RateLimited,
    Suspended,
)
from ndl.core.keys import open_secret, seal_secret
from ndl.hub.deps import hub, public
from ndl.hub.login_limits import request_source
from ndl.hub.state import HubState
from ndl.ledger import security_log
from ndl.web.render import pages_of

log = logging.getLogger("ndl.web")

router = APIRouter(include_in_schema=False)
Public = Annotated[Principal | None, Depends(public)]

COOKIE = "ndl_session"
PRE_COOKIE = "ndl_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = timedelta(hours=12)
SECRET_FILE = "web-secret"  # noqa: S105 - a file name, not a secret
SAFE_METHODS = frozenset({"GET", "HEAD"})
# Forms are a few fields; a bigger url-encoded body is not one of ours and is not parsed.
MAX_FORM_BYTES = 64_000
MAX_TOKEN_CHARS = 200
UNSESSIONED_PREFIXES = ("/static/", "/healthz")
MAX_USERNAME_CHARS = 64
MAX_PASSWORD_CHARS = 1000


# --- the per-hub secret and CSRF tokens ----------------------------------------------------

def load_or_create_secret(path: Path) -> bytes:
    """The hub's web secret, made (mode 0600) the first time it is needed.

    Written to a temporary file and hard-linked into place, so a second hub process starting
    at the same moment either makes the file or reads a complete one.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            # Encrypted under NDL_KEY_PASSPHRASE when one is set (ndl.core.keys).
            f.write(seal_secret(secrets.token_bytes(32)) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its secret
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    raw = path.read_text("ascii").strip()
    try:
        key = open_secret(raw, path)  # KeyLocked: encrypted, and no or the wrong passphrase
    except ValueError:
        key = b""
    if len(key) < 32:
        raise InternalError(
            f"{path} is not a web secret (64 hex digits); delete it and restart the hub to "
            "make a new one (everyone will need to sign in again)")
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users; restrict it with: chmod 600 %s", path, path)
    return key


class WebSecret:
    """The secret for one hub, read or made on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def key(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = load_or_create_secret(self.path)
        return self._key


def csrf_token(key: bytes, kind: str, value: str) -> str:
    """The form token for a session (``kind="session"``) or a pre-session cookie (``"pre"``)."""
    mac = hmac.new(key, f"ndl-web-csrf\x00{kind}\x00{value}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def csrf_ok(key: bytes, kind: str, value: str | None, given: str | None) -> bool:
    if not value or not given:
        return False
    # Bytes: compare_digest refuses str with non-ASCII characters, and a forger may send any.
    return hmac.compare_digest(csrf_token(key, kind, value).encode(), given.encode("utf-8"))


# --- what the cookies say about a request -----------------------------------------------

@dataclass(frozen=True)
class WebSession:
    """Set on every request as ``request.state.web`` by :class:`SessionMiddleware`.

    ``user`` is who the session cookie signs in (None if nobody, or the token no longer
    works); ``csrf_token`` is what this request's forms must carry back.
    """

    user: Principal | None = None
    raw_token: str | None = None
    pre: str | None = None
    csrf_token: str | None = None


def web_of(request: Request) -> WebSession:
    web = getattr(request.state, "web", None)
    return web if isinstance(web, WebSession) else WebSession()


def secret_of(request: Request) -> WebSecret:
    secret: WebSecret = request.app.state.ndl_web_secret
    return secret


def _cookie_flags(state: HubState) -> dict[str, Any]:
    return {"path": "/", "httponly": True, "samesite": "lax",
            "secure": state.settings.secure_cookies}


def _clear_cookie_header(state: HubState) -> bytes:
    response = Response()
    response.delete_cookie(COOKIE, **_cookie_flags(state))
    return response.headers["set-cookie"].encode("latin-1")


class SessionMiddleware:
    """Reads the session cookie; hands its token to the API only when that is safe."""

    def __init__(self, app: ASGIApp, *, state: HubState, secret: WebSecret) -> None:
        self.app, self.state, self.secret = app, state, secret

    def _lookup(self, token: str) -> tuple[Principal | None, bool]:
        """Who the token signs in, and whether a None is certain (so the cookie can go).

        A suspended user's session raises :class:`Suspended` (the caller answers it)."""
        try:
            with self.state.db.read() as s:
                return accounts.authenticate_token(s, token), True
        except Suspended:
            raise
        except AuthenticationRequired:
            return None, True
        except Exception:
            # The database is unreachable: serve the request signed out, but keep the cookie.
            log.exception("could not check a session cookie")
            return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Static files need no session: skip the token lookup a page's assets would repeat.
        if scope["type"] != "http" or scope["path"].startswith(UNSESSIONED_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = cookie_parser(headers.get("cookie", ""))
        raw = cookies.get(COOKIE) or None
        pre = cookies.get(PRE_COOKIE) or None
        if pre is not None and len(pre) > MAX_TOKEN_CHARS:
            pre = None
        user, certain = None, True
        if raw is not None and len(raw) <= MAX_TOKEN_CHARS:
            try:
                user, certain = await run_in_threadpool(self._lookup, raw)
            except Suspended as exc:
                # Refused at once, saying why, and the session is over (the cookie goes).
                await self._suspended(scope, receive, send, exc)
                return
        web = WebSession(user=user, raw_token=raw, pre=pre)
        if user is not None and raw is not None:
            web = replace(web, csrf_token=csrf_token(self.secret.key(), "session", raw))
        elif pre is not None:
            web = replace(web, csrf_token=csrf_token(self.secret.key(), "pre", pre))
        state = scope.setdefault("state", {})
        state["web"] = web
        if user is not None and raw is not None:
            if scope["method"] in SAFE_METHODS:
                state["session_token"] = raw
            else:
                given, receive = await _given_csrf(headers, receive)
                if csrf_ok(self.secret.key(), "session", raw, given):
                    state["session_token"] = raw
        if raw is not None and user is None and certain:
            send = _appending_header(send, b"set-cookie", _clear_cookie_header(self.state))
        await self.app(scope, receive, send)


    async def _suspended(self, scope: Scope, receive: Receive, send: Send,
                         exc: Suspended) -> None:
        scope.setdefault("state", {})["web"] = WebSession()
        request = Request(scope, receive)
        response: Response
        if scope["path"].startswith("/api/"):
            response = JSONResponse(exc.to_json(), status_code=exc.http_status)
        else:
            response = pages_of(request).error(request, exc.http_status,
                                               "Your account is suspended", exc.message)
        response.delete_cookie(COOKIE, **_cookie_flags(self.state))
        await response(scope, receive, send)


async def _given_csrf(headers: dict[str, str], receive: Receive) -> tuple[str | None, Receive]:
    """The CSRF token a request carries: its header, or the field of a url-encoded form.

    A form body is read here and handed on unchanged, so the route can read it again.
    """
    if headers.get(CSRF_HEADER):
        return headers[CSRF_HEADER], receive
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    declared = headers.get("content-length", "")
    if ctype != "application/x-www-form-urlencoded" or (
            declared.isdigit() and int(declared) > MAX_FORM_BYTES):
        return None, receive
    chunks, size, more = [], 0, True
    messages: list[Message] = []
    while more:
        msg = await receive()
        messages.append(msg)
        if msg["type"] != "http.request":
            break
        chunks.append(msg.get("body", b""))
        size += len(chunks[-1])
        more = bool(msg.get("more_body", False))
        if size > MAX_FORM_BYTES:
            break
    body = b"".join(chunks)
    given = None
    if not more and size <= MAX_FORM_BYTES:
        try:
            values = parse_qs(body.decode("latin-1"), max_num_fields=100).get(CSRF_FIELD)
        except ValueError:  # more fields than any form of ours has
            values = None
        given = values[0] if values else None

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return given, replay


def _appending_header(send: Send, name: bytes, value: bytes) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (name, value)]}
        await send(message)

    return wrapped


# --- the sign-in and sign-out pages ---------------------------------------------------------

def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another site."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or any(ord(c) < 32 for c in target)):
        return "/"
    return target[:2000]


def _form_value(form: Any, name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def forbidden(request: Request) -> HTMLResponse:
    return pages_of(request).error(
        request, 403, "This form has expired",
        "The form was not sent from this site, or it is out of date. Go back, reload the page "
        "and try again. Nothing was changed.",
    )


def _form_csrf_valid(request: Request, form: Any) -> bool:
    """A form post is ours if its token matches the session cookie or the pre-session cookie.

    The session cookie counts even if its token has expired, so signing out still works.
    """
    web, key = web_of(request), secret_of(request).key()
    given = _form_value(form, CSRF_FIELD, MAX_TOKEN_CHARS)
    return (csrf_ok(key, "session", web.raw_token, given)
            or csrf_ok(key, "pre", web.pre, given))


def _sign_in_page(request: Request, *, next_url: str, username: str = "",
                  errors: dict[str, str] | None = None, status: int = 200,
                  signed_out: bool = False) -> HTMLResponse:
    """The form, with a pre-session cookie for its CSRF token if the browser has none yet."""
    web = web_of(request)
    state = hub(request)
    new_pre = None
    token = web.csrf_token
    if token is None:
        new_pre = secrets.token_urlsafe(32)
        token = csrf_token(secret_of(request).key(), "pre", new_pre)
    response = pages_of(request).render(request, "sign_in.html", {
        "csrf_token": token, "next_url": next_url, "username": username,
        "errors": errors or {}, "signed_out": signed_out,
        # "Sign in with <provider>" buttons, set by ndl.web.oidc_pages when any is configured.
        "oidc_providers": getattr(request.app.state, "ndl_sign_in_buttons", []),
        "password_sign_in": state.settings.password_sign_in,
        "error_list": [{"text": message, "href": f"#{field}"}
                       for field, message in (errors or {}).items() if message],
    }, status=status)
    if new_pre is not None:
        response.set_cookie(PRE_COOKIE, new_pre, **_cookie_flags(state))
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, _: Public,
                 next_url: Annotated[str, Query(alias="next")] = "/",
                 signed_out: str = "") -> HTMLResponse:
    return _sign_in_page(request, next_url=safe_next(next_url), signed_out=bool(signed_out))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, _: Public) -> Response:
    form = await request.form()
    if not _form_csrf_valid(request, form):
        return forbidden(request)
    state = hub(request)
    next_url = safe_next(_form_value(form, "next", 2000))
    username = _form_value(form, "username", MAX_USERNAME_CHARS).strip().lower()
    password = _form_value(form, "password", MAX_PASSWORD_CHARS)
    errors = {}
    if not username:
        errors["username"] = "Enter your username"
    if not password:
        errors["password"] = "Enter your password"  # noqa: S105 - a message
    if errors:
        return _sign_in_page(request, next_url=next_url, username=username, errors=errors,
                             status=400)
    source = request_source(request, state.settings.trusted_proxies)
    try:
        # The counts are in the database (shared by hub processes): not on the event loop.
        await run_in_threadpool(state.limiter.check, username, source)
    except RateLimited as exc:
        await run_in_threadpool(functools.partial(
            security_log.sign_in_refused, state.db, "auth.lockout", account=username,
            source=source, via="web"))
        paused = pages_of(request).error(
            request, 429, "Too many sign-in attempts",
            f"There have been too many failed attempts to sign in from here, so signing in "
            f"is paused: {exc.message}.")
        wait = exc.detail.get("retry_after") if isinstance(exc.detail, dict) else None
        paused.headers["Retry-After"] = str(wait or int(state.settings.login_window_seconds))
        return paused

    def check() -> str:
        with state.db.write() as s:
            # A browser session's token lasts 12 hours, not the CLI's week.
            user, token = accounts.login(s, username, password, name="web", ttl=SESSION_TTL,
                                         passwords=state.settings.password_sign_in)
            security_log.record(s, "auth.sign_in", actor=f"user:{user.username}",
                                subject="sign-in", source=source, org=user.org_id,
                                details={"via": "web"})
            return token

    try:
        token = await run_in_threadpool(check)
    except Suspended as exc:  # the password was right; the account may not be used
        await run_in_threadpool(state.limiter.succeeded, username, source)
        return pages_of(request).error(request, 403, "Your account is suspended",
                                       exc.message)
    except PermissionDenied as exc:  # this hub takes no passwords (--no-password-sign-in)
        return pages_of(request).error(request, 403, "Sign in through your organisation",
                                       exc.message)
    except AuthenticationRequired:
        await run_in_threadpool(state.limiter.failed, username, source)
        await run_in_threadpool(functools.partial(
            security_log.sign_in_refused, state.db, "auth.sign_in_failed", account=username,
            source=source, via="web"))
        return _sign_in_page(request, next_url=next_url, username=username, status=401,
                             errors={"username": "Enter a correct username and password",
                                     "password": ""})
    await run_in_threadpool(state.limiter.succeeded, username, source)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL.total_seconds()),
                        **_cookie_flags(state))
    response.delete_cookie(PRE_COOKIE, **_cookie_flags(state))
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request, _: Public) -> Response:
    form = await request.form()
    if not _form_csrf_valid(request, form):
        return forbidden(request)
    state = hub(request)
    raw = web_of(request).raw_token
    signed_in = web_of(request).user
    web_user = f"user:{signed_in.username}" if signed_in else "unknown-session"
    if raw:
        def revoke() -> None:
            with state.db.write() as s:
                accounts.revoke_token(s, raw)
                security_log.record(s, "auth.sign_out", actor=web_user, subject="sign-out",
                                    details={"via": "web"})

        await run_in_threadpool(revoke)
    response = RedirectResponse("/sign-in?" + urlencode({"signed_out": "1"}), status_code=303)
    response.delete_cookie(COOKIE, **_cookie_flags(state))
    return response

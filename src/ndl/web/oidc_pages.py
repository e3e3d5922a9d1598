"""Sign in with an organisation's identity provider: the two browser legs of the OIDC flow.

``GET /sign-in/oidc/{provider}`` starts a flow (:meth:`ndl.access.oidc.ProviderClient.begin`)
and sends the browser to the provider; the provider sends it back to
``GET /sign-in/oidc/{provider}/callback`` with a code, which is exchanged and its ID token
verified. What must match on the way back (state, nonce, PKCE verifier, where to go next)
rides in a cookie that is HMAC-signed with the hub's web secret, lasts ten minutes, is bound
to its provider, and is cleared by the callback whatever happens, so a flow finishes once.

A sign-in the provider made without the factors the hub's policy requires is refused with a
page saying so. The session is the same 12-hour token cookie as a password sign-in.

Someone who signs in only through a provider has no password for ``ndl login``:
``/account/cli-token`` mints them a token (a form post from their session) to give
``ndl login --with-token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ndl.access import accounts
from ndl.access.accounts import Principal
from ndl.access.identities import account_for
from ndl.access.oidc import Flow, OidcSettings, ProviderClient, load_config
from ndl.core.errors import NdlError, Suspended
from ndl.hub.deps import hub, public
from ndl.hub.login_limits import request_source
from ndl.hub.state import HubState
from ndl.ledger import security_log
from ndl.web.forms import error_page, posted, sign_in_redirect
from ndl.web.render import pages_of
from ndl.web.session import (
    COOKIE,
    PRE_COOKIE,
    SESSION_TTL,
    _cookie_flags,
    safe_next,
    secret_of,
    web_of,
)

log = logging.getLogger("ndl.web")
router = APIRouter(include_in_schema=False)
Public = Annotated[Principal | None, Depends(public)]
ProviderName = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]
FLOW_COOKIE = "ndl_oidc"
FLOW_TTL = 600
MAX_FLOW_COOKIE = 2000


class OidcProviders:
    """The configured providers and one cached client for each (on ``app.state``)."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self.clients = {p.name: ProviderClient(p) for p in settings.providers}

    def client(self, name: str) -> ProviderClient:
        self.settings.get(name)  # the clear error for an unknown name
        return self.clients[name]


def install(app_state: object, state: HubState) -> None:
    """Read ``--oidc-config`` (checked already by ``ndl hub``) into ``app.state``."""
    import os

    path = state.settings.oidc_config
    settings = load_config(path, os.environ) if path else OidcSettings()
    app_state.ndl_oidc = OidcProviders(settings)  # type: ignore[attr-defined]
    # What the sign-in page (ndl.web.session) shows: one button per provider.
    app_state.ndl_sign_in_buttons = [  # type: ignore[attr-defined]
        {"name": p.name, "label": p.label} for p in settings.providers]


def providers_of(request: Request) -> OidcProviders:
    found = getattr(request.app.state, "ndl_oidc", None)
    return found if isinstance(found, OidcProviders) else OidcProviders(OidcSettings())


# --- the flow cookie ------------------------------------------------------------------------

def _mac(key: bytes, payload: bytes) -> str:
    mac = hmac.new(key, b"ndl-oidc-flow\x00" + payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _pack(key: bytes, flow: Flow, next_url: str) -> str:
    payload = json.dumps({**asdict(flow), "next": next_url,
                          "exp": int(time.time()) + FLOW_TTL}).encode()
    body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")
    return f"{body}.{_mac(key, payload)}"


def _unpack(key: bytes, raw: str | None) -> tuple[Flow, str] | None:
    if not raw or len(raw) > MAX_FLOW_COOKIE or "." not in raw:
        return None
    body, mac = raw.rsplit(".", 1)
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        return None
    if not hmac.compare_digest(_mac(key, payload).encode(), mac.encode("utf-8")):
        return None
    try:
        data = json.loads(payload)
        if int(data["exp"]) < time.time():
            return None
        return (Flow(str(data["provider"]), str(data["state"]), str(data["nonce"]),
                     str(data["code_verifier"])), safe_next(str(data["next"])))
    except (ValueError, KeyError, TypeError):
        return None


def _callback_url(request: Request, name: str) -> str:
    configured = providers_of(request).client(name).provider.redirect_uri
    return configured or str(request.url_for("oidc_callback", provider=name))


def _refused(request: Request, state: HubState, status: int, title: str,
             message: str) -> HTMLResponse:
    response = pages_of(request).error(request, status, title, message)
    response.delete_cookie(FLOW_COOKIE, **_cookie_flags(state))
    return response


# --- routes ---------------------------------------------------------------------------------

@router.get("/sign-in/oidc/{provider}", response_class=HTMLResponse)
async def oidc_start(request: Request, provider: ProviderName, _: Public,
                     next_url: Annotated[str, Query(alias="next", max_length=2000)] = "/"
                     ) -> Response:
    state = hub(request)
    try:
        client = providers_of(request).client(provider)
        flow, url = await run_in_threadpool(client.begin, _callback_url(request, provider))
    except NdlError as exc:
        return _refused(request, state, exc.http_status, "You cannot sign in this way now",
                        exc.message)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(FLOW_COOKIE, _pack(secret_of(request).key(), flow, safe_next(next_url)),
                        max_age=FLOW_TTL, **_cookie_flags(state))
    return response


@router.get("/sign-in/oidc/{provider}/callback", response_class=HTMLResponse,
            name="oidc_callback")
async def oidc_callback(
    request: Request, provider: ProviderName, _: Public,
    code: Annotated[str, Query(max_length=2000)] = "",
    flow_state: Annotated[str, Query(alias="state", max_length=500)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
    error_description: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    state = hub(request)
    kept = _unpack(secret_of(request).key(), request.cookies.get(FLOW_COOKIE))
    if kept is None or kept[0].provider != provider:
        return _refused(request, state, 400, "Sign-in could not be completed",
                        "This sign-in was not started here, or it took longer than ten "
                        "minutes. Nothing was changed. Start again from the sign-in page.")
    flow, next_url = kept
    # The state ties the provider's answer to the flow this browser started (no CSRF login).
    if not flow_state or not hmac.compare_digest(flow_state.encode("utf-8"),
                                                  flow.state.encode()):
        return _refused(request, state, 400, "Sign-in could not be completed",
                        "The identity provider's answer does not match the sign-in this "
                        "browser started (state). Nothing was changed. Start again.")
    if error or not code:
        return _refused(request, state, 401, "Sign-in was not completed",
                        f"The identity provider said: {(error_description or error or 'no code')}"
                        ". Nothing was changed. Start again from the sign-in page.")
    client = providers_of(request).client(provider)
    signed_in = web_of(request).user
    source = request_source(request, state.settings.trusted_proxies)
    via = f"oidc:{provider}"

    def finish() -> tuple[str | None, str | None]:
        """(session token, None), or (None, why the MFA policy refuses this sign-in)."""
        identity = client.finish(flow, code=code, redirect_uri=_callback_url(request, provider))
        if (short := client.mfa_shortfall(identity)) is not None:
            # Refused before any account is made or linked; the security log keeps the try.
            security_log.record_apart(
                state.db, "auth.sign_in_failed", actor=f"{via}:{identity.subject}"[:200],
                subject="sign-in", source=source, outcome="refused",
                details={"via": via, "why": "mfa required by policy"})
            return None, short
        with state.db.write() as s:
            user = account_for(s, state.key, client.provider, identity, signed_in=signed_in)
            security_log.record(s, "auth.sign_in", actor=f"user:{user.username}",
                                subject="sign-in", source=source, org=user.org_id,
                                details={"via": via})
            return accounts.issue_token(s, user, name=f"web-{provider}", ttl=SESSION_TTL), None

    try:
        token, shortfall = await run_in_threadpool(finish)
    except Suspended as exc:
        return _refused(request, state, 403, "Your account is suspended", exc.message)
    except NdlError as exc:
        return _refused(request, state, exc.http_status, "Sign-in could not be completed",
                        exc.message)
    if token is None:
        return _refused(request, state, 403, "Multi-factor authentication is required",
                        shortfall or "")
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL.total_seconds()),
                        **_cookie_flags(state))
    response.delete_cookie(FLOW_COOKIE, **_cookie_flags(state))
    response.delete_cookie(PRE_COOKIE, **_cookie_flags(state))
    return response


# --- a token for the command line, for people who have no password ------------------------

CLI_TOKEN_DAYS = accounts.LOGIN_TTL.days  # as long as 'ndl login' gives


@router.get("/account/cli-token", response_class=HTMLResponse)
def cli_token_page(request: Request, who: Public) -> Response:
    if who is None:
        return sign_in_redirect(request)
    return pages_of(request).render(request, "cli_token.html", {"token": None})


@router.post("/account/cli-token", response_class=HTMLResponse)
async def create_cli_token(request: Request, who: Public) -> Response:
    got = await posted(request, who, "/account/cli-token")
    if isinstance(got, Response):
        return got
    _, me = got
    state = hub(request)

    def mint() -> str:
        with state.db.write() as s:
            return accounts.create_own_token(s, me, scope="full", name="cli",
                                             days=CLI_TOKEN_DAYS)[1]

    try:
        token = await run_in_threadpool(mint)
    except NdlError as exc:
        return error_page(request, exc)
    return pages_of(request).render(request, "cli_token.html", {
        "token": token, "days": CLI_TOKEN_DAYS,
        "hub_url": str(request.base_url).rstrip("/")})

"""Signing in, and each user's own API tokens: list them, mint scoped ones for agents, revoke.

Nobody sees a token after it is issued, not even its owner: lists show a short prefix, the
scope and the dates. Revoking takes effect on the next request (tokens are checked each time).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from ndl.access import accounts
from ndl.access.accounts import Principal
from ndl.core.errors import RateLimited
from ndl.hub.deps import authenticated, hub, public
from ndl.hub.login_limits import request_source
from ndl.hub.openapi import RATE_LIMITED
from ndl.hub.state import HubState
from ndl.ledger import security_log

router = APIRouter(prefix="/api")
HubDep = Annotated[HubState, Depends(hub)]
Me = Annotated[Principal, Depends(authenticated)]


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1000)


@router.post("/auth/login", responses=RATE_LIMITED)
def login(body: LoginBody, request: Request, state: HubDep,
          _: Annotated[Principal | None, Depends(public)]) -> dict[str, Any]:
    """A password for a token that lasts ``accounts.LOGIN_TTL`` (7 days)."""
    account = body.username.strip().lower()
    source = request_source(request, state.settings.trusted_proxies)
    try:
        state.limiter.check(account, source)
    except RateLimited:
        security_log.sign_in_refused(state.db, "auth.lockout", account=account,
                                     source=source, via="api")
        raise
    try:
        with state.db.write() as s:
            user, token = accounts.login(s, body.username, body.password,
                                         passwords=state.settings.password_sign_in)
            who = accounts.principal_of(user)
            security_log.record(s, "auth.sign_in", actor=f"user:{who.username}",
                                subject="sign-in", source=source, org=who.org_id,
                                details={"via": "api"})
    except Exception:
        state.limiter.failed(account, source)
        security_log.sign_in_refused(state.db, "auth.sign_in_failed", account=account,
                                     source=source, via="api")
        raise
    state.limiter.succeeded(account, source)
    return {"token": token, "username": who.username, "roles": sorted(who.roles),
            "expires_in_days": accounts.LOGIN_TTL.days}


@router.get("/me")
def me(who: Me) -> dict[str, Any]:
    return {"username": who.username, "roles": sorted(who.roles), "org": who.org_id,
            "scope": who.scope}


@router.get("/auth/tokens")
def list_tokens(state: HubDep, who: Me) -> dict[str, Any]:
    """The caller's own tokens that still work (``current`` marks the one this call used)."""
    with state.db.read() as s:
        return {"tokens": [t.to_json() for t in accounts.list_tokens(s, who)]}


class TokenBody(BaseModel):
    scope: str = Field(default="read-only", max_length=80,
                       description="'full', 'read-only' or 'project:<project id>'")
    name: str = Field(default="agent", max_length=100)
    days: int = Field(default=30, ge=1, le=accounts.MAX_TOKEN_DAYS)


@router.post("/auth/tokens", status_code=201)
def create_token(body: TokenBody, state: HubDep, who: Me) -> dict[str, Any]:
    """Mint a token for yourself, e.g. a read-only or one-project token for an agent. The
    answer is the only time the token is shown."""
    with state.db.write() as s:
        info, token = accounts.create_own_token(s, who, scope=body.scope, name=body.name,
                                                days=body.days)
    return {**info.to_json(), "token": token}


@router.delete("/auth/tokens/{token_id}")
def revoke_token(token_id: Annotated[int, Path(ge=1, le=2**63 - 1)], state: HubDep, who: Me
                 ) -> dict[str, Any]:
    with state.db.write() as s:
        info = accounts.revoke_own_token(s, who, token_id)
    return {**info.to_json(), "revoked": True}


@router.post("/auth/logout")
def logout(state: HubDep, who: Me) -> dict[str, Any]:
    """Revoke the token this call carries (a browser session's too, if sent as a bearer)."""
    if who.token_id is None:  # pragma: no cover - every principal here came from a token
        return {"revoked": False}
    with state.db.write() as s:
        accounts.revoke_own_token(s, who, who.token_id)
        security_log.record(s, "auth.sign_out", actor=f"user:{who.username}",
                            subject="sign-out", org=who.org_id, details={"via": "api"})
    return {"revoked": True, "id": who.token_id}

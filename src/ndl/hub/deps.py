"""Who may call what. Every API route depends on exactly one access rule from here.

``tests/security/test_route_access.py`` walks the app's routes and fails if any route lacks
one, so a new endpoint cannot ship without a decision about who may call it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal, authenticate, check_scope, touch_token
from ndl.core.envelope import open_envelope
from ndl.core.errors import AuthenticationRequired, InvalidInput, PermissionDenied
from ndl.federation.models import Datasite
from ndl.federation.service import HUB_ID
from ndl.hub.state import HubState


def hub(request: Request) -> HubState:
    state: HubState = request.app.state.hub
    return state


def _mark(fn: Callable[..., Any], rule: str) -> Callable[..., Any]:
    fn.__ndl_access__ = rule  # type: ignore[attr-defined]
    return fn


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.state.session_token if hasattr(request.state, "session_token") else None


# POSTs that change nothing the caller owns (they ask a question, or end the caller's own
# token), so read-only tokens may make them. Every other method but GET/HEAD is a write.
READ_POSTS = frozenset({
    "/api/datasets/{site}/{name}/sql", "/api/datasets/{site}/{name}/query",
    "/api/3/action/{action}", "/api/action/{action}", "/api/auth/logout",
})


def _is_write(request: Request) -> bool:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    route = request.scope.get("route")
    return getattr(route, "path", None) not in READ_POSTS


async def _project_named(request: Request) -> str | None:
    """The project a call is about: a ``project_id`` in the path, ``?project=``, or a JSON
    body's ``project`` (FastAPI has already read and cached the body by now)."""
    named = request.path_params.get("project_id") or request.query_params.get("project")
    if named:
        return str(named)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            return None
        if isinstance(body, dict) and isinstance(body.get("project"), str):
            return str(body["project"])
    return None


async def _principal(request: Request) -> Principal | None:
    token = _bearer(request)
    if token is None:
        return None
    state = hub(request)

    def look() -> Principal:
        with state.db.read() as s:
            who, due = authenticate(s, token)
        if due and who.token_id is not None:
            with state.db.write() as s:
                touch_token(s, who.token_id)
        return who

    who = await run_in_threadpool(look)
    # Token scopes are enforced here and nowhere else, for every route at once.
    project = await _project_named(request) if who.scope.startswith("project:") else None
    check_scope(who, write=_is_write(request), project=project)
    return who


async def _public(request: Request) -> Principal | None:
    """Anyone, signed in or not. A token, if given, must still be valid."""
    return await _principal(request)


public = _mark(_public, "public")


async def _authenticated(request: Request) -> Principal:
    who = await _principal(request)
    if who is None:
        raise AuthenticationRequired(
            "this needs an API token: run 'ndl login', or send 'Authorization: Bearer <token>'"
        )
    return who


authenticated = _mark(_authenticated, "authenticated")


def requires(*roles: str) -> Callable[..., Any]:
    """A signed-in user holding at least one of ``roles``."""

    async def dep(request: Request) -> Principal:
        who = await _authenticated(request)
        if not who.has(*roles):
            raise PermissionDenied(
                f"this needs the role {' or '.join(roles)}; your roles are "
                f"{', '.join(sorted(who.roles)) or 'none'}"
            )
        return who

    return _mark(dep, "role:" + ",".join(roles))


async def _signed_by_datasite(request: Request) -> tuple[Datasite, dict[str, Any]]:
    """The body is an envelope signed by a registered datasite's key."""
    try:
        env = await request.json()
    except ValueError as exc:
        raise InvalidInput("the body must be a JSON signed envelope") from exc
    state = hub(request)

    def check() -> tuple[Datasite, dict[str, Any]]:
        with state.db.read() as s:
            site = s.get(Datasite, str(env.get("sender"))) if isinstance(env, dict) else None
            opened = open_envelope(
                env, public_key_for=lambda _sender: site.public_key if site else None,
                recipient=HUB_ID, guard=state.guard,
            )
            if site is None:  # open_envelope already refused; keeps type-checkers honest
                raise AuthenticationRequired("unknown datasite")
            s.expunge(site)
            return site, opened

    return await run_in_threadpool(check)


signed_by_datasite = _mark(_signed_by_datasite, "datasite-envelope")

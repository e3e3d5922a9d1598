"""Who may call what. Every API route depends on exactly one access rule from here.

``tests/security/test_route_access.py`` walks the app's routes and fails if any route lacks
one, so a new endpoint cannot ship without a decision about who may call it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal, authenticate, check_scope, touch_token
from ndl.core.envelope import open_envelope
from ndl.core.errors import (
    AuthenticationRequired,
    EnvelopeRejected,
    InvalidInput,
    PermissionDenied,
)
from ndl.federation import key_service, parties, standing
from ndl.federation.blobs import ENVELOPE_HEADER, REQUEST_KIND
from ndl.federation.models import Datasite
from ndl.federation.parties import PartyIdentity
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


async def _envelope_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise InvalidInput("the body must be a JSON signed envelope") from exc


async def _signed_by_datasite(request: Request) -> tuple[Datasite, dict[str, Any]]:
    """The body is an envelope signed by a registered datasite's key."""
    env = await _envelope_body(request)
    state = hub(request)

    def check() -> tuple[Datasite, dict[str, Any]]:
        with state.db.read() as s:
            site = s.get(Datasite, str(env.get("sender"))) if isinstance(env, dict) else None
            # Any key of the site valid now (its current one, or one in a rotation's
            # overlap); a revoked key never (ndl.federation.key_service).
            keys = (key_service.accepted_keys(s, f"datasite:{site.id}", site.public_key)
                    if site else None)
            opened = open_envelope(
                env, public_key_for=lambda _sender: keys,
                recipient=HUB_ID, guard=state.guard,
            )
            if site is None:  # open_envelope already refused; keeps type-checkers honest
                raise AuthenticationRequired("unknown datasite")
            # Signed by its own key, but pending approval, retired or suspended: refused,
            # saying who can change that (ndl.federation.standing).
            if (err := standing.error_of(site)) is not None:
                raise err
            s.expunge(site)
            return site, opened

    return await run_in_threadpool(check)


signed_by_datasite = _mark(_signed_by_datasite, "datasite-envelope")


async def _signed_by_party(request: Request) -> tuple[PartyIdentity, dict[str, Any]]:
    """The body is an envelope signed by a registered party: a datasite (sender: its id) or
    another party such as an enclave (sender: ``party:<id>``)."""
    env = await _envelope_body(request)
    state = hub(request)

    def check() -> tuple[PartyIdentity, dict[str, Any]]:
        with state.db.read() as s:
            who = parties.identity_of_sender(s, env.get("sender") if isinstance(env, dict)
                                             else None)
            # A suspended datasite signing as a party is refused once its signature checks.
            refused = standing.error_of_principal(s, who.principal) if who else None
            keys = key_service.accepted_keys(s, who.principal, who.public_key) if who else None
        # (open_envelope refuses numbers no signer can sign: NaN, infinities, 2**53+)
        opened = open_envelope(
            env, public_key_for=lambda _sender: keys,
            recipient=HUB_ID, guard=state.guard,
        )
        if who is None:  # open_envelope already refused; keeps type-checkers honest
            raise AuthenticationRequired("unknown party")
        if refused is not None:
            raise refused
        return who, opened

    return await run_in_threadpool(check)


signed_by_party = _mark(_signed_by_party, "party-envelope")


# A signed request in a header, for calls whose body is not JSON (raw blob chunks) or that
# have none (downloads): base64url of the JSON envelope. Its body names the HTTP method and
# path it was signed for, so it cannot be replayed against another route or upload (and the
# replay guard refuses its nonce a second time anywhere).


@dataclass(frozen=True)
class Caller:
    """Who makes a call that users (bearer token) and parties (signed header) both make.

    ``principal`` is ``user:<name>``, ``datasite:<id>`` or ``party:<id>``; ``args`` are the
    arguments a party signed (None for a user, whose arguments come from the request).
    """

    principal: str
    args: dict[str, Any] | None = None
    user: Principal | None = None


def _decode_header_envelope(raw: str) -> Any:
    if len(raw) > 16_384:
        raise InvalidInput(f"the {ENVELOPE_HEADER} header is too long (16 KiB at most)")
    try:
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the {ENVELOPE_HEADER} header must be the base64url of a JSON "
                           "signed envelope") from exc


async def _party_or_user(request: Request) -> Caller:
    """A signed-in user (bearer token or session), or a registered party signing the request
    in the ``X-Ndl-Envelope`` header (sender resolved by :func:`parties.identity_of_sender`)."""
    raw = request.headers.get(ENVELOPE_HEADER)
    if raw is None:
        who = await _principal(request)
        if who is None:
            raise AuthenticationRequired(
                "this needs an API token ('Authorization: Bearer <token>') or a request signed "
                f"by a registered party in the {ENVELOPE_HEADER} header")
        return Caller(f"user:{who.username}", None, who)
    env = _decode_header_envelope(raw)
    state = hub(request)

    def check() -> Caller:
        with state.db.read() as s:
            ident = parties.identity_of_sender(
                s, env.get("sender") if isinstance(env, dict) else None)
            refused = standing.error_of_principal(s, ident.principal) if ident else None
            keys = (key_service.accepted_keys(s, ident.principal, ident.public_key) if ident
                    else None)
        opened = open_envelope(env, public_key_for=lambda _s: keys,
                               recipient=HUB_ID, guard=state.guard,
                               kinds=(REQUEST_KIND,))
        if ident is None:  # open_envelope already refused; keeps type-checkers honest
            raise AuthenticationRequired("unknown party")
        if refused is not None:
            raise refused
        body = opened["body"]
        if not isinstance(body, dict) or body.get("method") != request.method \
                or body.get("path") != request.url.path:
            raise EnvelopeRejected(
                f"the signed request is for {str(body.get('method'))[:10]} "
                f"{str(body.get('path'))[:200]}, not {request.method} {request.url.path}: sign "
                "each request for its own method and path")
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise InvalidInput("a signed request's args must be a JSON object")
        return Caller(ident.principal, args, None)

    return await run_in_threadpool(check)


party_or_user = _mark(_party_or_user, "user-or-party-envelope")

"""Service functions for organisations, users, roles and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access.models import ApiToken, Org, User, UserRole
from ndl.core.db import utcnow
from ndl.core.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Suspended,
)
from ndl.ledger import security_log

ROLES = ("researcher", "steward", "output_checker", "admin")
ORG_KINDS = ("nhs", "education", "local_authority", "government", "academic", "other")
TOKEN_PREFIX = "ndl_"  # noqa: S105 - a prefix, not a secret
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_hasher = PasswordHasher()
# An interactive login (``ndl login``) lasts a week: long enough not to nag, short enough that
# a token copied off a laptop stops working soon. Tokens minted for agents say their own life.
LOGIN_TTL = timedelta(days=7)
MAX_TOKEN_DAYS = 90
SCOPES_HELP = "'full', 'read-only' or 'project:<project id>'"
# Recording each use would be a database write per request; a few minutes' precision is
# plenty for "when did this token last do anything".
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Principal:
    """Who is making a request, and with what rights the token they used carries."""

    user_id: int
    username: str
    roles: frozenset[str]
    org_id: str | None
    scope: str = "full"
    token_id: int | None = None

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


def parse_scope(value: str) -> str:
    """Check a token scope and return it in its one spelling."""
    scope = value.strip().lower()
    if scope in ("full", "read-only"):
        return scope
    kind, sep, project = scope.partition(":")
    if kind == "project" and sep and _SLUG.match(project):
        return scope
    raise InvalidInput(f"token scope {value!r} is not valid: use {SCOPES_HELP}")


def check_scope(principal: Principal, *, write: bool, project: str | None) -> None:
    """Refuse what the principal's token does not cover. The one place scopes are enforced
    (``ndl.hub.deps`` calls it for every request that carries a token).

    ``write`` is whether the call changes anything; ``project`` is the project the call is
    about, if it names one. A read-only token only reads. A project token only reads and
    acts within its project: a call naming another project is refused, and so is any change
    that names no project (creating projects, wishes, other tokens...).
    """
    scope = principal.scope
    if scope == "full":
        return
    if scope == "read-only":
        if write:
            raise PermissionDenied(
                "this token is read-only: it can search, read and query, but not change "
                "anything. Use a full token (ndl login) for this")
        return
    bound = scope.removeprefix("project:")
    if project is not None and project != bound:
        raise PermissionDenied(
            f"this token only acts within project {bound!r}, not {project!r}")
    if write and project is None:
        raise PermissionDenied(
            f"this token only acts within project {bound!r}, and this call names no project; "
            "use a full token (ndl login) for it")


def public_name(roles: frozenset[str] | set[str], org_id: str | None) -> str:
    """How public pages (the wishlist, comments) name a person: officials by role and
    organisation, everyone else as "a researcher". Never by username."""
    for role in ("admin", "steward", "output_checker"):
        if role in roles:
            return role if role == "admin" or not org_id else f"{role}@{org_id}"
    return "a researcher"


def official_actor(who: Principal) -> str:
    """How the public register names someone acting in an official role: by role and
    organisation, not by name (the hub's own records keep who it was)."""
    if who.has("admin"):
        return "admin"
    if who.has("steward"):
        return f"steward@{who.org_id}"
    return f"user#{who.user_id}" if who.user_id else "anonymous"


def principal_of(user: User) -> Principal:
    return Principal(user.id, user.username, frozenset(user.role_names), user.org_id)


def check_slug(value: str, what: str) -> str:
    if not _SLUG.match(value):
        raise InvalidInput(
            f"{what} {value!r} is not valid: use 2-63 lowercase letters, digits and hyphens, "
            "starting with a letter or digit (e.g. 'nhs-trust')"
        )
    return value


def create_org(session: Session, org_id: str, name: str, kind: str = "other") -> Org:
    check_slug(org_id, "organisation id")
    if kind not in ORG_KINDS:
        raise InvalidInput(f"organisation kind {kind!r} is not one of {', '.join(ORG_KINDS)}")
    if session.get(Org, org_id) is not None:
        raise Conflict(f"organisation {org_id!r} already exists")
    org = Org(id=org_id, name=name.strip() or org_id, kind=kind)
    session.add(org)
    return org


def get_org(session: Session, org_id: str) -> Org:
    org = session.get(Org, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id!r} does not exist; list them with GET /api/orgs")
    return org


def create_user(
    session: Session, username: str, *, roles: list[str] | tuple[str, ...],
    display_name: str | None = None, org_id: str | None = None, password: str | None = None,
) -> User:
    if not _USERNAME.match(username):
        raise InvalidInput(
            f"username {username!r} is not valid: use 2-63 lowercase letters, digits, '.', "
            "'_' or '-'"
        )
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise InvalidInput(f"roles must be one or more of {', '.join(ROLES)}; got {roles!r}")
    if org_id is not None:
        get_org(session, org_id)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    if password is not None and len(password) < 10:
        raise InvalidInput("password must be at least 10 characters long")
    user = User(
        username=username, display_name=display_name or username, org_id=org_id,
        password_hash=_hasher.hash(password) if password else None,
        roles=[UserRole(role=r) for r in sorted(set(roles))],
    )
    session.add(user)
    session.flush()
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(
    session: Session, user: User, *, name: str = "cli", ttl: timedelta | None = LOGIN_TTL,
    scope: str = "full",
) -> str:
    """Create an API token; only its hash is stored, so this is the one chance to see it."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(
        user_id=user.id, token_hash=_token_hash(token), name=name[:100],
        expires_at=utcnow() + ttl if ttl else None, scope=parse_scope(scope),
        prefix=token[:12],
    ))
    # The security log names the token by its owner, name and scope, never by its text.
    security_log.record(session, "auth.token_issued", actor=f"user:{user.username}",
                        subject=f"token:{name[:100]}", org=user.org_id,
                        details={"scope": parse_scope(scope),
                                 "days": ttl.days if ttl else None})
    return token


def authenticate(session: Session, token: str) -> tuple[Principal, bool]:
    """The principal a token stands for, and whether its last-used time is due an update
    (see :func:`touch_token`)."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    now: datetime = utcnow()
    if row is None or row.revoked_at is not None:
        raise AuthenticationRequired(
            "the API token is not valid: log in again with 'ndl login' to get a new one"
        )
    if row.expires_at is not None and row.expires_at < now:
        raise AuthenticationRequired("the API token has expired: log in again with 'ndl login'")
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        raise AuthenticationRequired("the account for this token is disabled")
    require_user_standing(user)
    due = row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY
    return Principal(user.id, user.username, frozenset(user.role_names), user.org_id,
                     scope=row.scope or "full", token_id=row.id), due


def authenticate_token(session: Session, token: str) -> Principal:
    return authenticate(session, token)[0]


def touch_token(session: Session, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is not None:
        row.last_used_at = utcnow()


def login(session: Session, username: str, password: str, *, name: str = "login",
          ttl: timedelta = LOGIN_TTL, passwords: bool = True) -> tuple[User, str]:
    """Check a password and issue a token (``name``, lasting ``ttl``). The same message for
    every failure. ``passwords=False``: the hub signs people in only through identity
    providers that require MFA (``ndl hub --no-password-sign-in``), so every password is
    refused, before any account is looked at."""
    if not passwords:
        raise PermissionDenied(
            "this hub does not take passwords: sign in on its web page through your "
            "organisation's identity provider; for the command line, create a token at "
            "/account/cli-token and run 'ndl login --with-token'")
    user = session.scalar(select(User).where(User.username == username))
    fail = AuthenticationRequired("wrong username or password")
    if user is None or user.password_hash is None or user.disabled:
        # Spend the same time as a real check so usernames cannot be probed by timing.
        _hasher.hash(password)
        raise fail
    try:
        _hasher.verify(user.password_hash, password)
    except VerificationError:
        raise fail from None
    # Only after the password is right: nobody learns who is suspended by guessing.
    require_user_standing(user)
    return user, issue_token(session, user, name=name, ttl=ttl)


def user_refusal(user: User) -> str | None:
    """Why ``user`` may not act now, or None. The one standing check for people: tokens, web
    sessions, sign-in and grant use all come through :func:`require_user_standing`."""
    if user.suspended_at is not None:
        return (f"the account {user.username!r} is suspended by the hub's admin (since "
                f"{user.suspended_at:%Y-%m-%d %H:%M} UTC): its tokens, sessions and grants do "
                "not work until an admin reinstates it; ask your library administrator")
    return None


def require_user_standing(user: User) -> None:
    reason = user_refusal(user)
    if reason is not None:
        raise Suspended(reason)


def revoke_token(session: Session, token: str) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        _log_revoked(session, row)


def _log_revoked(session: Session, row: ApiToken) -> None:
    user = session.get(User, row.user_id)
    security_log.record(session, "auth.token_revoked",
                        actor=f"user:{user.username}" if user else f"user#{row.user_id}",
                        subject=f"token:{row.name}", org=user.org_id if user else None,
                        details={"token_id": row.id})


@dataclass(frozen=True)
class TokenInfo:
    """One of a user's tokens as its owner may see it: never the token nor its hash."""

    id: int
    name: str
    scope: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    current: bool

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {"id": self.id, "name": self.name, "scope": self.scope,
                "prefix": self.prefix + "…" if self.prefix else "",
                "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
                "last_used_at": iso(self.last_used_at), "current": self.current}


def _info(row: ApiToken, who: Principal) -> TokenInfo:
    return TokenInfo(row.id, row.name, row.scope or "full", row.prefix or "", row.created_at,
                     row.expires_at, row.last_used_at, row.id == who.token_id)


def list_tokens(session: Session, who: Principal) -> list[TokenInfo]:
    """The caller's tokens that still work, newest first."""
    now = utcnow()
    rows = session.scalars(select(ApiToken).where(
        ApiToken.user_id == who.user_id, ApiToken.revoked_at.is_(None)
    ).order_by(ApiToken.id.desc()))
    return [_info(r, who) for r in rows if r.expires_at is None or r.expires_at >= now]


def revoke_own_token(session: Session, who: Principal, token_id: int) -> TokenInfo:
    """Revoke one of the caller's own tokens. Someone else's token is "not found" too, so
    nobody learns which ids exist."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != who.user_id or row.revoked_at is not None:
        raise NotFound(f"you have no active token {token_id}; list yours with 'ndl tokens'")
    row.revoked_at = utcnow()
    _log_revoked(session, row)
    return _info(row, who)


def create_own_token(session: Session, who: Principal, *, scope: str, name: str,
                     days: int) -> tuple[TokenInfo, str]:
    """Mint a token for the caller (e.g. for an agent), no broader than a full login."""
    if who.scope != "full":
        # Otherwise a read-only or project token could mint itself a full one.
        raise PermissionDenied("only a full token (from 'ndl login') can create tokens")
    scope = parse_scope(scope)
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InvalidInput(f"days: a token lasts 1 to {MAX_TOKEN_DAYS} days, not {days}")
    if scope.startswith("project:"):
        from ndl.access.projects import get_project, require_member  # projects imports us

        require_member(get_project(session, scope.removeprefix("project:")), who)
    user = session.get(User, who.user_id)
    if user is None:
        raise AuthenticationRequired("the account for this token no longer exists")
    token = issue_token(session, user, name=name.strip() or "agent",
                        ttl=timedelta(days=days), scope=scope)
    session.flush()
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    assert row is not None  # just added
    return _info(row, who), token

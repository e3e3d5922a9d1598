"""Service functions for organisations, users, roles and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access.models import ApiToken, Org, User, UserRole
from ndl.core.db import utcnow
from ndl.core.errors import AuthenticationRequired, Conflict, InvalidInput, NotFound

ROLES = ("researcher", "steward", "output_checker", "admin")
ORG_KINDS = ("nhs", "education", "local_authority", "government", "academic", "other")
TOKEN_PREFIX = "ndl_"  # noqa: S105 - a prefix, not a secret
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """Who is making a request."""

    user_id: int
    username: str
    roles: frozenset[str]
    org_id: str | None

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


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
    session: Session, user: User, *, name: str = "cli", ttl: timedelta | None = timedelta(days=90)
) -> str:
    """Create an API token; only its hash is stored, so this is the one chance to see it."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(
        user_id=user.id, token_hash=_token_hash(token), name=name,
        expires_at=utcnow() + ttl if ttl else None,
    ))
    return token


def authenticate_token(session: Session, token: str) -> Principal:
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
    return principal_of(user)


def login(session: Session, username: str, password: str) -> tuple[User, str]:
    """Check a password and issue a token. The same message for every failure."""
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
    return user, issue_token(session, user, name="login")


def revoke_token(session: Session, token: str) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()

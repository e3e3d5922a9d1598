"""Accounts for people who sign in through an identity provider (:mod:`ndl.access.oidc`).

An identity is matched by its (issuer, subject) pair, never by e-mail. The first sign-in
either links the identity to the account the person is already signed in to (they have
proved both), or creates an account in the provider's organisation with the provider's
default roles. Suspended and disabled accounts are refused here as everywhere.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import accounts
from ndl.access import service as access_service
from ndl.access.accounts import Principal
from ndl.access.models import User, UserIdentity
from ndl.access.oidc import Provider, VerifiedIdentity
from ndl.core.db import utcnow
from ndl.core.errors import AuthenticationRequired, Conflict, InvalidInput, NotFound
from ndl.core.keys import SigningKey

_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def _free_username(session: Session, wanted: str) -> str:
    """A valid, unused username close to what the provider calls the person."""
    base = _UNSAFE.sub("-", wanted.split("@", 1)[0].lower()).strip("-._")[:50] or "user"
    if not base[0].isalnum() or len(base) < 2:
        base = f"u-{base}"[:50]
    name, n = base, 1
    while session.scalar(select(User.id).where(User.username == name)) is not None:
        n += 1
        name = f"{base}-{n}"
    return name


def account_for(session: Session, key: SigningKey, provider: Provider,
                identity: VerifiedIdentity, *, signed_in: Principal | None) -> User:
    """The user ``identity`` signs in as: linked before, linked now to ``signed_in``, or new."""
    row = session.scalar(select(UserIdentity).where(
        UserIdentity.issuer == identity.issuer, UserIdentity.subject == identity.subject))
    if row is not None:
        user = session.get(User, row.user_id)
        if user is None:  # pragma: no cover - the foreign key cascades
            raise AuthenticationRequired("the account linked to this identity is gone")
        if signed_in is not None and signed_in.user_id != user.id:
            raise Conflict("this identity is already linked to another account; sign out "
                           "first, then sign in with it")
        row.last_sign_in_at = utcnow()
    elif signed_in is not None:
        user = session.get(User, signed_in.user_id)
        if user is None:  # pragma: no cover - a session token belongs to a user
            raise AuthenticationRequired("the account you are signed in to is gone")
        session.add(UserIdentity(user_id=user.id, provider=provider.name,
                                 issuer=identity.issuer, subject=identity.subject,
                                 last_sign_in_at=utcnow()))
    else:
        try:
            accounts.get_org(session, provider.org)
        except NotFound as exc:
            raise InvalidInput(f"the identity provider {provider.label!r} vouches for the "
                               f"organisation {provider.org!r}, which this hub does not have; "
                               "an admin must create it first (ndl admin create-org)") from exc
        made = access_service.create_user(
            session, key, access_service.Operator(f"oidc:{provider.name}"),
            access_service.NewUser(username=_free_username(session, identity.preferred_name),
                                   roles=list(provider.roles), org=provider.org,
                                   display_name=identity.display_name[:200]))
        user = session.get(User, made.user_id)
        assert user is not None  # just made
        session.add(UserIdentity(user_id=user.id, provider=provider.name,
                                 issuer=identity.issuer, subject=identity.subject,
                                 last_sign_in_at=utcnow()))
    if user.disabled:
        raise AuthenticationRequired("this account is disabled; ask your library administrator")
    accounts.require_user_standing(user)
    session.flush()
    return user

"""Suspending and reinstating users and datasites: an admin's word, effective at once.

The standing checks themselves live in one place each: people in
:func:`ndl.access.accounts.require_user_standing` (every token, web session, sign-in and grant
use passes it) and datasites in :mod:`ndl.federation.standing` (every signed request a
datasite makes, and every query or work item sent to it). This module only changes the
standing, with its register entry.

The register says who acted, on whom and when (``user.suspended``, ``datasite.reinstated``
...), never why: a reason may name an investigation or a person, so it stays in the hub's own
row (``suspended_reason``) and the security log (``admin.suspension``), for admins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.access.accounts import official_actor
from ndl.access.models import User
from ndl.access.service import Actor, Operator
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.federation.models import Datasite
from ndl.ledger import register, security_log

MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class Standing:
    """A user's or datasite's standing after a change: ``kind`` is "user" or "datasite"."""

    kind: str
    name: str
    suspended: bool
    suspended_at: datetime | None
    reason: str | None  # private: for admins, never the register

    def to_json(self) -> dict[str, object]:
        return {self.kind: self.name, "suspended": self.suspended,
                "suspended_at": self.suspended_at.isoformat() if self.suspended_at else None,
                "reason": self.reason}


def _actor(who: Actor, doing: str) -> str:
    if isinstance(who, Operator):
        return who.name
    return official_actor(rules.require_admin(who, doing=doing))


def _log(session: Session, who: Actor, kind: str, subject: str, org: str | None,
         reason: str | None = None) -> None:
    """The security log (admins' and the SIEM's, not public) names the admin and keeps the
    reason; the public register has neither."""
    actor = who.name if isinstance(who, Operator) else f"user:{who.username}"
    security_log.record(session, kind, actor=actor, subject=subject, org=org,
                        details={"reason": reason} if reason else None)


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InvalidInput("reason: say why (e.g. --reason 'incident 12: key may be exposed'); "
                           "it is kept for admins, not published")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason: at most {MAX_REASON_CHARS} characters, not {len(text)}")
    return text


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise NotFound(f"there is no user {username[:64]!r} on this hub; check the spelling "
                       "(usernames are lower case)")
    return user


def _site(session: Session, datasite_id: str) -> Datasite:
    site = session.get(Datasite, datasite_id.strip())
    if site is None:
        raise NotFound(f"there is no datasite {datasite_id[:64]!r} on this hub; list them with "
                       "GET /api/datasites")
    return site


def suspend_user(session: Session, key: SigningKey, who: Actor, username: str, *,
                 reason: str) -> Standing:
    """Suspend a user: their tokens, web sessions and grants stop working on the next
    request. Tokens are kept (not revoked), so reinstating restores them."""
    actor = _actor(who, "suspend a user")
    text = _reason(reason)
    user = _user(session, username)
    if not isinstance(who, Operator) and who.user_id == user.id:
        raise PermissionDenied("you cannot suspend yourself; another admin can")
    if user.suspended_at is not None:
        raise Conflict(f"user {user.username!r} is already suspended (since "
                       f"{user.suspended_at:%Y-%m-%d %H:%M} UTC); nothing was changed")
    user.suspended_at, user.suspended_reason = utcnow(), text
    register.append(session, key, kind="user.suspended", actor=actor,
                    subject=f"user#{user.id}")
    _log(session, who, "admin.suspension", f"user:{user.username}", user.org_id, text)
    return Standing("user", user.username, True, user.suspended_at, text)


def reinstate_user(session: Session, key: SigningKey, who: Actor, username: str) -> Standing:
    actor = _actor(who, "reinstate a user")
    user = _user(session, username)
    if user.suspended_at is None:
        raise Conflict(f"user {user.username!r} is not suspended; nothing was changed")
    user.suspended_at, user.suspended_reason = None, None
    register.append(session, key, kind="user.reinstated", actor=actor,
                    subject=f"user#{user.id}")
    _log(session, who, "admin.reinstatement", f"user:{user.username}", user.org_id)
    return Standing("user", user.username, False, None, None)


def suspend_datasite(session: Session, key: SigningKey, who: Actor, datasite_id: str, *,
                     reason: str) -> Standing:
    """Suspend a datasite: its signed requests are refused and its datasets answer no
    queries from the next request on. Work already queued for it waits (or expires)."""
    actor = _actor(who, "suspend a datasite")
    text = _reason(reason)
    site = _site(session, datasite_id)
    if site.suspended_at is not None:
        raise Conflict(f"datasite {site.id!r} is already suspended (since "
                       f"{site.suspended_at:%Y-%m-%d %H:%M} UTC); nothing was changed")
    site.suspended_at, site.suspended_reason = utcnow(), text
    register.append(session, key, kind="datasite.suspended", actor=actor, subject=site.id,
                    payload={"org": site.org_id})
    _log(session, who, "admin.suspension", f"datasite:{site.id}", site.org_id, text)
    return Standing("datasite", site.id, True, site.suspended_at, text)


def reinstate_datasite(session: Session, key: SigningKey, who: Actor,
                       datasite_id: str) -> Standing:
    actor = _actor(who, "reinstate a datasite")
    site = _site(session, datasite_id)
    if site.suspended_at is None:
        raise Conflict(f"datasite {site.id!r} is not suspended; nothing was changed")
    site.suspended_at, site.suspended_reason = None, None
    register.append(session, key, kind="datasite.reinstated", actor=actor, subject=site.id,
                    payload={"org": site.org_id})
    _log(session, who, "admin.reinstatement", f"datasite:{site.id}", site.org_id)
    return Standing("datasite", site.id, False, None, None)

"""Whether a datasite may act in the federation now: the one place that decides.

Every path a datasite reaches the hub by (its signed envelopes: polls, heartbeats,
publications, replies; requests it signs as a party) and every path that would send it work
(queries, work items) asks :func:`refusal` first. A datasite in good standing gets ``None``;
any other gets the sentence to show, which says what to do.

Add a state here (and only here) to make every path refuse it: ``refusal`` is a function of
the datasite's row, so a new column needs one more ``if``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ndl.core.errors import PermissionDenied, Suspended
from ndl.federation.models import Datasite


def refusal(site: Datasite) -> str | None:
    """Why ``site`` may not act now, or None if it may."""
    # Joining and leaving (ndl.federation.membership): retired is for good; pending lasts
    # until a data steward of its organisation (or an admin) approves it.
    if site.state == "retired":
        when = f"{site.retired_at:%Y-%m-%d}" if site.retired_at else "earlier"
        return (f"datasite {site.id!r} was retired on {when} and has left the federation: "
                "its key is no longer accepted. To take part again, a data steward of "
                f"{site.org_id!r} registers a new datasite with a new key")
    if site.state == "pending":
        return (f"datasite {site.id!r} is waiting for approval: a data steward of "
                f"{site.org_id!r} (or an admin) must approve it with 'ndl steward "
                f"approve-datasite {site.id}' or on its page at /datasites/{site.id}")
    if site.suspended_at is not None:
        return (f"datasite {site.id!r} is suspended by the hub's admin (since "
                f"{site.suspended_at:%Y-%m-%d %H:%M} UTC): it can send nothing and its datasets "
                "answer no queries until an admin reinstates it "
                f"('ndl admin reinstate datasite {site.id}')")
    return None


def error_of(site: Datasite) -> PermissionDenied | None:
    """The error refusing ``site`` (:class:`Suspended` if an admin suspended it), or None."""
    reason = refusal(site)
    if reason is None:
        return None
    return (Suspended if site.suspended_at is not None else PermissionDenied)(reason)


def require_good_standing(site: Datasite) -> None:
    """Refuse a datasite that may not act now."""
    if (err := error_of(site)) is not None:
        raise err


def require_site(session: Session, datasite_id: str) -> None:
    """:func:`require_good_standing` for a datasite named by id (an unknown id passes: the
    caller's own look-up says "not registered")."""
    site = session.get(Datasite, datasite_id)
    if site is not None:
        require_good_standing(site)


def error_of_principal(session: Session, principal: str) -> PermissionDenied | None:
    """:func:`error_of` for a signed caller named ``datasite:<id>``; other parties (enclaves)
    have no standing of their own here yet, so None."""
    kind, _, ident = principal.partition(":")
    if kind != "datasite":
        return None
    site = session.get(Datasite, ident)
    return error_of(site) if site is not None else None

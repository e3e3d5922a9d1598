"""Whether a datasite may speak for itself at the hub now: one check, used by every route a
datasite's signed envelope reaches (``ndl.hub.deps``) and by anything that queues it work.

A refusal is a sentence saying who can lift it; ``None`` means the datasite is in good
standing. States: ``pending`` (joined, not yet approved), ``approved``, ``retired`` (left
the federation for good); an admin's suspension (identity, issue 13 part 1) is checked here
too when the column exists.
"""

from __future__ import annotations

from ndl.federation.models import Datasite


def refusal(site: Datasite) -> str | None:
    """Why ``site`` may not poll, publish or report now; None when it may."""
    if site.state == "retired":
        when = site.retired_at.date().isoformat() if site.retired_at else "earlier"
        return (f"datasite {site.id!r} was retired on {when} and has left the federation: "
                "its key is no longer accepted. To take part again, register a new datasite "
                f"with a data steward of {site.org_id!r}")
    if site.state == "pending":
        return (f"datasite {site.id!r} is waiting for approval: a data steward of "
                f"{site.org_id!r} (or an admin) must approve it with 'ndl steward "
                f"approve-datasite {site.id}' or on its page at /datasites/{site.id}")
    suspended = getattr(site, "suspended_at", None)
    if suspended is not None:
        return (f"datasite {site.id!r} is suspended: an admin must reinstate it "
                f"('ndl admin reinstate-datasite {site.id}')")
    return None

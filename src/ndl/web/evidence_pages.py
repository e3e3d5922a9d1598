"""The account page: who you are, your roles (with their SATRE names), your evidence and what
is due for renewal. The page arranges what :mod:`ndl.access.evidence` returns; that service
checks who may see what."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment
from sqlalchemy.orm import Session

from ndl.access import evidence, references, roles
from ndl.access.accounts import Principal
from ndl.web.forms import Who, show, sign_in_redirect

router = APIRouter(include_in_schema=False)


def account_context(s: Session, who: Principal) -> tuple[str, dict[str, Any]]:
    found = evidence.list_evidence(s, who)
    return "account.html", {
        "username": who.username, "org": who.org_id,
        "roles": [roles.BY_ID[r] for r in sorted(who.roles) if r in roles.BY_ID],
        "evidence": found, "renew": [e for e in found if e.renew],
        "references_due": references.due_for_lead(s, who),
        "renew_within_days": evidence.RENEW_WITHIN_DAYS,
    }


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, who: Who) -> Response:
    if who is None:
        return sign_in_redirect(request)
    return show(request, lambda s: account_context(s, who))


def install(env: Environment) -> None:
    """``role_label``: a role id as pages show it (ndl.access.roles)."""
    env.filters["role_label"] = roles.label

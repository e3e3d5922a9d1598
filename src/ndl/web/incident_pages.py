"""The "Notices" page: incident notices addressed to you and the incidents you may see.

Read-only: incidents are raised with ``ndl incident raise`` or ``POST /api/incidents`` and
answered by admins with ``ndl admin incident``. Each page calls ``ndl.federation.incidents``,
the module behind the JSON API, so the same rules decide what a person sees.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from ndl.access import rules
from ndl.core.errors import NotFound
from ndl.federation import incidents
from ndl.web.forms import Who, show, sign_in_redirect

router = APIRouter(include_in_schema=False)


@router.get("/notices", response_class=HTMLResponse)
def notices_page(request: Request, who: Who) -> Response:
    if who is None:
        return sign_in_redirect(request)

    def build(s: Session) -> tuple[str, dict[str, Any]]:
        return "notices.html", {
            "notices": [n.to_json() for n in incidents.my_notices(s, who)],
            "incidents": [i.to_json() for i in incidents.list_incidents(s, who)],
            "is_admin": rules.may_see_every_incident(who)}

    return show(request, build)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, who: Who, incident_id: str) -> Response:
    if who is None:
        return sign_in_redirect(request)
    if not incident_id.isdecimal() or len(incident_id) > 12:
        raise NotFound(f"incident {incident_id[:20]!r} does not exist")

    def build(s: Session) -> tuple[str, dict[str, Any]]:
        return "incident.html", {
            "incident": incidents.get_incident(s, who, int(incident_id)).to_json()}

    return show(request, build)

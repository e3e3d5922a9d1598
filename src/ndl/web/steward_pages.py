"""The data steward's page: requests waiting for their organisation, and the grants on its
datasets, with forms to approve, reject and revoke.

The queue, decisions and revocations go through :mod:`ndl.access.service`, as the JSON API's
do, so the same rules hold: only a steward of the dataset's organisation, never on their own
project, a reason to reject or revoke, each decision once, and the datasite told at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access import evidence, references, service
from ndl.access import projects as proj
from ndl.access import requests as access
from ndl.access.accounts import Principal
from ndl.core.db import RowId, utcnow
from ndl.core.errors import InvalidInput, NdlError
from ndl.hub.deps import hub
from ndl.web.dataset_view import links_for
from ndl.web.forms import (
    MAX_FIELD_CHARS,
    Who,
    ashow,
    error_list,
    field_errors,
    posted,
    see_other,
    show,
    sign_in_redirect,
    value,
)
from ndl.web.render import pages_of

router = APIRouter(include_in_schema=False)

DONE = {"approve": "You approved the request.", "reject": "You rejected the request.",
        "revoke": "You revoked the grant. The datasite has been told to refuse new work "
                  "under it."}


def _not_a_steward(request: Request) -> HTMLResponse:
    return pages_of(request).error(
        request, 403, "This page is for data stewards",
        "Your account does not have the steward role. Data stewards decide requests for "
        "their organisation's datasets; ask your library administrator if you should be one.")


def steward_context(s: Session, who: Principal, *, errors: dict[str, str] | None = None,
                    reasons: dict[str, str] | None = None, done: str = "",
                    status: int = 200) -> tuple[str, dict[str, Any]]:
    """The queue of pending items for the steward's organisation, then its active grants."""
    queue = service.steward_queue(s, who)
    now = utcnow()
    pending = [{
        **access.item_json(p.item), "project": proj.public_project(p.project),
        "title": p.dataset.title if p.dataset else p.item.dataset_id,
        "href": links_for(p.item.dataset_id)["page"] if p.dataset else None,
        "own": p.own,
        "waiting_hours": (now - p.item.created_at).total_seconds() / 3600,
        # What the steward judges the project's governance by: its references, and what the
        # dataset's policy requires that is not valid today (checked again at every use).
        "references": [references.view(r) for r in p.project.references],
        "shortfalls": evidence.shortfalls(
            s, p.project, [m.user_id for m in p.project.members],
            evidence.requirements_for(s, p.dataset.tier, access.policy_of(p.dataset).requires)
        ) if p.dataset else [],
    } for p in queue.pending]
    grants = [{**access.grant_json(g.grant), "title": g.dataset.title,
               "href": links_for(g.dataset.id)["page"], "project_title": g.project_title}
              for g in queue.grants]
    org = queue.org
    errors = errors or {}
    return "stewards.html", {
        "org": {"id": org.id, "name": org.name} if org else None,
        "pending": pending, "grants": grants, "errors": errors,
        "error_list": error_list(errors), "reasons": reasons or {},
        "done": DONE.get(done), "status": status,
    }


@router.get("/stewards", response_class=HTMLResponse)
def stewards_page(request: Request, who: Who, done: str = "") -> Response:
    if who is None:
        return sign_in_redirect(request)
    if not service.can_decide_requests(who):
        return _not_a_steward(request)
    return show(request, lambda s: steward_context(s, who, done=done))


async def _act(request: Request, who: Who, field: str,
               act: Callable[[Principal, str, str], object], done: str) -> Response:
    """Post a steward's form: run ``act(who, reason, decision)``, or show the page with errors.

    ``field`` is the id of the reason box of this form, where a missing reason is shown.
    """
    got = await posted(request, who, "/stewards")
    if isinstance(got, Response):
        return got
    form, who = got
    if not service.can_decide_requests(who):
        return _not_a_steward(request)
    reason = value(form, "reason", MAX_FIELD_CHARS)
    decision = value(form, "decision", 10)
    try:
        await run_in_threadpool(act, who, reason, decision)
    except NdlError as exc:
        errors = field_errors(exc, ["reason"], "queue")
        if "reason" in errors:
            errors = {field: errors["reason"]}
        status = exc.http_status
        return await ashow(request, lambda s: steward_context(
            s, who, errors=errors, reasons={field: reason}, status=status))
    return see_other(f"/stewards?done={decision if done == 'decision' else done}")


@router.post("/stewards/items/{item_id}/decision", response_class=HTMLResponse)
async def decide(request: Request, item_id: RowId, who: Who) -> Response:
    def act(who: Principal, reason: str, decision: str) -> None:
        if decision not in ("approve", "reject"):
            raise InvalidInput("decision: choose Approve or Reject")
        service.decide(hub(request), who, service.Decision(
            item_id=item_id, approve=decision == "approve", reason=reason))

    return await _act(request, who, f"reason-{item_id}", act, "decision")


@router.post("/stewards/grants/{grant_id}/revoke", response_class=HTMLResponse)
async def revoke(request: Request, grant_id: str, who: Who) -> Response:
    def act(who: Principal, reason: str, _: str) -> None:
        service.revoke_grant(hub(request), who,
                             service.Revocation(grant_id=grant_id, reason=reason))

    return await _act(request, who, f"revoke-reason-{grant_id}", act, "revoke")

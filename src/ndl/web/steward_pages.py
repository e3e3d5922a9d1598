"""The data steward's page: requests waiting for their organisation, and the grants on its
datasets, with forms to approve, reject and revoke.

Decisions go through ``ndl.access.requests.decide_item`` and ``revoke_grant``, the functions
behind the JSON API, so the same rules hold: only a steward of the dataset's organisation,
never on their own project, a reason to reject or revoke, and each decision once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from starlette.concurrency import run_in_threadpool

from ndl.access import projects as proj
from ndl.access import requests as access
from ndl.access.accounts import Principal, get_org
from ndl.access.project_models import AccessRequest, Grant, Project
from ndl.catalogue.models import Dataset
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NdlError
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
    org = get_org(s, who.org_id) if who.org_id else None
    org_id = org.id if org else ""
    pending = []
    now = utcnow()
    for item in access.pending_for_org(s, org_id):
        req = s.get(AccessRequest, item.request_id)
        assert req is not None
        project = proj.get_project(s, req.project_id)
        ds = s.get(Dataset, item.dataset_id)
        pending.append({
            **access.item_json(item), "project": proj.public_project(project),
            "title": ds.title if ds else item.dataset_id,
            "href": links_for(item.dataset_id)["page"] if ds else None,
            "own": proj.member_of(project, who),
            "waiting_hours": (now - item.created_at).total_seconds() / 3600,
        })
    rows = s.execute(
        select(Grant, Dataset).join(Dataset, Dataset.id == Grant.dataset_id)
        .where(Dataset.org_id == org_id, Grant.revoked_at.is_(None), Grant.expires_at > now)
        .order_by(Grant.granted_at.desc())).all() if org_id else []
    titles = {p.id: p.title for p in s.scalars(select(Project).where(
        Project.id.in_({g.project_id for g, _ in rows})))} if rows else {}
    grants = [{**access.grant_json(g), "title": ds.title, "href": links_for(ds.id)["page"],
               "project_title": titles.get(g.project_id, g.project_id)} for g, ds in rows]
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
    if not who.has("steward"):
        return _not_a_steward(request)
    return show(request, lambda s: steward_context(s, who, done=done))


async def _act(request: Request, who: Who, field: str,
               act: Any, done: str) -> Response:
    """Post a steward's form: run ``act`` in a write session, or show the page with errors.

    ``field`` is the id of the reason box of this form, where a missing reason is shown.
    """
    got = await posted(request, who, "/stewards")
    if isinstance(got, Response):
        return got
    form, who = got
    if not who.has("steward"):
        return _not_a_steward(request)
    reason = value(form, "reason", MAX_FIELD_CHARS)
    decision = value(form, "decision", 10)
    state = hub(request)

    def run() -> None:
        with state.db.write() as s:
            act(s, who, reason, decision)

    try:
        try:
            await run_in_threadpool(run)
        except StaleDataError as exc:  # another steward decided in the same moment
            raise Conflict("someone else decided this request at the same moment; check "
                           "its state below") from exc
    except NdlError as exc:
        errors = field_errors(exc, ["reason"], "queue")
        if "reason" in errors:
            errors = {field: errors["reason"]}
        status = exc.http_status
        return await ashow(request, lambda s: steward_context(
            s, who, errors=errors, reasons={field: reason}, status=status))
    return see_other(f"/stewards?done={decision if done == 'decision' else done}")


@router.post("/stewards/items/{item_id}/decision", response_class=HTMLResponse)
async def decide(request: Request, item_id: int, who: Who) -> Response:
    def act(s: Session, who: Principal, reason: str, decision: str) -> None:
        if decision not in ("approve", "reject"):
            raise InvalidInput("decision: choose Approve or Reject")
        access.decide_item(s, hub(request).key, who, item_id, approve=decision == "approve",
                           reason=reason)

    return await _act(request, who, f"reason-{item_id}", act, "decision")


@router.post("/stewards/grants/{grant_id}/revoke", response_class=HTMLResponse)
async def revoke(request: Request, grant_id: str, who: Who) -> Response:
    site: list[str] = []

    def act(s: Session, who: Principal, reason: str, _: str) -> None:
        grant = access.revoke_grant(s, hub(request).key, who, grant_id, reason)
        site.append(grant.dataset_id.split("/", 1)[0])

    response = await _act(request, who, f"revoke-reason-{grant_id}", act, "revoke")
    if site and response.status_code == 303:
        # As the JSON API does: wake the datasite's open long-poll so it hears at once.
        hub(request).notifier.notify(f"site:{site[0]}")
    return response

"""A datasite's page: its membership (pending, approved, retired) and its latest signed
status report, with "stale" when the next report is late; a data steward of its
organisation (or an admin) approves a pending datasite here, as with 'ndl steward
approve-datasite'. Everything goes through :mod:`ndl.federation.membership`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access.accounts import Principal
from ndl.catalogue import service as catalogue
from ndl.core.errors import NdlError
from ndl.federation import membership
from ndl.hub.deps import hub
from ndl.web.dataset_view import links_for
from ndl.web.forms import Who, error_page, posted, see_other, show

router = APIRouter(include_in_schema=False)


def datasite_context(s: Session, who: Principal | None, datasite_id: str,
                     done: str = "") -> tuple[str, dict[str, Any]]:
    site = membership.get_site(s, datasite_id)
    status = membership.site_status(s, site)
    datasets = [{"title": d.title, "href": links_for(d.id)["page"]}
                for d in catalogue.list_datasets(s, site.id) if d.withdrawn_at is None]
    return "datasite.html", {
        "site": status.to_json(), "datasets": datasets,
        "may_approve": membership.may_approve(who, site),
        "done": "You approved the datasite: it may now publish and answer." if done else "",
    }


@router.get("/datasites/{datasite_id}", response_class=HTMLResponse)
def datasite_page(request: Request, datasite_id: str, who: Who, done: str = "") -> Response:
    return show(request, lambda s: datasite_context(s, who, datasite_id, done))


@router.post("/datasites/{datasite_id}/approve", response_class=HTMLResponse)
async def approve(request: Request, datasite_id: str, who: Who) -> Response:
    got = await posted(request, who, f"/datasites/{datasite_id}")
    if isinstance(got, Response):
        return got
    _, who = got
    state = hub(request)

    def act() -> None:
        with state.db.write() as s:
            membership.approve(s, state.key, who, datasite_id)

    try:
        await run_in_threadpool(act)
    except NdlError as exc:
        return error_page(request, exc)
    return see_other(f"/datasites/{datasite_id}?done=approved")


"""Project pages: my projects, a new project, and a project's register record with its
requests, grants, what each grant's tier offers and a form to ask for more data.

Anyone may read a project's public record (what the public register holds: no names). Its
members also see the team, the grants and the forms. Every read and change goes through the
services the JSON API calls (:mod:`ndl.access.service`), which check their own rules; the
pages only arrange the results. What a granted dataset offers is worded from
:data:`ndl.core.tiers.TIERS` in the template: safeguarded data links to its private-question
page, controlled data offers metadata and mock rows.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access import projects as proj
from ndl.access import references, rules, service
from ndl.access import requests as access
from ndl.access.accounts import Principal
from ndl.access.policy import LEGAL_BASES, PURPOSES
from ndl.access.service import NewProject
from ndl.catalogue.models import Dataset
from ndl.core.errors import InvalidInput, NdlError
from ndl.hub.deps import hub
from ndl.web.dataset_view import links_for
from ndl.web.forms import (
    MAX_FIELD_CHARS,
    Who,
    ashow,
    error_list,
    error_page,
    field_errors,
    posted,
    see_other,
    sentence,
    show,
    sign_in_redirect,
    value,
    values,
)
from ndl.web.render import pages_of

router = APIRouter(include_in_schema=False)

PURPOSE_LABELS = {
    "research": "Research", "statistics": "Official statistics",
    "service-improvement": "Improving a public service",
    "policy-development": "Developing policy", "commercial-research": "Commercial research",
}
LEGAL_BASIS_LABELS = {
    "public-task": "Public task", "legitimate-interests": "Legitimate interests",
    "consent": "Consent", "research-exemption": "Research exemption",
    "section-251": "Section 251 support (NHS Act 2006)",
    "statutory-gateway": "A statutory gateway (for example the Digital Economy Act 2017)",
}
PROJECT_FIELDS = ("title", "purpose", "purpose_category", "lay_summary", "legal_basis",
                  "end_date", "members")
# The date input's first box is what an error links to.
FIELD_IDS = {"end_date": "end_date-day", "purpose_category": "purpose_category",
             "legal_basis": "legal_basis"}
CHOOSE = {"purpose_category": "Choose what kind of purpose the project has",
          "legal_basis": "Choose the legal basis for the project"}
FIELD_NAMES = {"end_date": "The end date", "purpose_category": "The kind of purpose",
               "legal_basis": "The legal basis"}


# --- my projects ----------------------------------------------------------------------------

@router.get("/projects", response_class=HTMLResponse)
def my_projects(request: Request, who: Who) -> Response:
    if who is None:
        return sign_in_redirect(request)

    def build(s: Session) -> tuple[str, dict[str, Any]]:
        rows = [{**proj.public_project(m.project), "created_at": m.project.created_at,
                 "role": m.role} for m in service.my_projects(s, who)]
        return "projects.html", {"projects": rows,
                                 "can_create": service.can_create_projects(who)}

    return show(request, build)


# --- a new project --------------------------------------------------------------------------

def _new_form(request: Request, form: dict[str, str] | None = None,
              errors: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
    errors = errors or {}
    ordered = {f: errors[f] for f in PROJECT_FIELDS if f in errors}
    return pages_of(request).render(request, "project_new.html", {
        "form": form or {}, "errors": ordered,
        "error_list": error_list(ordered, FIELD_IDS),
        "purposes": [{"value": p, "text": PURPOSE_LABELS.get(p, p)} for p in PURPOSES],
        "legal_bases": [{"value": b, "text": LEGAL_BASIS_LABELS.get(b, b)}
                        for b in LEGAL_BASES],
    }, status=status)


def _not_a_researcher(request: Request) -> HTMLResponse:
    return pages_of(request).error(
        request, 403, "Only researchers can create projects",
        "Your account does not have the researcher role. Ask your organisation's library "
        "administrator to add it.")


@router.get("/projects/new", response_class=HTMLResponse)
def new_project_form(request: Request, who: Who) -> Response:
    if who is None:
        return sign_in_redirect(request)
    if not service.can_create_projects(who):
        return _not_a_researcher(request)
    return _new_form(request)


def end_date_of(day: str, month: str, year: str) -> tuple[date | None, str]:
    """The date typed into the three boxes, or None and what to fix (GOV.UK wording)."""
    if not (day or month or year):
        return None, "Enter the date the project ends"
    missing = [n for n, v in (("day", day), ("month", month), ("year", year)) if not v]
    if missing:
        return None, f"The end date must include a {' and '.join(missing)}"
    if not (day.isdigit() and month.isdigit() and year.isdigit() and len(year) == 4):
        return None, "The end date must be a real date, for example 31 3 2027"
    try:
        return date(int(year), int(month), int(day)), ""
    except ValueError:
        return None, "The end date must be a real date, for example 31 3 2027"


def _in_words(field: str, message: str, form: dict[str, str]) -> str:
    """GOV.UK wording where the service's message is about a value, not a person's answer."""
    if field in CHOOSE and not form.get(field):
        return CHOOSE[field]
    if message.startswith("Must "):
        return f"{FIELD_NAMES.get(field, field)} m{message[1:]}"
    return message


class _DryRun(Exception):
    """Rolls back a create that was only run to collect the service's field errors."""


@router.post("/projects/new", response_class=HTMLResponse)
async def create_project(request: Request, who: Who) -> Response:
    got = await posted(request, who, "/projects/new")
    if isinstance(got, Response):
        return got
    raw, who = got
    if not service.can_create_projects(who):
        return _not_a_researcher(request)
    form = {f: value(raw, f, MAX_FIELD_CHARS) for f in PROJECT_FIELDS if f != "end_date"}
    for part in ("day", "month", "year"):
        form[f"end_date-{part}"] = value(raw, f"end_date-{part}", 8)
    end, date_error = end_date_of(form["end_date-day"], form["end_date-month"],
                                  form["end_date-year"])
    members = [m.lower() for m in form["members"].replace(",", " ").split()]
    state = hub(request)

    def create() -> str:
        with state.db.write() as s:
            # An unreadable date still gets every other field checked: today is never a valid
            # end date, so the service refuses, and _DryRun undoes it if it ever did not.
            # model_construct: the service checks every field and says which is wrong, in
            # the words the form shows (a pydantic error would name none).
            p = service.create_project(s, state.key, who, NewProject.model_construct(
                title=form["title"], purpose=form["purpose"],
                purpose_category=form["purpose_category"], lay_summary=form["lay_summary"],
                legal_basis=form["legal_basis"], end_date=end or date.today(),
                members=members))
            if end is None:
                raise _DryRun
            return p.id

    try:
        project_id = await run_in_threadpool(create)
    except InvalidInput as exc:
        errors = {f: _in_words(f, m, form) for f, m in
                  field_errors(exc, PROJECT_FIELDS, "title").items()}
        if date_error:
            errors["end_date"] = date_error
        return _new_form(request, form, errors, status=422)
    except _DryRun:
        return _new_form(request, form, {"end_date": date_error}, status=422)
    except NdlError as exc:
        return error_page(request, exc)
    return see_other(f"/projects/{project_id}?created=1")


# --- a project ------------------------------------------------------------------------------

def _label(ds: Dataset | None, dataset_id: str) -> dict[str, Any]:
    return {"title": ds.title if ds else dataset_id,
            "href": links_for(dataset_id)["page"] if ds else None}


def _requestable(record: service.ProjectRecord) -> list[dict[str, Any]]:
    """The datasets the project may still ask for, by organisation."""
    groups: dict[str, dict[str, Any]] = {}
    for ds in record.requestable:
        group = groups.setdefault(ds.org_id, {
            "org": ds.org_id, "name": record.org_names.get(ds.org_id, ds.org_id),
            "items": []})
        group["items"].append({
            "value": ds.id, "text": ds.title,
            "hint": {"text": f"{ds.tier.capitalize()}. "
                             f"{access.policy_of(ds).summary(ds.tier)}"}})
    return list(groups.values())


def project_context(s: Session, project_id: str, who: Principal | None, *,
                    errors: dict[str, str] | None = None,
                    requested: int | None = None, created: bool = False,
                    status: int = 200) -> tuple[str, dict[str, Any]]:
    """Everything project.html needs. Members see names, grants and the forms."""
    record = service.project_record(s, who, project_id)
    p, member = record.project, record.member
    requests = []
    for r in record.requests:
        view = access.request_json(r, names=member)
        for item in view["items"]:
            item.update(_label(record.datasets.get(item["dataset"]), item["dataset"]))
            item["org_name"] = record.org_names.get(item["org"], item["org"])
        requests.append(view)
    grant_views = [{**access.grant_json(g),
                    **_label(record.datasets.get(g.dataset_id), g.dataset_id)}
                   for g in record.grants]
    banner = None
    just_sent = next((r for r in requests if r["id"] == requested), None)
    if just_sent is not None:
        counts = {state: sum(1 for i in just_sent["items"] if i["state"] == state)
                  for state in ("granted", "pending", "rejected")}
        banner = {"kind": "request", **counts}
    elif created:
        banner = {"kind": "created"}
    errors = errors or {}
    context: dict[str, Any] = {
        "project": {**proj.public_project(p), "created_at": p.created_at},
        "purpose_label": PURPOSE_LABELS.get(p.purpose_category, p.purpose_category),
        "legal_basis_label": LEGAL_BASIS_LABELS.get(p.legal_basis, p.legal_basis),
        "member": member, "signed_in": who is not None, "live": record.live,
        "members": proj.project_json(p)["members"] if member else [],
        # Ethics approval, DPIA, data-sharing agreement: members, stewards and admins.
        "references": (references.list_references(s, who, p.id)
                       if rules.may_see_references(who, member=member) else None),
        "requests": requests, "grants": grant_views,
        "active_grants": [g for g in grant_views if g["state"] == "active"],
        "requestable": _requestable(record),
        "errors": errors,
        "error_list": error_list(errors, {"datasets": "datasets"}),
        "banner": banner, "status": status,
        "sign_in_href": f"/sign-in?next=/projects/{p.id}",
    }
    return "project.html", context


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, project_id: str, who: Who, requested: str = "",
                 created: str = "") -> Response:
    number = int(requested) if requested.isdecimal() and len(requested) < 12 else None
    return show(request, lambda s: project_context(s, project_id, who, requested=number,
                                                   created=bool(created)))


async def _require_member(request: Request, project_id: str, who: Principal) -> None:
    """Refuse a stranger before doing anything, so nothing shows them the private page."""
    state = hub(request)

    def check() -> None:
        with state.db.read() as s:
            service.require_member(s, who, project_id)

    await run_in_threadpool(check)


@router.post("/projects/{project_id}/requests", response_class=HTMLResponse)
async def request_access(request: Request, project_id: str, who: Who) -> Response:
    """Ask for several datasets, at several organisations, in one request."""
    got = await posted(request, who, f"/projects/{project_id}")
    if isinstance(got, Response):
        return got
    form, who = got
    try:
        await _require_member(request, project_id, who)
    except NdlError as exc:
        return error_page(request, exc)
    chosen = values(form, "datasets")
    state = hub(request)

    def submit() -> int:
        with state.db.write() as s:
            return service.request_access(s, state.key, who, project_id, chosen).id

    try:
        request_id = await run_in_threadpool(submit)
    except NdlError as exc:
        errors, status = {"datasets": sentence(exc.message)}, exc.http_status
        return await ashow(request, lambda s: project_context(
            s, project_id, who, errors=errors, status=status))
    return see_other(f"/projects/{project_id}?requested={request_id}#requests")

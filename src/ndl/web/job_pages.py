"""Controlled-tier jobs in the browser: my jobs, one job, its code, and the cancel button.

Every page calls :mod:`ndl.jobs.service` (and :mod:`ndl.jobs.checking` for outputs) with the
signed-in principal: the services decide who sees what, so a job outside the viewer's reach is
"page not found" here as it is in the JSON API. What a page offers (cancel, download, review,
check) comes from :func:`ndl.jobs.service.offers`, never from a role or state test here.

A job's page refreshes itself every few seconds while its datasite works on it (no
JavaScript needed), and carries a warning on every view when the job ran without the
bubblewrap sandbox. The review and output-checking pages are :mod:`ndl.web.job_check_pages`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool

from ndl.access import rules
from ndl.core.errors import NdlError
from ndl.hub.deps import hub
from ndl.jobs import service
from ndl.jobs.report import OutputReport
from ndl.jobs.views import JobView
from ndl.web.forms import Who, crash_page, error_page, posted, see_other, sign_in_redirect
from ndl.web.render import pages_of
from ndl.web.session import web_of

router = APIRouter(include_in_schema=False)

REFRESH_SECONDS = 5
STATE_TAGS = {
    "awaiting_review": "govuk-tag--blue", "approved": "govuk-tag--light-blue",
    "queued": "govuk-tag--light-blue", "running": "govuk-tag--light-blue",
    "awaiting_output_check": "govuk-tag--purple", "released": "govuk-tag--green",
    "returned": "govuk-tag--orange", "rejected": "govuk-tag--red",
    "review_rejected": "govuk-tag--red", "failed": "govuk-tag--red",
    "cancelled": "govuk-tag--grey",
}
STATUS_TAGS = {"checked": ("Passed the checks", "govuk-tag--green"),
               "review": ("Needs a checker's judgement", "govuk-tag--yellow"),
               "withheld": ("Withheld", "govuk-tag--red")}
DONE = {
    "submitted": "Your job was submitted.",
    "cancelled": "You cancelled the job.",
    "approve": "You approved the code. The job is queued at the datasite.",
    "reject": "You rejected the code. The researcher sees your reasons.",
    "checked-approve": "You approved the outputs.",
    "checked-return": "You returned the outputs to the researcher with your comments.",
    "checked-reject": "You rejected the outputs.",
}


# --- shared by the job pages ----------------------------------------------------------------

def code_href(sha256: str) -> str:
    return f"/jobs/code/{quote(sha256, safe='')}"


def job_href(job_id: str, tail: str = "") -> str:
    return f"/jobs/{quote(job_id, safe='')}{tail}"


def dataset_href(dataset_id: str) -> str:
    return "/datasets/" + "/".join(quote(p, safe="") for p in dataset_id.split("/", 1))


def state_tag(view: JobView) -> dict[str, str]:
    return {"text": view.state_words[:1].upper() + view.state_words[1:],
            "classes": STATE_TAGS.get(view.state, "govuk-tag--grey")}


def output_view(o: OutputReport) -> dict[str, Any]:
    """One output of a job's report, as the templates show it (findings cell by cell)."""
    label, tag = STATUS_TAGS.get(o.status, (o.status, "govuk-tag--grey"))
    return {"name": o.name, "kind": o.kind.replace("_", " "), "file": o.file,
            "description": o.description, "status": o.status, "status_label": label,
            "status_tag": tag, "summary": o.summary, "problem": o.problem,
            "made_by": o.made_by, "cells": o.cells, "suppressed": o.suppressed,
            "findings": [{"cell": " \u00d7 ".join(f.cell) if f.cell else "the whole output",
                          "rule": f.rule, "action": f.action, "detail": f.detail}
                         for f in o.findings]}


def job_context(view: JobView, offers: service.JobOffers) -> dict[str, Any]:
    """What every job template needs about one job (pure: no hub)."""
    report = view.report
    return {
        "job": view, "offers": offers, "state_tag": state_tag(view),
        "percent": max(0, min(100, round(view.progress * 100))),
        "code_href": code_href(view.code_sha256), "job_href": job_href(view.id),
        "datasets": [{"id": d, "href": dataset_href(d)} for d in view.datasets],
        "weaker": view.sandbox == "weaker",
        "outputs": [output_view(o) for o in report.outputs] if report else [],
        "problems": list(report.problems) if report else [],
        "undeclared": report.undeclared if report else 0,
        "outputs_href": f"/api/jobs/{quote(view.id, safe='')}/outputs",
    }


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "private, no-store"
    return response


def page(request: Request, template: str, build: Callable[[], dict[str, Any]]
         ) -> Response:
    """Run ``build`` (service calls) and render its context; errors become pages."""
    try:
        context = build()
        status = int(context.pop("status", 200))
        response: Response = pages_of(request).render(request, template, context,
                                                      status=status)
    except NdlError as exc:
        response = error_page(request, exc)
    except Exception:
        response = crash_page(request)
    return _no_store(response)


async def apage(request: Request, template: str, build: Callable[[], dict[str, Any]]
                ) -> Response:
    return await run_in_threadpool(page, request, template, build)


# --- navigation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class JobNav:
    jobs: bool
    review: bool
    check: bool


def job_nav(request: Request) -> JobNav:
    """Which job links the header shows the signed-in user."""
    user = web_of(request).user
    return JobNav(jobs=user is not None, review=rules.is_code_reviewer(user),
                  check=rules.is_output_checker(user))


def install(env: Environment) -> None:
    env.globals["job_nav"] = job_nav


# --- pages ----------------------------------------------------------------------------------

@router.get("/jobs", response_class=HTMLResponse)
async def my_jobs(request: Request, who: Who) -> Response:
    if who is None:
        return sign_in_redirect(request)
    state = hub(request)

    def build() -> dict[str, Any]:
        jobs = service.mine(state, who)
        return {"jobs": [{"job": j, "state_tag": state_tag(j), "href": job_href(j.id),
                          "datasets": [{"id": d, "href": dataset_href(d)} for d in j.datasets]}
                         for j in jobs]}

    return await apage(request, "jobs/jobs.html", build)


@router.get("/jobs/code/{sha256}", response_class=HTMLResponse)
async def code_page(request: Request, sha256: str, who: Who) -> Response:
    state = hub(request)

    def build() -> dict[str, Any]:
        code = service.code(state, who, sha256[:64])
        return {"code": code, "files": sorted(code.files.items())}

    return await apage(request, "jobs/code.html", build)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str, who: Who, done: str = "") -> Response:
    if who is None:
        return sign_in_redirect(request)
    state = hub(request)

    def build() -> dict[str, Any]:
        view = service.get(state, who, job_id[:40])
        offers = service.offers(state, who, view)
        return {**job_context(view, offers), "log": service.logs(state, who, view.id),
                "refresh": REFRESH_SECONDS if offers.live else None,
                "done": DONE.get(done)}

    return await apage(request, "jobs/job.html", build)


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
async def cancel_job(request: Request, job_id: str, who: Who) -> Response:
    got = await posted(request, who, job_href(job_id[:40]))
    if isinstance(got, Response):
        return got
    _, actor = got
    try:
        view = await run_in_threadpool(service.cancel, hub(request), actor, job_id[:40])
    except NdlError as exc:
        return error_page(request, exc)
    except Exception:
        return crash_page(request)
    return see_other(job_href(view.id, "?done=cancelled"))

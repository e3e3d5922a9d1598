"""The people who judge jobs: data stewards review the code, output checkers the outputs.

``/code-to-review`` and ``/jobs/{id}/review`` are the steward's queue and page (the code file
by file, its difference from code approved before for the project, the context and declared
outputs, and a form to approve or reject with reasons); ``/outputs-to-check`` and
``/jobs/{id}/check`` the output checker's (each file shown: CSV as a table, figures inline,
text escaped; the automatic checks' findings cell by cell; and a form to approve, return or
reject). Decisions go through :func:`ndl.jobs.service.review` and
:func:`ndl.jobs.checking.decide`, which hold every rule; blind review is the service's too:
these pages show other checkers' decisions only as its view gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from ndl.core.errors import InvalidInput, NdlError, NotFound, PermissionDenied
from ndl.hub.deps import hub
from ndl.jobs import checking, service
from ndl.jobs.views import JobView, OutputFile
from ndl.web.forms import (
    MAX_FIELD_CHARS,
    Who,
    crash_page,
    error_page,
    posted,
    see_other,
    sentence,
    sign_in_redirect,
    value,
)
from ndl.web.job_pages import DONE, apage, job_context, job_href, state_tag

router = APIRouter(include_in_schema=False)


def diff_lines(text: str) -> list[dict[str, str]]:
    """A unified diff as lines with a kind each: added, removed, header or context."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            kind = "header"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "added"
        elif line.startswith("-"):
            kind = "removed"
        else:
            kind = "context"
        out.append({"kind": kind, "text": line})
    return out


def file_view(job_id: str, f: OutputFile) -> dict[str, Any]:
    rows = f.rows or []
    return {"name": f.name, "size": f.size, "media_type": f.media_type,
            "header": rows[0] if rows else [], "rows": rows[1:],
            "text": f.text if f.media_type != "text/csv" else None,
            "src": job_href(job_id, f"/figures/{f.name}")
            if f.media_type == "image/png" else None}


def _queue_items(jobs: list[JobView], tail: str) -> list[dict[str, Any]]:
    return [{"job": j, "state_tag": state_tag(j), "href": job_href(j.id, tail)} for j in jobs]


# --- the steward's pages --------------------------------------------------------------------

async def _queue_page(request: Request, who: Any, done: str, *, kind: str, title: str,
                      jobs: Callable[[Any, Any], list[JobView]], tail: str) -> Response:
    """A queue of jobs waiting for ``who`` (the service decides who may see which)."""
    if who is None:
        return sign_in_redirect(request)
    state = hub(request)

    def build() -> dict[str, Any]:
        return {"kind": kind, "title": title, "done": DONE.get(done),
                "items": _queue_items(jobs(state, who), tail)}

    return await apage(request, "jobs/queue.html", build)


@router.get("/code-to-review", response_class=HTMLResponse)
async def code_to_review(request: Request, who: Who, done: str = "") -> Response:
    return await _queue_page(request, who, done, kind="review", title="Code to review",
                             jobs=service.review_queue, tail="/review")


@router.get("/jobs/{job_id}/review", response_class=HTMLResponse)
async def review_page(request: Request, job_id: str, who: Who) -> Response:
    if who is None:
        return sign_in_redirect(request)
    return await apage(request, "jobs/review.html",
                       lambda: _review_context(request, job_id[:40], who))


def _review_context(request: Request, job_id: str, who: Any, *,
                    error: str = "", reasons: str = "", status: int = 200) -> dict[str, Any]:
    state = hub(request)
    view = service.get(state, who, job_id)
    offers = service.offers(state, who, view)
    if not offers.reviewer:
        raise PermissionDenied(f"only a data steward of {view.org} who did not write job "
                               f"{view.id} can review its code")
    code = service.code(state, who, view.code_sha256)
    against, text = service.diff(state, who, view.id)
    return {**job_context(view, offers), "files": sorted(code.files.items()),
            "against": against, "diff": diff_lines(text), "error": error,
            "reasons": reasons, "status": status}


async def _decide(request: Request, job_id: str, who: Any, *, page: str, words: str,
                  act: Callable[[Any, str, str], object],
                  again: Callable[[Any, str, str], dict[str, Any]], done: str) -> Response:
    """One decision form (a steward's on code, a checker's on outputs): act through the
    service, show the form again with the service's words on bad input, else go on."""
    job_id = job_id[:40]
    got = await posted(request, who, job_href(job_id, f"/{page}"))
    if isinstance(got, Response):
        return got
    form, actor = got
    decision, text = value(form, "decision", 10), value(form, words, MAX_FIELD_CHARS)
    try:
        await run_in_threadpool(act, actor, decision, text)
    except NdlError as exc:
        if not isinstance(exc, InvalidInput):
            return error_page(request, exc)
        message = sentence(exc.message)
        return await apage(request, f"jobs/{page}.html", lambda: again(actor, message, text))
    except Exception:
        return crash_page(request)
    return see_other(done.format(decision=decision))


@router.post("/jobs/{job_id}/review", response_class=HTMLResponse)
async def review_decision(request: Request, job_id: str, who: Who) -> Response:
    return await _decide(
        request, job_id, who, page="review", words="reasons",
        act=lambda actor, d, text: service.review(hub(request), actor, job_id[:40],
                                                  decision=d, reasons=text),
        again=lambda actor, message, text: _review_context(
            request, job_id[:40], actor, error=message, reasons=text, status=422),
        done="/code-to-review?done={decision}")


# --- the output checker's pages -------------------------------------------------------------

@router.get("/outputs-to-check", response_class=HTMLResponse)
async def outputs_to_check(request: Request, who: Who, done: str = "") -> Response:
    return await _queue_page(request, who, done, kind="check", title="Outputs to check",
                             jobs=checking.queue, tail="/check")


def _check_context(request: Request, job_id: str, who: Any, *, error: str = "",
                   comments: str = "", status: int = 200) -> dict[str, Any]:
    state = hub(request)
    view = service.get(state, who, job_id)
    offers = service.offers(state, who, view)
    if not offers.checker:
        raise NotFound(f"job {view.id} has no outputs for you to check")
    files = checking.files(state, who, view.id)
    return {**job_context(view, offers), "files": [file_view(view.id, f) for f in files],
            "error": error, "comments": comments, "status": status}


@router.get("/jobs/{job_id}/check", response_class=HTMLResponse)
async def check_page(request: Request, job_id: str, who: Who) -> Response:
    if who is None:
        return sign_in_redirect(request)
    return await apage(request, "jobs/check.html",
                       lambda: _check_context(request, job_id[:40], who))


@router.post("/jobs/{job_id}/check", response_class=HTMLResponse)
async def check_decision(request: Request, job_id: str, who: Who) -> Response:
    return await _decide(
        request, job_id, who, page="check", words="comments",
        act=lambda actor, d, text: checking.decide(hub(request), actor, job_id[:40],
                                                   decision=d, comments=text),
        again=lambda actor, message, text: _check_context(
            request, job_id[:40], actor, error=message, comments=text, status=422),
        done="/outputs-to-check?done=checked-{decision}")


@router.get("/jobs/{job_id}/figures/{name}")
async def figure(request: Request, job_id: str, name: str, who: Who) -> Response:
    """One figure (PNG) of a job's outputs, for the checker's page; nothing else is served
    here, so a file can never be sniffed into a page."""
    if who is None or not name.endswith(".png"):
        return error_page(request, NotFound("no such figure"))
    try:
        data = await run_in_threadpool(checking.file_bytes, hub(request), who, job_id[:40],
                                       name[:200])
    except NdlError as exc:
        return error_page(request, exc)
    return Response(data, media_type="image/png", headers={
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store",
        "Content-Disposition": "inline"})

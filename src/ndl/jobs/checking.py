"""Output checking: the queue, blind decisions, and the release of outputs to the project.

The automatic checks have already run at the datasite (their findings, per output and per
cell, are in the job's report); output checkers judge what they could not. Each checker decides
``approve``, ``return`` (to the researcher, with comments: context or controls to supply) or
``reject``. A dataset's policy may ask for two independent reviews: a checker does not see
another's decision until they have given their own, and nobody checks a job they wrote. The
outputs are released when the required number have approved and nobody returned or rejected
them; the project's members may then read the outputs' blob. Each step is in the register
with the code's hash.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from starlette.responses import Response

from ndl.access import closure, rules
from ndl.access.accounts import Principal
from ndl.core.db import utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound
from ndl.federation import blob_service
from ndl.hub.state import HubState
from ndl.jobs.lifecycle import keep, read_zip, sync
from ndl.jobs.models import Job, OutputReview
from ndl.jobs.service import members_of, view, visible
from ndl.jobs.views import JobView, OutputFile
from ndl.ledger import register

DECISIONS = ("approve", "return", "reject")
MAX_PREVIEW_CHARS = 20_000
MAX_PREVIEW_ROWS = 200


def queue(state: HubState, who: Principal | None) -> list[JobView]:
    """Jobs whose outputs wait for ``who``: not their own, not already decided by them."""
    who = rules.require_role(who, "output_checker", doing="see the output-checking queue")
    with state.db.write() as s:
        for job in s.scalars(select(Job).where(Job.state == "approved")):
            sync(s, state, job)
        jobs = s.scalars(select(Job).where(Job.state == "awaiting_output_check",
                                           Job.requester != who.username)
                         .order_by(Job.updated_at))
        out = []
        for job in jobs:
            done = s.scalars(select(OutputReview).where(
                OutputReview.job_id == job.id, OutputReview.checker == who.username)).first()
            if done is None:
                out.append(view(s, job, who))
        return out


def decide(state: HubState, who: Principal | None, job_id: str, *, decision: str,
           comments: str) -> JobView:
    """One output checker's decision; the job moves on when the decisions allow."""
    if decision not in DECISIONS:
        raise InvalidInput(f"an output decision is one of {', '.join(DECISIONS)}")
    comments = (comments or "").strip()
    if decision != "approve" and not comments:
        raise InvalidInput(f"say why you {decision} the outputs: the researcher needs to know "
                           "what to change or supply")
    if len(comments) > 4000:
        raise InvalidInput("comments are at most 4,000 characters")
    rules.require_role(who, "output_checker", doing="check a job's outputs")
    with state.db.write() as s:
        job = visible(s, who, job_id, lock=True)
        checker = rules.require_output_checker(who, job.requester)
        sync(s, state, job)
        if job.state != "awaiting_output_check":
            raise Conflict(f"job {job.id} is {job.state}, not waiting for output checking")
        earlier = list(s.scalars(select(OutputReview).where(OutputReview.job_id == job.id)))
        if any(r.checker == checker.username for r in earlier):
            raise Conflict(f"you have already decided on job {job.id}: another output checker "
                           "must give the second review")
        s.add(OutputReview(job_id=job.id, checker=checker.username, decision=decision,
                           comments=comments))
        register.append(s, state.key, kind="job.output_checked",
                        actor=f"output_checker#{checker.user_id}", subject=job.id,
                        payload={"decision": decision, "code_sha256": job.code_sha256,
                                 "outputs_sha256": job.result_sha256})
        approvals = sum(r.decision == "approve" for r in earlier) + (decision == "approve")
        if decision in ("return", "reject"):
            job.state = "returned" if decision == "return" else "rejected"
        elif approvals >= job.output_reviews:
            _release(s, state, job)
        job.updated_at = utcnow()
        s.flush()
        return view(s, job, who)


def _release(s: Any, state: HubState, job: Job) -> None:
    assert job.result_sha256 is not None
    for member in sorted(members_of(s, job.project_id)):
        blob_service.allow_reader(s, job.result_sha256, f"user:{member}")
    keep(s, job.result_sha256)
    job.state = "released"
    register.append(s, state.key, kind="job.released", actor="hub", subject=job.id,
                    payload={"code_sha256": job.code_sha256,
                             "outputs_sha256": job.result_sha256,
                             "project": job.project_id})


def _readable(state: HubState, who: Principal | None, job_id: str) -> Job:
    """The job whose outputs ``who`` may read (:func:`rules.may_read_job_outputs`)."""
    with state.db.write() as s:
        job = visible(s, who, job_id)
        sync(s, state, job)
        member = who is not None and who.username in members_of(s, job.project_id)
        closure.require_outputs_kept(s, job.project_id)  # a closed project's, past retention
        s.expunge(job)
    if job.result_sha256 is None:
        raise InvalidInput(f"job {job.id} has no outputs ({job.state})")
    if rules.may_read_job_outputs(who, member=member, author=job.requester,
                                  released=job.state == "released"):
        return job
    if member:
        raise InvalidInput(f"the outputs of job {job.id} are not released yet ({job.state}): "
                           "an output checker releases them")
    raise NotFound(f"no job {job_id!r}: 'ndl job list' shows yours")


def outputs_response(state: HubState, who: Principal | None, job_id: str,
                     range_header: str | None) -> Response:
    """The outputs' ZIP, streamed (resumable with Range)."""
    job = _readable(state, who, job_id)
    with state.db.read() as s:
        info = blob_service.blob_info(s, str(job.result_sha256))
    if info is None or not info.complete:
        raise NotFound(f"the outputs of job {job.id} are no longer held by the hub")
    return blob_service.blob_response(state.blobs, info, range_header,
                                      filename=f"{job.name}-outputs.zip")


def files(state: HubState, who: Principal | None, job_id: str) -> list[OutputFile]:
    """The outputs, file by file, for the checker's page (CSV parsed, text shown)."""
    job = _readable(state, who, job_id)
    out = []
    with read_zip(state, str(job.result_sha256)) as z:
        for info in z.infolist():
            name = info.filename
            media = ("text/csv" if name.endswith(".csv") else "image/png"
                     if name.endswith(".png") else "application/json"
                     if name.endswith(".json") else "text/plain")
            item = OutputFile(name=name, size=info.file_size, media_type=media)
            if media != "image/png":
                text = z.read(name)[:MAX_PREVIEW_CHARS].decode("utf-8", "replace")
                item.text = text
                if media == "text/csv":
                    item.rows = list(csv.reader(io.StringIO(text)))[:MAX_PREVIEW_ROWS]
            out.append(item)
    return out


def file_bytes(state: HubState, who: Principal | None, job_id: str, name: str) -> bytes:
    """One file of the outputs (figures for the checker's page)."""
    job = _readable(state, who, job_id)
    with read_zip(state, str(job.result_sha256)) as z:
        if name not in z.namelist():
            raise NotFound(f"job {job.id}'s outputs have no file {name[:100]!r}")
        return z.read(name)

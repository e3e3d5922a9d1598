"""Controlled-tier jobs for every face: submit, review the code, follow, cancel, read the code.

Each function takes the acting principal and checks its rule (:mod:`ndl.access.rules`) and the
tier (:data:`ndl.core.tiers.WORK_OPERATIONS`) before acting; each writes its own register
entries, always with the code's hash. A job runs as a ``job`` work item
(:mod:`ndl.federation.work`) that only this module queues, after a data steward approved the
exact code, or at once when the dataset's policy runs code already approved for the project.
Output checking is :mod:`ndl.jobs.checking`.
"""

from __future__ import annotations

import difflib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ndl.access import closure, rules
from ndl.access import requests as access
from ndl.access.accounts import Principal, official_actor
from ndl.access.projects import get_project
from ndl.catalogue import lifecycle
from ndl.catalogue import service as catalogue
from ndl.catalogue.models import Dataset
from ndl.core.db import utcnow
from ndl.core.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from ndl.core.tiers import WORK_OPERATIONS
from ndl.federation import work
from ndl.federation.work_models import WorkItem
from ndl.hub.state import HubState
from ndl.jobs import bundle as bundles
from ndl.jobs import environments
from ndl.jobs.approval import sign_approval
from ndl.jobs.lifecycle import sync
from ndl.jobs.models import Job, JobCode, JobReview, OutputReview
from ndl.jobs.report import JobReport
from ndl.jobs.views import STATE_WORDS, CodeReview, CodeView, JobView, OutputDecision
from ndl.ledger import register

OP = WORK_OPERATIONS["job"]
HIDDEN_CELL = "(a cell: its labels are shown once the outputs are released)"
# A job is given this long at the datasite (queue wait included) before its item expires.
JOB_TTL = timedelta(hours=24)


def _iso(t: Any) -> str:
    return t.isoformat() if t is not None else ""


def members_of(session: Session, project_id: str) -> set[str]:
    return {m.username for m in get_project(session, project_id).members}


def view(session: Session, job: Job, who: Principal | None) -> JobView:
    """The job as ``who`` sees it: other checkers' decisions stay hidden from an output
    checker until they have given their own (blind review)."""
    decisions = list(session.scalars(select(OutputReview).where(
        OutputReview.job_id == job.id).order_by(OutputReview.id)))
    mine = who is not None and any(d.checker == who.username for d in decisions)
    blind = (who is not None and rules.is_output_checker(who) and not mine
             and job.state == "awaiting_output_check" and not who.has("admin"))
    shown = [] if blind else decisions
    reviews = session.scalars(select(JobReview).where(JobReview.job_id == job.id)
                              .order_by(JobReview.id))
    item = session.get(WorkItem, job.work_id) if job.work_id else None
    state = job.state
    if state == "approved" and item is not None and item.state in ("leased", "running"):
        state = "running"
    return JobView(
        id=job.id, name=job.name, project=job.project_id, requester=job.requester,
        language=job.language, environment=job.environment, datasets=list(job.datasets),
        org=job.org_id, code_sha256=job.code_sha256, state=state,
        state_words=STATE_WORDS.get(state, state),
        progress=item.progress if item is not None else 0.0,
        progress_message=item.progress_message if item is not None else "",
        auto_approved=job.auto_approved, output_reviews_required=job.output_reviews,
        created_at=_iso(job.created_at), updated_at=_iso(job.updated_at), error=job.error,
        sandbox=(job.report or {}).get("sandbox"),
        code_reviews=[CodeReview(reviewer=r.reviewer, decision=r.decision, reasons=r.reasons,
                                 at=_iso(r.created_at)) for r in reviews],
        output_decisions=[OutputDecision(checker=d.checker, decision=d.decision,
                                         comments=d.comments, at=_iso(d.created_at))
                          for d in shown],
        report=_report_for(job, who),
        outputs_sha256=job.result_sha256, outputs_size=job.result_size,
        context=str(job.manifest.get("context", "")),
        outputs_declared=[dict(o) for o in job.manifest.get("outputs", [])])


def _report_for(job: Job, who: Principal | None) -> JobReport | None:
    """The report as ``who`` may read it. Cell labels of findings are the job's group values,
    which its code chose: until an output checker has released the outputs, only checkers and
    the data's stewards see them, never the researcher."""
    if not job.report:
        return None
    report = JobReport.model_validate(job.report)
    if job.state == "released" or rules.is_output_checker(who) \
            or rules.is_org_official(who, job.org_id):
        return report
    outputs = [o.model_copy(update={"findings": [
        f.model_copy(update={"cell": [HIDDEN_CELL]}) if f.cell is not None else f
        for f in o.findings]}) for o in report.outputs]
    return report.model_copy(update={"outputs": outputs})


def _load(session: Session, job_id: str, *, lock: bool = False) -> Job:
    # lock=True where the job is about to change: PostgreSQL then holds the row until commit,
    # so two output checkers deciding at once are counted one after the other.
    job = session.get(Job, job_id, with_for_update=lock) \
        if isinstance(job_id, str) and len(job_id) <= 40 else None
    if job is None:
        raise NotFound(f"no job {job_id!r}: 'ndl job list' shows yours")
    return job


def visible(session: Session, who: Principal | None, job_id: str, *,
            lock: bool = False) -> Job:
    """The job if ``who`` may see it; otherwise NotFound (a job's existence is private)."""
    job = _load(session, job_id, lock=lock)
    if not rules.may_see_job(who, members=members_of(session, job.project_id), org_id=job.org_id,
                             author=job.requester,
                             checking=job.state in ("awaiting_output_check", "released",
                                                    "returned", "rejected")):
        raise NotFound(f"no job {job_id!r}: 'ndl job list' shows yours")
    return job


# -- submit --------------------------------------------------------------------------------

def _datasets(session: Session, who: Principal, project: str,
              ids: list[str]) -> tuple[list[Dataset], list[dict[str, Any]]]:
    found, grants = [], []
    closure.require_open(session, project)  # a closed project runs no new jobs
    for ds_id in ids:
        ds = catalogue.get_dataset(session, ds_id)
        lifecycle.require_live(ds)
        rules.require_data_operation(who, ds.tier, OP, dataset=ds.id, project=project)
        grants.append(access.active_grant(session, who, project, ds.id).document)
        found.append(ds)
    sites = {d.datasite_id for d in found}
    if len(sites) > 1:
        raise InvalidInput("a job runs at one datasite, and these datasets are held at "
                           f"{len(sites)}; linking data across organisations is the enclave's "
                           "work")
    return found, grants


def _approved_before(session: Session, project: str, code_sha256: str) -> JobReview | None:
    return session.scalars(select(JobReview).where(
        JobReview.project_id == project, JobReview.code_sha256 == code_sha256,
        JobReview.decision == "approve").order_by(JobReview.id)).first()


def submit(state: HubState, who: Principal | None, *, project: str, files: Any) -> JobView:
    """Check a bundle, keep its code by hash, and queue it for review (or run it at once
    when the datasets' policy runs code already approved for this project)."""
    who = rules.require_role(who, "researcher", doing="submit a job")
    bundle = bundles.from_files(files)
    m = bundle.manifest
    environments.require(m.environment, m.language)
    with state.db.write() as s:
        datasets, _grants = _datasets(s, who, project, m.datasets)
        sha = bundle.code_sha256
        if s.get(JobCode, sha) is None:
            s.add(JobCode(sha256=sha, files=bundle.to_json()["files"]))
            s.flush()  # the job refers to it
        policies = [access.policy_of(d).jobs for d in datasets]
        job = Job(id=f"job-{secrets.token_hex(8)}", project_id=project, requester=who.username,
                  name=m.name, language=m.language, environment=m.environment,
                  datasets=list(m.datasets), org_id=datasets[0].org_id,
                  datasite_id=datasets[0].datasite_id, code_sha256=sha,
                  manifest=m.model_dump(mode="json"), state="awaiting_review",
                  output_reviews=max(p.output_reviews for p in policies))
        s.add(job)
        s.flush()
        register.append(s, state.key, kind="job.submitted", actor=official_actor(who),
                        subject=job.id, payload={"project": project, "code_sha256": sha,
                                                 "datasets": list(m.datasets),
                                                 "language": m.language,
                                                 "environment": m.environment})
        earlier = _approved_before(s, project, sha)
        if earlier is not None and all(p.run_approved_code for p in policies):
            _approve(s, state, job, approver=f"policy (code approved in review "
                                             f"#{earlier.id})", auto=True)
        result = view(s, job, who)
    if job.state == "approved":
        state.work_hints.mark(job.datasite_id)
        state.notifier.notify(f"site:{job.datasite_id}")
    return result


def _approve(s: Session, state: HubState, job: Job, *, approver: str, auto: bool) -> None:
    """Publish the code, sign the approval and queue the work item at the datasite."""
    code = s.get(JobCode, job.code_sha256)
    assert code is not None
    if code.published_at is None:
        code.published_at = utcnow()
    grants = [access.active_grant(s, _member(s, job), job.project_id, d).document
              for d in job.datasets]
    approval = sign_approval(state.key, job_id=job.id, code_sha256=job.code_sha256,
                             project=job.project_id, member=job.requester,
                             datasets=list(job.datasets), approved_by=approver)
    item = work.submit(
        s, state.key, kind="job", requester=f"job:{job.id}", actor="hub",
        datasite_id=job.datasite_id, dataset=job.datasets[0],
        params={"job_id": job.id, "project": job.project_id, "member": job.requester,
                "datasets": [d.split("/", 1)[-1] for d in job.datasets],
                "files": dict(code.files), "approval": approval, "grants": grants},
        ttl=JOB_TTL.total_seconds())
    job.work_id, job.state, job.auto_approved = item.id, "approved", auto
    job.updated_at = utcnow()
    register.append(s, state.key, kind="job.approved", actor=approver if auto else "steward",
                    subject=job.id, payload={"code_sha256": job.code_sha256,
                                             "automatic": auto, "work": item.id})


def _member(s: Session, job: Job) -> Principal:
    """The author as a principal, for re-reading their grants at approval time."""
    project = get_project(s, job.project_id)
    for mem in project.members:
        if mem.username == job.requester:
            return Principal(mem.user_id, mem.username, frozenset({"researcher"}), None)
    raise Conflict(f"{job.requester} is no longer on project {job.project_id}: the job cannot "
                   "run")


# -- review --------------------------------------------------------------------------------

def review(state: HubState, who: Principal | None, job_id: str, *, decision: str,
           reasons: str) -> JobView:
    """A data steward of the data's organisation approves or rejects the code."""
    if decision not in ("approve", "reject"):
        raise InvalidInput("a review decision is 'approve' or 'reject'")
    reasons = (reasons or "").strip()
    if decision == "reject" and not reasons:
        raise InvalidInput("say why the code is rejected: the researcher needs the reasons")
    if len(reasons) > 4000:
        raise InvalidInput("reasons are at most 4,000 characters")
    with state.db.write() as s:
        job = _load(s, job_id, lock=True)
        steward = rules.require_code_reviewer(who, job.org_id, job.requester)
        if job.state != "awaiting_review":
            raise Conflict(f"job {job.id} is {job.state}, not waiting for a code review")
        s.add(JobReview(job_id=job.id, code_sha256=job.code_sha256, project_id=job.project_id,
                        reviewer=steward.username, decision=decision, reasons=reasons))
        register.append(s, state.key, kind="job.reviewed", actor=official_actor(steward),
                        subject=job.id, payload={"decision": decision,
                                                 "code_sha256": job.code_sha256,
                                                 "reasons": reasons})
        if decision == "approve":
            _approve(s, state, job, approver=official_actor(steward), auto=False)
        else:
            job.state, job.updated_at = "review_rejected", utcnow()
        s.flush()
        result = view(s, job, who)
    if decision == "approve":
        state.work_hints.mark(job.datasite_id)
        state.notifier.notify(f"site:{job.datasite_id}")
    return result


def diff(state: HubState, who: Principal | None, job_id: str) -> tuple[str | None, str]:
    """The job's code against the last code approved for its project (unified diff), and
    that code's hash; (None, all lines added) when nothing was approved before."""
    with state.db.read() as s:
        job = visible(s, who, job_id)
        files = dict(s.get(JobCode, job.code_sha256).files)  # type: ignore[union-attr]
        before = s.scalars(select(JobReview).where(
            JobReview.project_id == job.project_id, JobReview.decision == "approve",
            JobReview.code_sha256 != job.code_sha256).order_by(JobReview.id.desc())).first()
        old: dict[str, str] = {}
        if before is not None:
            old = dict(s.get(JobCode, before.code_sha256).files)  # type: ignore[union-attr]
    out: list[str] = []
    for path in sorted(set(files) | set(old)):
        out.extend(difflib.unified_diff(
            old.get(path, "").splitlines(keepends=True), files.get(path, "").splitlines(
                keepends=True), fromfile=f"approved/{path}" if path in old else "/dev/null",
            tofile=f"submitted/{path}" if path in files else "/dev/null"))
    return (before.code_sha256 if before is not None else None), "".join(out)


# -- follow, list, cancel ------------------------------------------------------------------

def get(state: HubState, who: Principal | None, job_id: str) -> JobView:
    with state.db.write() as s:
        job = visible(s, who, job_id)
        sync(s, state, job)
        return view(s, job, who)


async def get_async(state: HubState, who: Principal | None, job_id: str) -> JobView:
    return await run_in_threadpool(get, state, who, job_id)


def mine(state: HubState, who: Principal | None, *, limit: int = 100) -> list[JobView]:
    who = rules.require_signed_in(who, doing="list your jobs")
    with state.db.write() as s:
        from ndl.access.projects import projects_of
        projects = [p.id for p in projects_of(s, who)]
        jobs = list(s.scalars(select(Job).where(Job.project_id.in_(projects))
                              .order_by(Job.created_at.desc()).limit(limit))) if projects else []
        for job in jobs:
            sync(s, state, job)
        return [view(s, j, who) for j in jobs]


def review_queue(state: HubState, who: Principal | None) -> list[JobView]:
    """Jobs waiting for a code review by ``who``'s organisation (not their own)."""
    who = rules.require_role(who, "steward", doing="see the jobs waiting for review")
    with state.db.read() as s:
        jobs = s.scalars(select(Job).where(Job.state == "awaiting_review",
                                           Job.org_id == who.org_id,
                                           Job.requester != who.username)
                         .order_by(Job.created_at))
        return [view(s, j, who) for j in jobs]


def cancel(state: HubState, who: Principal | None, job_id: str) -> JobView:
    """The author (or an admin) stops a job that has not finished."""
    with state.db.write() as s:
        job = visible(s, who, job_id, lock=True)
        assert who is not None
        if who.username != job.requester and not who.has("admin"):
            raise NotFound(f"no job {job_id!r} of yours: only its author can cancel it")
        sync(s, state, job)
        if job.state not in ("awaiting_review", "approved"):
            raise Conflict(f"job {job.id} is {job.state}: only a job waiting for review or "
                           "running can be cancelled")
        if job.work_id:
            item = work.get(s, job.work_id, lock=True)
            work.cancel(s, state.key, item, actor=official_actor(who),
                        reason="the job was cancelled by its author")
        job.state, job.updated_at = "cancelled", utcnow()
        register.append(s, state.key, kind="job.cancelled", actor=official_actor(who),
                        subject=job.id, payload={"code_sha256": job.code_sha256})
        site = job.datasite_id
        result = view(s, job, who)
    state.work_hints.mark(site)
    state.notifier.notify(f"site:{site}")
    return result


def logs(state: HubState, who: Principal | None, job_id: str) -> list[str]:
    """The researcher-safe log: ndl's own lines and a safe account of any failure."""
    job_view = get(state, who, job_id)
    lines = [f"{job_view.id}: {job_view.state_words}"]
    if job_view.report is not None:
        lines.extend(job_view.report.safe_log)
    if job_view.error:
        lines.append(job_view.error)
    return lines


def code(state: HubState, who: Principal | None, sha256: str) -> CodeView:
    """A bundle's files by hash: public once a job running it was approved (the job log);
    before that, only to those who can see a job with it."""
    with state.db.read() as s:
        found = s.get(JobCode, sha256) if isinstance(sha256, str) and len(sha256) == 64 \
            else None
        if found is None:
            raise NotFound(f"no code {sha256[:64]!r} is held by the hub")
        if found.published_at is None:
            jobs = s.scalars(select(Job).where(Job.code_sha256 == sha256))
            if not any(rules.may_see_job(who, members=members_of(s, j.project_id),
                                         org_id=j.org_id, author=j.requester, checking=False)
                       for j in jobs):
                raise NotFound(f"no code {sha256[:64]!r} is held by the hub")
        return CodeView(sha256=found.sha256, files=dict(found.files),
                        published=found.published_at is not None)


# -- what a face may offer ------------------------------------------------------------------

@dataclass(frozen=True)
class JobOffers:
    """What ``who`` may do with a job now, for faces that show buttons and links (each still
    goes through the service, which checks again)."""

    cancel: bool      # its author (or an admin) while it has not finished
    live: bool        # the datasite is working on it: worth following its progress
    download: bool    # its outputs are released and ``who`` may fetch them
    reviewer: bool    # a data steward of the data's organisation, not the author
    review: bool      # ... and the code waits for a review
    checker: bool     # an output checker, not the author, and the job has outputs
    check: bool       # ... and the outputs wait for this checker's decision


_WORKING = ("approved", "queued", "running")
_HAS_OUTPUTS = ("awaiting_output_check", "released", "returned", "rejected")


def offers(state: HubState, who: Principal | None, job: JobView) -> JobOffers:
    """What ``who`` may do with ``job`` (as :func:`get` returned it) now."""
    with state.db.read() as s:
        member = who is not None and who.username in members_of(s, job.project)
        decided = who is not None and s.scalars(select(OutputReview).where(
            OutputReview.job_id == job.id, OutputReview.checker == who.username)).first() \
            is not None
    try:
        rules.require_code_reviewer(who, job.org, job.requester)
        reviewer = True
    except (AuthenticationRequired, PermissionDenied):
        reviewer = False
    checker = (rules.is_output_checker(who) and who is not None
               and who.username != job.requester and job.state in _HAS_OUTPUTS
               and job.outputs_sha256 is not None)
    released = job.state == "released" and job.outputs_sha256 is not None
    return JobOffers(
        cancel=rules.may_cancel_job(who, job.requester) and job.state in (
            "awaiting_review", *_WORKING),
        live=job.state in _WORKING,
        download=released and (member or checker or (who is not None and who.has("admin"))),
        reviewer=reviewer, review=reviewer and job.state == "awaiting_review",
        checker=checker, check=checker and job.state == "awaiting_output_check" and not decided)

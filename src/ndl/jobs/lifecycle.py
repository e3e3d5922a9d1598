"""A job follows its work item: when the item is final the job moves on, once.

The work item (kind ``job``) carries the run; its result blob is the outputs' ZIP, readable at
first by nobody but the hub (the item's requester is ``job:<id>``, no person). This module
reads the ZIP's ``report.json`` when the item succeeds, keeps the blob while output checkers
work, and records ``job.ran`` in the register with the code's hash and the sandbox used.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from ndl.core.db import utcnow
from ndl.federation.blob_models import Blob
from ndl.federation.work_models import WorkItem
from ndl.jobs.models import Job
from ndl.jobs.report import JobReport
from ndl.ledger import register

if TYPE_CHECKING:
    from ndl.hub.state import HubState

MAX_ZIP_BYTES = 64 * 1024 * 1024
# Outputs wait for output checkers (and then for their researcher) this long at most.
KEEP_OUTPUTS = timedelta(days=90)


def read_zip(state: HubState, sha256: str) -> zipfile.ZipFile:
    data = b"".join(state.blobs.store.open(sha256))
    if len(data) > MAX_ZIP_BYTES:
        raise ValueError("outputs larger than the hub reads")
    return zipfile.ZipFile(io.BytesIO(data))


def keep(session: Session, sha256: str) -> None:
    blob = session.get(Blob, sha256)
    if blob is not None:
        blob.expires_at = max(blob.expires_at, utcnow() + KEEP_OUTPUTS)


def sync(session: Session, state: HubState, job: Job) -> None:
    """Move ``job`` on if its work item has ended (idempotent)."""
    if job.state != "approved" or not job.work_id:
        return
    # Re-read under a row lock: two requests syncing one job at once on PostgreSQL would
    # otherwise both move it on and record job.ran twice.
    session.refresh(job, with_for_update=True)
    if job.state != "approved":
        return
    item = session.get(WorkItem, job.work_id)
    if item is None or item.state not in ("succeeded", "failed", "cancelled", "expired"):
        return
    if item.state == "succeeded" and item.result:
        sha = str(item.result.get("sha256"))
        try:
            with read_zip(state, sha) as z:
                report = JobReport.model_validate(json.loads(z.read("report.json")))
        except Exception:
            job.state, job.error = "failed", "its outputs reached the hub unreadable"
        else:
            keep(session, sha)
            job.state, job.report = "awaiting_output_check", report.model_dump(mode="json")
            job.result_sha256, job.result_size = sha, int(item.result.get("size") or 0)
    elif item.state == "succeeded":
        job.state, job.error = "failed", "it finished without outputs"
    else:
        err = item.error or {}
        job.state = "cancelled" if item.state == "cancelled" else "failed"
        job.error = str(err.get("message") or f"the run {item.state}")[:1000]
    job.updated_at = utcnow()
    register.append(session, state.key, kind="job.ran", actor=f"datasite:{job.datasite_id}",
                    subject=job.id, payload={
                        "code_sha256": job.code_sha256, "outcome": job.state,
                        "sandbox": (job.report or {}).get("sandbox"),
                        "policy": (job.report or {}).get("policy"), "work": job.work_id})


def sync_all(state: HubState, limit: int = 200) -> int:
    """Move on every approved job whose run has ended (the hub's housekeeping), so the
    register records each run even if nobody looks at the job."""
    from sqlalchemy import select

    moved = 0
    with state.db.write() as s:
        for job in s.scalars(select(Job).where(Job.state == "approved").limit(limit)):
            before = job.state
            sync(s, state, job)
            moved += job.state != before
    return moved


def work_finished(state: HubState, work_id: str) -> None:
    """A work item just got its final answer: if it ran a job, move the job on now (so its
    researcher and output checkers see it at once, and the register records the run)."""
    from sqlalchemy import select

    with state.db.write() as s:
        job = s.scalars(select(Job).where(Job.work_id == work_id)).first()
        if job is not None:
            sync(s, state, job)

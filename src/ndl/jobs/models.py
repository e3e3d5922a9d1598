"""The hub's tables for controlled-tier jobs: code by hash, jobs, steward and output reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class JobCode(Base):
    """A bundle's files, kept by their hash. Public (readable by anyone, and named in the
    register) from the moment a job running it is approved: the job log of the library."""

    __tablename__ = "job_code"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Job(Base):
    """One submission of a bundle by a project member.

    ``state``: ``awaiting_review`` → ``approved`` (its work item runs at the datasite) →
    ``awaiting_output_check`` → ``released``; or ``review_rejected``, ``failed``,
    ``cancelled``, ``returned`` (to the researcher with comments) or ``rejected``.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    requester: Mapped[str] = mapped_column(String(64), index=True)  # username
    name: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    environment: Mapped[str] = mapped_column(String(64))
    datasets: Mapped[list[str]] = mapped_column(JSON)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    datasite_id: Mapped[str] = mapped_column(String(100))
    code_sha256: Mapped[str] = mapped_column(ForeignKey("job_code.sha256"), index=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(32), index=True)
    auto_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    output_reviews: Mapped[int] = mapped_column(Integer, default=1)
    work_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    result_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobReview(Base):
    """A data steward's decision on a job's code (approve or reject, with reasons)."""

    __tablename__ = "job_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    code_sha256: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    reviewer: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    reasons: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutputReview(Base):
    """One output checker's decision on a job's outputs; blind to the others' until given."""

    __tablename__ = "output_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    checker: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # approve | return | reject
    comments: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

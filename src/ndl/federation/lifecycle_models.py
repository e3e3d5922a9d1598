"""Tables for joining and leaving the federation and for the data lifecycle: each datasite's
latest signed status report, deletion requests with the datasite's signed deletion records,
and project closures (issue 13 parts 5 and 7; migration 0015)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class DatasiteStatus(Base):
    """The last status a datasite reported, as it signed it (anyone can check the signature
    against its registered key): software version, hashes, sandbox, engine, self-check."""

    __tablename__ = "datasite_status"

    datasite_id: Mapped[str] = mapped_column(ForeignKey("datasites.id"), primary_key=True)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)


class DeletionRecord(Base):
    """A request that a datasite delete a withdrawn dataset, and its signed answer.

    ``state``: ``requested`` (the delete message is queued) -> ``deleted`` (the datasite's
    signed record came back, ``record`` holds the envelope) or ``failed`` (it said why not).
    """

    __tablename__ = "deletion_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    datasite_id: Mapped[str] = mapped_column(String(64), index=True)
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="requested")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ProjectClosure(Base):
    """A closed project: its grants were revoked and its job outputs are kept read-only
    until ``outputs_until``, when housekeeping expires them (``outputs_expired_at``)."""

    __tablename__ = "project_closures"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    outputs_until: Mapped[datetime] = mapped_column(UTCDateTime)
    outputs_expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

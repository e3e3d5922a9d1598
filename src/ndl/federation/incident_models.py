"""Incident tables: private to the hub (the register holds only that an incident happened)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class Incident(Base):
    """A security or data-protection incident. States: open -> contained -> closed."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What affected parties are told; the description is for admins and the raiser only.
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(12), default="open", index=True)
    raised_by: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    register_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)


class IncidentLink(Base):
    """What an incident touches: a dataset, project, datasite, organisation or user."""

    __tablename__ = "incident_links"
    __table_args__ = (UniqueConstraint("incident_id", "kind", "ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(200), index=True)


class IncidentAction(Base):
    """A response taken against an incident (a suspension, a revocation ...) and, where the
    action wrote a register entry, that entry's seq and hash."""

    __tablename__ = "incident_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(300))
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(2000), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    register_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    register_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Notice(Base):
    """One party told about an incident: a user (shown at /api/notices) or a datasite (a
    signed ``notice`` message in its mailbox, ``message_id``)."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    recipient_kind: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(64), index=True)
    event: Mapped[str] = mapped_column(String(12))
    why: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    message_id: Mapped[str | None] = mapped_column(String(36), nullable=True)

"""Tables for projects, access requests, approvals and grants."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ndl.access.models import User
from ndl.core.db import Base, UTCDateTime, utcnow


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(Text)
    purpose_category: Mapped[str] = mapped_column(String(40))
    lay_summary: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(String(60))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    end_date: Mapped[date] = mapped_column(Date)
    # Days after the end date before the hub's housekeeping closes the project (None: the
    # hub's default); closure keeps outputs read-only for as long again (ndl.access.closure).
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    members: Mapped[list[ProjectMember]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ProjectMember.id")
    # Ethics approval, DPIA, data-sharing agreement (ndl.access.references).
    references: Mapped[list[ProjectReference]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ProjectReference.id")


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(40), default="researcher")
    # Whether they were accredited when they joined; pages read ``user.accredited`` (today).
    accredited: Mapped[bool] = mapped_column(default=False)
    user: Mapped[User] = relationship(lazy="selectin", viewonly=True)


class ProjectReference(Base):
    """A document a project holds (ethics approval, DPIA, data-sharing agreement): its
    reference, who issued it and when it lapses. Rows are revoked, never deleted."""

    __tablename__ = "project_references"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    issuer: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str] = mapped_column(String(200))
    expires_on: Mapped[date] = mapped_column(Date)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def valid_on(self, day: date) -> bool:
        return self.revoked_at is None and self.expires_on >= day


class AccessRequest(Base):
    """One request by a project for one or more datasets, possibly at several organisations."""

    __tablename__ = "access_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    items: Mapped[list[RequestItem]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="RequestItem.id")


class RequestItem(Base):
    """One dataset in a request. States: pending -> granted | rejected | withdrawn."""

    __tablename__ = "request_items"
    __table_args__ = (UniqueConstraint("request_id", "dataset_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("access_requests.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    tier: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Optimistic concurrency: every state change bumps it, so racing decisions conflict.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    approvals: Mapped[list[Approval]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="Approval.id")
    __mapper_args__ = {"version_id_col": revision}


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("item_id", "steward_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("request_items.id", ondelete="CASCADE"))
    steward_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    steward: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Grant(Base):
    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("request_items.id"))
    tier: Mapped[str] = mapped_column(String(20))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str] = mapped_column(Text, default="")
    # The grant as the hub signed it; datasites check this document, not the hub's word.
    document: Mapped[dict[str, Any]] = mapped_column(JSON)

"""The table behind work items: long work that answers later, with progress and a result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class WorkItem(Base):
    """One piece of long work at one datasite.

    States: ``queued`` -> ``leased`` (handed out; re-leased if the lease lapses) -> ``running``
    (progress reported) -> one final state: ``succeeded``, ``failed``, ``cancelled`` or
    ``expired``. A final state is never left: that is what makes delivery exactly-once.
    """

    __tablename__ = "work_items"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    # A principal string: "user:<name>", or "anonymous" (then the unguessable id is the key).
    requester: Mapped[str] = mapped_column(String(200), index=True)
    datasite_id: Mapped[str] = mapped_column(ForeignKey("datasites.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    params_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The result blob's hash, indexed: identical results share one blob.
    result_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Work that several parties must approve or contribute to (federation.coordination).
    coordination_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    # Redelivered after a lapsed lease: the datasite must not deliver it twice.
    redelivered: Mapped[bool] = mapped_column(Boolean, default=False)

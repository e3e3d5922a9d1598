"""The security log's table: kept apart from the public register (see ``security_log``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class SecurityEvent(Base):
    """One authentication event, administrative action or data transfer.

    Written only through :func:`ndl.ledger.security_log.record`; the service has no way to
    edit a row, and removes rows only when they pass the retention period. Each event's hash
    covers the one before it (``prev_hash``), so an export a SIEM kept shows any later edit,
    deletion or reordering (``ndl admin security-log --verify``).
    """

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(60), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300))
    # The organisation the event concerns (the user's, the dataset's, the datasite's), which
    # scopes what a steward may fetch when the hub shares the log with the federation.
    org_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    source: Mapped[str] = mapped_column(String(100), default="")
    outcome: Mapped[str] = mapped_column(String(20), default="ok")
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class SecurityLogHead(Base):
    """One row: the newest event's number and hash. Bumping it first serialises appends."""

    __tablename__ = "security_log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))

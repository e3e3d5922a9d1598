"""Tables for registered datasites, mailbox messages and seen nonces."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class Datasite(Base):
    __tablename__ = "datasites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Suspended by an admin (ndl.federation.standing): its signed requests are refused and
    # its datasets answer nothing until reinstated. The reason stays out of the register.
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    suspended_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Joining and leaving (ndl.federation.membership): ``pending`` until a data steward of
    # its organisation (or an admin) approves it, ``approved``, then ``retired`` for good.
    state: Mapped[str] = mapped_column(String(16), default="approved", server_default="approved")
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retired_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Message(Base):
    """One piece of work for a datasite, and its answer.

    States: ``queued`` -> ``leased`` (handed to the datasite, may be re-leased after the lease
    runs out) -> ``answered``; or ``expired`` when nobody answered before the deadline.
    """

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    datasite_id: Mapped[str] = mapped_column(ForeignKey("datasites.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class SeenNonce(Base):
    __tablename__ = "seen_nonces"

    sender: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)

"""Tables for parties besides datasites, their encryption keys, relayed sealed messages and
multi-party coordinations.

Principals are strings: ``datasite:<id>``, ``party:<id>``, ``user:<username>``. The hub keeps
ciphertext, sizes and hashes of relayed payloads, never a plaintext.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class Party(Base):
    """A party that is neither the hub nor a datasite (kind ``enclave`` today)."""

    __tablename__ = "parties"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(String(64), unique=True)   # Ed25519, signs
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EncryptionKeyRecord(Base):
    """The X25519 key others seal to, for a datasite or a party, with the signed envelope
    by which its holder published it (so a sender can check it came from that holder)."""

    __tablename__ = "party_encryption_keys"

    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    proof: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PartyMessage(Base):
    """A sealed payload on its way from one party to another.

    Either ``ciphertext`` (small, inline) or ``blob_sha256`` (a sealed blob) is set. States:
    ``queued`` -> ``leased`` (handed out, offered again when the lease lapses); the row is
    deleted when the recipient acknowledges it or when it expires.
    """

    __tablename__ = "party_messages"
    __table_args__ = (UniqueConstraint("recipient", "sha256"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sender: Mapped[str] = mapped_column(String(80), index=True)
    recipient: Mapped[str] = mapped_column(String(80), index=True)
    purpose: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)   # a sealed blob may pass 2 GiB
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    blob_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sender_sig: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Coordination(Base):
    """Work that needs k of n parties' approvals and some parties' contributions.

    States: ``waiting_for_approvals`` -> ``collecting`` -> ``ready`` -> ``complete``, or
    ``withdrawn`` (a party withdrew, or the requester cancelled) or ``expired``.
    """

    __tablename__ = "coordinations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    requester: Mapped[str] = mapped_column(String(80))            # user:<username>
    purpose: Mapped[str] = mapped_column(Text)
    params_sha256: Mapped[str] = mapped_column(String(64))
    approvals_needed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    result_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CoordinationMember(Base):
    """One party's place in a coordination: whether it approved, and what it contributed."""

    __tablename__ = "coordination_members"

    coordination_id: Mapped[str] = mapped_column(
        ForeignKey("coordinations.id", ondelete="CASCADE"), primary_key=True)
    party: Mapped[str] = mapped_column(String(80), primary_key=True)
    contributes: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    contribution_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contributed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

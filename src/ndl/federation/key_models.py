"""The table of signing keys: every key the hub, a datasite or a party signs with, and when
each may be believed.

A key is *active* from ``not_before``; a rotation sets the old key's ``retire_at`` (the end
of the overlap), after which it is *retired*; ``revoked_at`` ends it at once and for good.
The state is worked out from these times (:func:`ndl.federation.key_service.state_of`), so no sweep
has to run for a key to retire on time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class SigningKeyRecord(Base):
    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # "hub", "datasite:<id>" or "party:<id>"
    owner: Mapped[str] = mapped_column(String(80), index=True)
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(16), unique=True)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retire_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    # How the key came to be trusted: for a hub key, the statement its predecessor signed;
    # for a datasite's or party's, the rotation envelope its predecessor signed.
    endorsement: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # For a revoked key, the revocation statement the hub signed (datasites check it).
    revocation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

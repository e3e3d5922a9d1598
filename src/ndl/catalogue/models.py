"""Catalogue tables. Search indexes are created by the migrations (FTS5 / tsvector)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class Dataset(Base):
    __tablename__ = "datasets"

    # "<datasite id>/<dataset name>", e.g. "nhs-trust/ae-attendances".
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    datasite_id: Mapped[str] = mapped_column(ForeignKey("datasites.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    publisher: Mapped[str] = mapped_column(String(200), index=True)
    tier: Mapped[str] = mapped_column(String(20), index=True)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    row_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    metadata_hash: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

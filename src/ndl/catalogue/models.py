"""Catalogue tables. Search indexes are created by the migrations (FTS5 / tsvector)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class Dataset(Base):
    __tablename__ = "datasets"

    # "<datasite id>/<dataset name>", e.g. "nhs-trust/ae-attendances".
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # A small stable integer per dataset: the search index and facet bitmaps are keyed by it.
    num: Mapped[int] = mapped_column(Integer, unique=True)
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
    # The full validated metadata (DCAT, access and ndl fields) as the datasite published it.
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The access policy the datasite keeps with the dataset (ndl.access.policy.Policy).
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Withdrawn (ndl.catalogue.lifecycle): out of search and listings, metadata kept with a
    # notice; deleted_at once the datasite reported the data gone (a signed deletion record).
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DatasetFacet(Base):
    """One (facet, value) a dataset carries: publisher, tier, theme, geography, year, join key.

    A table rather than JSON columns so every facet filters and counts through one index.
    """

    __tablename__ = "dataset_facets"
    __table_args__ = (Index("ix_dataset_facets_facet_value", "facet", "value"),)

    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    facet: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)


class DatasetVersion(Base):
    """Every version of a dataset's metadata the catalogue has seen."""

    __tablename__ = "dataset_versions"

    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    metadata_hash: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetMock(Base):
    """Synthetic mock rows for a dataset (Parquet bytes): same schema, no real row."""

    __tablename__ = "dataset_mocks"

    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    parquet: Mapped[bytes] = mapped_column(LargeBinary)
    method: Mapped[str] = mapped_column(Text)  # 0011: any length (it names every column)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CatalogueState(Base):
    """One row: a counter bumped by every change to the catalogue, so caches know to refresh."""

    __tablename__ = "catalogue_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[str] = mapped_column(String(32))

"""Tables for blobs: finished blobs, who may read each, and uploads in progress."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from ndl.core.db import Base, UTCDateTime, utcnow


class Blob(Base):
    """A finished blob, named by the SHA-256 of its bytes.

    States: ``complete`` (readable) -> ``deleting`` (being removed from the store: no longer
    readable; the row goes once the object is gone, so a crash in between is retried).
    ``owner`` is a principal string (``datasite:<id>``, ``user:<name>``, ``party:<id>``) and
    carries the blob's bytes against its quota.
    """

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str] = mapped_column(String(200), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default="complete")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Set once the blob has been streamed whole to its recipient; swept a little later.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BlobReader(Base):
    """Someone besides the owner who may read a blob (a work item's requester, a party)."""

    __tablename__ = "blob_readers"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    reader: Mapped[str] = mapped_column(String(200), primary_key=True)


class BlobUpload(Base):
    """An upload in progress: its bytes so far are staged on the hub's disk.

    ``offset`` is how many verified bytes the hub holds; the staged file never counts past it.
    """

    __tablename__ = "blob_uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(100))
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Last chunk received: an upload untouched for the stale time is dropped by the sweep.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

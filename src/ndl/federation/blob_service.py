"""Blobs at the hub: resumable, verified uploads; readers; ranged downloads; expiry.

A party (a datasite now; enclaves and other parties later) or a user uploads a blob in
chunks. Each chunk carries its own SHA-256 and the offset it starts at; the hub refuses a
chunk that does not hash to its header (nothing of it is kept) or that starts anywhere but
where the hub's bytes end (409, naming the hub's offset, so the client knows where to resume).
When the last byte arrives the whole SHA-256 is checked and a mismatch discards the upload.

Sizes are checked *before* any byte is stored: each kind has a maximum size and each owner
a quota (finished blobs plus uploads in progress), and the refusal names the limit.

Finished blobs are read by their owner and by readers the owner or a service allowed
(:func:`allow_reader`). A blob is removed when it expires (``--blob-ttl-seconds``) or shortly
after it was delivered whole (:func:`mark_delivered`); :func:`sweep_expired` does both, and
drops uploads left untouched, and runs periodically in the hub.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ndl.core.db import Database, utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, PermissionDenied
from ndl.federation.blob_checks import (
    GIB,
    KINDS,
    MIB,
    check_kind,
    check_media_type,
    check_principal,
    human,
    whole_number,
)
from ndl.federation.blob_models import Blob, BlobReader, BlobUpload
from ndl.federation.blob_responses import blob_response, open_blob, parse_range
from ndl.federation.blobs import (
    BlobStore,
    ChunkSink,
    Staging,
    check_sha256,
    check_upload_id,
    new_upload_id,
    open_store,
)

if TYPE_CHECKING:
    from ndl.hub.state import HubSettings

log = logging.getLogger("ndl.blobs")
# Routes that stream a blob use these; they live in blob_responses (this module's size).
__all__ = ["GIB", "KINDS", "MIB", "BlobContext", "BlobInfo", "BlobLimits", "SweepReport",
           "UploadStatus", "abandon_upload", "allow_reader", "awrite_chunk", "begin_upload",
           "blob_info", "blob_response", "check_kind", "check_media_type", "check_principal",
           "complete_upload", "delete_blob", "human", "mark_delivered", "may_read", "open_blob",
           "parse_range", "readable_blob", "share_blob", "sweep_expired", "upload_status",
           "whole_number", "write_chunk"]

DEFAULT_MAX_SIZE = {"result": 16 * GIB, "bundle": 256 * MIB, "records": 16 * GIB,
                    "sealed": 16 * GIB}
DEFAULT_CHUNK = 8 * MIB
MAX_CHUNK = 64 * MIB


@dataclass(frozen=True)
class BlobLimits:
    """Per-kind maximum sizes, the per-owner quota, how long blobs are kept, the chunk size."""

    max_size: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_SIZE))
    quota_bytes: int = 64 * GIB
    ttl_seconds: float = 7 * 24 * 3600.0
    chunk_bytes: int = DEFAULT_CHUNK
    # An upload with no new chunk for this long is dropped, staged bytes and all.
    stale_upload_seconds: float = 24 * 3600.0
    # A delivered blob stays this long, so a download cut at its last byte can be retried.
    delivered_grace_seconds: float = 600.0

    @classmethod
    def from_settings(cls, settings: HubSettings) -> BlobLimits:
        return cls(
            max_size={"result": settings.blob_max_result_bytes,
                      "bundle": settings.blob_max_bundle_bytes,
                      "records": settings.blob_max_records_bytes,
                      "sealed": settings.blob_max_sealed_bytes},
            quota_bytes=settings.blob_quota_bytes, ttl_seconds=settings.blob_ttl_seconds,
            chunk_bytes=settings.blob_chunk_bytes)


@dataclass
class BlobContext:
    """What the hub's blob functions work on: database, store, staging area and limits."""

    db: Database
    store: BlobStore
    staging: Staging
    limits: BlobLimits

    @classmethod
    def from_settings(cls, settings: HubSettings, db: Database) -> BlobContext:
        if not 64 * 1024 <= settings.blob_chunk_bytes <= MAX_CHUNK:
            raise InvalidInput(f"blob chunk size must be between 64 KiB and {human(MAX_CHUNK)}"
                               f", got {settings.blob_chunk_bytes:,} bytes")
        data_dir = Path(settings.data_dir)
        return cls(db, open_store(settings.blob_store, data_dir),
                   Staging(data_dir / "blobs" / "staging"), BlobLimits.from_settings(settings))


@dataclass(frozen=True)
class UploadStatus:
    """Where an upload stands. ``complete`` with no ``upload_id``: the hub already has it."""

    sha256: str
    size: int
    offset: int
    complete: bool
    chunk_bytes: int
    upload_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"upload_id": self.upload_id, "sha256": self.sha256, "size": self.size,
                "offset": self.offset, "complete": self.complete,
                "chunk_bytes": self.chunk_bytes}


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int
    kind: str
    media_type: str
    owner: str
    complete: bool
    created_at: datetime
    expires_at: datetime
    delivered_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "kind": self.kind,
                "media_type": self.media_type, "owner": self.owner, "complete": self.complete,
                "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat(),
                "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None}


@dataclass(frozen=True)
class SweepReport:
    blobs_deleted: int
    bytes_freed: int
    uploads_dropped: int


def _info(b: Blob) -> BlobInfo:
    return BlobInfo(b.sha256, b.size, b.kind, b.media_type, b.owner, b.state == "complete",
                    b.created_at, b.expires_at, b.delivered_at)


def _usage(session: Session, owner: str, *, besides: str | None = None) -> int:
    held = session.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(
        Blob.owner == owner, Blob.state == "complete")) or 0
    q = select(func.coalesce(func.sum(BlobUpload.size), 0)).where(BlobUpload.owner == owner)
    if besides is not None:
        q = q.where(BlobUpload.id != besides)
    return int(held) + int(session.scalar(q) or 0)


# -- uploads ----------------------------------------------------------------------------------

def begin_upload(session: Session, limits: BlobLimits, *, owner: str, sha256: str, size: int,
                 kind: str, media_type: str) -> UploadStatus:
    """Start (or resume) an upload. Over-limit and over-quota sizes are refused here, before
    any byte is stored; a blob the caller may already read answers ``complete`` at once.

    Someone who may not read an existing blob of the same hash must still send every byte
    (proving they hold it) before they are made a reader of it.
    """
    check_principal(owner, "owner")
    check_sha256(sha256)
    whole_number(size, "size", minimum=1)
    kind, media_type = check_kind(kind), check_media_type(media_type)
    limit = limits.max_size[kind]
    if size > limit:
        raise PayloadTooLarge(
            f"a {kind} blob may be at most {limit:,} bytes ({human(limit)}) on this hub; this "
            f"one is {size:,} bytes ({human(size)}). The hub's operator sets the limit with "
            f"--blob-max-{kind}-bytes", detail={"limit": limit, "size": size, "kind": kind})
    blob = session.get(Blob, sha256)
    if blob is not None and blob.state == "complete" and may_read(session, sha256, owner):
        if blob.size != size:
            raise InvalidInput(f"blob {sha256} is {blob.size:,} bytes, not {size:,}: the same "
                               "hash cannot have two sizes; check the file")
        # Sent again (work re-run, a retry): keep it for a full term from now.
        blob.expires_at = max(blob.expires_at, utcnow() + timedelta(seconds=limits.ttl_seconds))
        blob.delivered_at = None
        return UploadStatus(sha256, size, size, True, limits.chunk_bytes)
    existing = session.scalars(select(BlobUpload).where(
        BlobUpload.owner == owner, BlobUpload.sha256 == sha256)).first()
    if existing is not None:
        if existing.size != size or existing.kind != kind:
            raise Conflict(f"an upload of {sha256} by {owner} is under way as a {existing.kind} "
                           f"of {existing.size:,} bytes; resume it with the same size and kind, "
                           "or abandon it first (DELETE its upload)")
        return _status(existing, limits)
    used = _usage(session, owner)
    if used + size > limits.quota_bytes:
        raise PayloadTooLarge(
            f"{owner} holds {used:,} bytes of blobs and uploads; this {size:,}-byte blob would "
            f"pass its quota of {limits.quota_bytes:,} bytes ({human(limits.quota_bytes)}). "
            "Delivered and expired blobs are removed over time; the hub's operator sets the "
            "quota with --blob-quota-bytes",
            detail={"quota": limits.quota_bytes, "used": used, "size": size})
    up = BlobUpload(id=new_upload_id(), owner=owner, sha256=sha256, size=size, kind=kind,
                    media_type=media_type, offset=0)
    session.add(up)
    session.flush()
    return _status(up, limits)


def _status(up: BlobUpload, limits: BlobLimits) -> UploadStatus:
    return UploadStatus(up.sha256, up.size, up.offset, False, limits.chunk_bytes, up.id)


def _own_upload(session: Session, upload_id: str, who: str) -> BlobUpload:
    up = session.get(BlobUpload, check_upload_id(upload_id))
    # Someone else's upload is "not found" too: its id says nothing to the caller.
    if up is None or up.owner != who:
        raise NotFound(f"no upload {upload_id} of yours is in progress: it finished, was "
                       "abandoned or expired, or belongs to someone else; begin it again")
    return up


def upload_status(session: Session, limits: BlobLimits, upload_id: str, who: str
                  ) -> UploadStatus:
    return _status(_own_upload(session, upload_id, who), limits)


def abandon_upload(ctx: BlobContext, upload_id: str, who: str) -> None:
    with ctx.db.write() as s:
        s.delete(_own_upload(s, upload_id, who))
    ctx.staging.discard(upload_id)
    _forget_hash(upload_id)


# The whole upload's hash so far, per upload, so completing a large upload need not read it
# again. Only a cache: after a restart (or in another hub process) the file is hashed.
_HASHES: OrderedDict[str, tuple[int, Any]] = OrderedDict()
_HASHES_LOCK = threading.Lock()
_UPLOAD_LOCKS: dict[str, threading.Lock] = {}


def _running_hash(upload_id: str, offset: int) -> Any | None:
    with _HASHES_LOCK:
        got = _HASHES.pop(upload_id, None)
        if offset == 0:
            return hashlib.sha256()
        return got[1] if got is not None and got[0] == offset else None


def _keep_hash(upload_id: str, offset: int, h: Any) -> None:
    with _HASHES_LOCK:
        _HASHES[upload_id] = (offset, h)
        while len(_HASHES) > 256:
            _HASHES.popitem(last=False)


def _forget_hash(upload_id: str) -> None:
    with _HASHES_LOCK:
        _HASHES.pop(upload_id, None)


def _upload_lock(upload_id: str) -> threading.Lock:
    with _HASHES_LOCK:
        lock = _UPLOAD_LOCKS.get(upload_id)
        if lock is None:
            if len(_UPLOAD_LOCKS) > 4096:  # forget idle ones; a held lock must stay the one
                for name, held in list(_UPLOAD_LOCKS.items()):
                    if not held.locked():
                        del _UPLOAD_LOCKS[name]
            lock = _UPLOAD_LOCKS[upload_id] = threading.Lock()
        return lock


@dataclass
class _Chunk:
    ctx: BlobContext
    upload_id: str
    offset: int
    sha256: str
    sink: ChunkSink
    lock: threading.Lock
    sha256_of_blob: str


def _start_chunk(ctx: BlobContext, *, upload_id: str, owner: str, offset: int, length: int,
                 sha256: str) -> _Chunk:
    check_sha256(sha256, "chunk sha256")
    whole_number(offset, "offset")
    whole_number(length, "chunk length", minimum=1)
    if length > ctx.limits.chunk_bytes:
        raise PayloadTooLarge(f"a chunk may be at most {ctx.limits.chunk_bytes:,} bytes on this "
                              f"hub; this one declares {length:,}. Send smaller chunks",
                              detail={"limit": ctx.limits.chunk_bytes})
    lock = _upload_lock(check_upload_id(upload_id))
    if not lock.acquire(timeout=60):
        raise Conflict(f"another chunk of upload {upload_id} is being received; wait for it")
    try:
        with ctx.db.read() as s:
            up = _own_upload(s, upload_id, owner)
        if ctx.staging.size(upload_id) < up.offset:
            _restart(ctx, upload_id)
        if offset != up.offset:
            raise Conflict(
                f"the hub holds {up.offset:,} bytes of upload {upload_id}; this chunk "
                f"starts at {offset:,}. Send the chunk that starts at {up.offset:,}",
                detail={"offset": up.offset})
        if offset + length > up.size:
            raise InvalidInput(f"the chunk would end at byte {offset + length:,}, past the "
                               f"{up.size:,} bytes this upload declared")
        sink = ctx.staging.open_chunk(upload_id, offset, length,
                                      _running_hash(upload_id, offset))
    except BaseException:
        lock.release()
        raise
    return _Chunk(ctx, upload_id, offset, sha256, sink, lock, up.sha256)


def _restart(ctx: BlobContext, upload_id: str) -> None:
    """The staged file holds fewer bytes than the hub recorded (lost in a power cut, or
    removed): nothing in it can be trusted, so the upload starts again from byte 0."""
    with ctx.db.write() as s:
        s.execute(update(BlobUpload).where(BlobUpload.id == upload_id).values(offset=0))
    ctx.staging.discard(upload_id)
    _forget_hash(upload_id)
    raise Conflict(f"the hub lost the bytes it had of upload {upload_id} (its disk was cut "
                   "off?); send it again from byte 0", detail={"offset": 0})


def _finish_chunk(job: _Chunk) -> UploadStatus:
    try:
        job.sink.finish(job.sha256)
        end = job.offset + job.sink.written
        with job.ctx.db.write() as s:
            # Compare-and-set: only the chunk that starts where the hub's bytes end moves it.
            size = s.scalar(update(BlobUpload).where(
                BlobUpload.id == job.upload_id, BlobUpload.offset == job.offset,
            ).values(offset=end, updated_at=utcnow()).returning(BlobUpload.size))
            if size is None:
                raise Conflict(f"upload {job.upload_id} moved on while this chunk arrived; "
                               "ask for its status and resume from there")
        if job.sink.running is not None:
            _keep_hash(job.upload_id, end, job.sink.running)
        if end < size:
            return UploadStatus(job.sha256_of_blob, size, end, False,
                                job.ctx.limits.chunk_bytes, job.upload_id)
        return _complete(job.ctx, job.upload_id)
    except BaseException:
        job.sink.abort()
        raise
    finally:
        job.lock.release()


def write_chunk(ctx: BlobContext, *, upload_id: str, owner: str, offset: int, length: int,
                sha256: str, chunks: Iterable[bytes]) -> UploadStatus:
    """Receive one chunk: ``length`` bytes starting at ``offset`` that hash to ``sha256``.

    Takes the :class:`BlobContext` rather than a session: the bytes arrive between two short
    transactions (check, then record), never inside one.
    """
    job = _start_chunk(ctx, upload_id=upload_id, owner=owner, offset=offset, length=length,
                       sha256=sha256)
    try:
        for piece in chunks:
            job.sink.write(piece)
    except BaseException:
        job.sink.abort()
        job.lock.release()
        raise
    return _finish_chunk(job)


async def awrite_chunk(ctx: BlobContext, *, upload_id: str, owner: str, offset: int,
                       length: int, sha256: str, chunks: AsyncIterable[bytes]) -> UploadStatus:
    """:func:`write_chunk` for a request body arriving on the event loop. Pieces are gathered
    to about a MiB and written (and hashed) in a worker thread, so the loop stays free."""
    job = await asyncio.to_thread(_start_chunk, ctx, upload_id=upload_id, owner=owner,
                                  offset=offset, length=length, sha256=sha256)
    # One batch is written while the next arrives: awaiting each write before reading on
    # would stall the socket (the server stops reading while its small buffer is full).
    writing: asyncio.Future[None] | None = None
    try:
        batch: list[bytes] = []
        held = 0
        async for piece in chunks:
            batch.append(piece)
            held += len(piece)
            if held >= MIB:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(job.sink.write,
                                                                  b"".join(batch)))
                batch, held = [], 0
        if writing is not None:
            await writing
        if batch:
            await asyncio.to_thread(job.sink.write, b"".join(batch))
    except BaseException:
        if writing is not None and not writing.done():
            await asyncio.wait([writing])  # never truncate under a write still running
        job.sink.abort()
        job.lock.release()
        raise
    return await asyncio.to_thread(_finish_chunk, job)


def complete_upload(ctx: BlobContext, upload_id: str, who: str) -> UploadStatus:
    """Finish an upload whose every byte arrived but which the hub did not finish (it died
    in between): asked for by the upload's status. If the last chunk's request is still
    finishing it, this answers where the upload stands instead of waiting."""
    lock = _upload_lock(check_upload_id(upload_id))
    if not lock.acquire(blocking=False):
        with ctx.db.read() as s:
            return _status(_own_upload(s, upload_id, who), ctx.limits)
    try:
        with ctx.db.read() as s:
            up = s.get(BlobUpload, upload_id)
            if up is None:  # finished (or discarded) meanwhile by the chunk holding the lock
                raise NotFound(f"no upload {upload_id} of yours is in progress: it finished "
                               "or was abandoned; begin it again to see where it stands")
            if up.owner != who:
                raise NotFound(f"no upload {upload_id} of yours is in progress")
        return _complete(ctx, upload_id)
    finally:
        lock.release()


def _complete(ctx: BlobContext, upload_id: str) -> UploadStatus:
    """Every byte is in: check the whole hash, move the file into the store, record the blob.

    Idempotent, so a hub that died half way finishes on the next status or chunk request.
    A mismatch discards the upload: some chunk was wrong though its own hash matched (a
    client bug, or the wrong file), and only starting again can fix it. The caller holds the
    upload's lock.
    """
    with ctx.db.read() as s:
        up = s.get(BlobUpload, upload_id)
        if up is None:
            raise NotFound(f"no upload {upload_id} is in progress")
        s.expunge(up)
    if up.offset < up.size:
        return _status(up, ctx.limits)
    with _HASHES_LOCK:
        cached = _HASHES.pop(upload_id, None)
    got = (cached[1].hexdigest() if cached is not None and cached[0] == up.size
           else ctx.staging.sha256(upload_id))
    if got != up.sha256:
        with ctx.db.write() as s:
            s.execute(delete(BlobUpload).where(BlobUpload.id == upload_id))
        ctx.staging.discard(upload_id)
        raise InvalidInput(f"the {up.size:,} bytes received hash to {got}, not {up.sha256}: "
                           "the upload was discarded. Check the file and upload it again")
    with ctx.db.read() as s:
        blob = s.get(Blob, up.sha256)
        state = blob.state if blob is not None else None
    if state == "deleting":
        raise Conflict(f"blob {up.sha256} is being removed; ask for the upload's status again "
                       "in a minute to finish it")
    if state is None:
        ctx.store.put_file(up.sha256, ctx.staging.path(upload_id))
    else:
        ctx.staging.discard(upload_id)  # the store already holds these very bytes
    now = utcnow()
    with ctx.db.write() as s:
        s.execute(delete(BlobUpload).where(BlobUpload.id == upload_id))
        blob = s.get(Blob, up.sha256)
        if blob is None:
            s.add(Blob(sha256=up.sha256, size=up.size, kind=up.kind, media_type=up.media_type,
                       owner=up.owner, state="complete", created_at=now,
                       expires_at=now + timedelta(seconds=ctx.limits.ttl_seconds)))
        elif blob.owner != up.owner:
            allow_reader(s, up.sha256, up.owner)
    return UploadStatus(up.sha256, up.size, up.size, True, ctx.limits.chunk_bytes, upload_id)


# -- reading ----------------------------------------------------------------------------------

def blob_info(session: Session, sha256: str) -> BlobInfo | None:
    blob = session.get(Blob, check_sha256(sha256))
    return _info(blob) if blob is not None else None


def allow_reader(session: Session, sha256: str, reader: str) -> None:
    """Let ``reader`` (a principal string) read a finished blob."""
    check_principal(reader)
    blob = session.get(Blob, check_sha256(sha256))
    if blob is None or blob.state != "complete":
        raise NotFound(f"blob {sha256} is not held by the hub: upload it whole first")
    if blob.owner != reader and session.get(BlobReader, (sha256, reader)) is None:
        session.add(BlobReader(sha256=sha256, reader=reader))
        session.flush()


def share_blob(session: Session, sha256: str, who: str, reader: str) -> None:
    """The owner lets ``reader`` read a blob (services call :func:`allow_reader` directly)."""
    blob = session.get(Blob, check_sha256(sha256))
    if blob is None or not may_read(session, sha256, who):
        raise NotFound(f"no blob {sha256} that you may read is held by the hub")
    if blob.owner != who:
        raise PermissionDenied(f"only the blob's owner ({blob.owner}) may let others read it")
    allow_reader(session, sha256, reader)


def may_read(session: Session, sha256: str, who: str) -> bool:
    blob = session.get(Blob, check_sha256(sha256))
    if blob is None or blob.state != "complete":
        return False
    return who in (blob.owner, "hub") or session.get(BlobReader, (sha256, who)) is not None


def readable_blob(session: Session, sha256: str, who: str) -> BlobInfo:
    """The blob's info if ``who`` may read it; otherwise not found (its existence is private)."""
    if not may_read(session, sha256, who):
        raise NotFound(f"no blob {sha256} that you may read is held by the hub")
    info = blob_info(session, sha256)
    assert info is not None
    return info


def mark_delivered(session: Session, sha256: str) -> None:
    """The blob reached its recipient whole: the sweep removes it after a short grace."""
    blob = session.get(Blob, check_sha256(sha256))
    if blob is not None and blob.delivered_at is None:
        blob.delivered_at = utcnow()


# -- removal ----------------------------------------------------------------------------------

def _remove(ctx: BlobContext, names: list[str]) -> int:
    """Delete blobs already marked ``deleting``: the object first, then the rows."""
    freed = 0
    for name in names:
        try:
            size = ctx.store.size(name) or 0
            ctx.store.delete(name)
        except Exception:  # a store hiccup: the row stays 'deleting' and the next sweep retries
            log.warning("could not delete blob %s from the %s store", name, ctx.store.kind,
                        exc_info=True)
            continue
        with ctx.db.write() as s:
            s.execute(delete(BlobReader).where(BlobReader.sha256 == name))
            s.execute(delete(Blob).where(Blob.sha256 == name, Blob.state == "deleting"))
        freed += size
    return freed


def delete_blob(ctx: BlobContext, sha256: str, who: str) -> None:
    """The owner removes a blob now."""
    with ctx.db.write() as s:
        blob = s.get(Blob, check_sha256(sha256))
        if blob is None or not may_read(s, sha256, who):
            raise NotFound(f"no blob {sha256} that you may read is held by the hub")
        if blob.owner != who:
            raise PermissionDenied(f"only the blob's owner ({blob.owner}) may delete it")
        blob.state = "deleting"
    _remove(ctx, [sha256])


def sweep_expired(ctx: BlobContext, now: datetime | None = None) -> SweepReport:
    """Remove expired blobs, delivered ones past their grace, stale uploads and stray files."""
    now = now or utcnow()
    delivered_before = now - timedelta(seconds=ctx.limits.delivered_grace_seconds)
    with ctx.db.write() as s:
        s.execute(update(Blob).where(Blob.state == "complete").where(
            (Blob.expires_at < now) | (Blob.delivered_at < delivered_before)
        ).values(state="deleting"))
        doomed = list(s.scalars(select(Blob.sha256).where(Blob.state == "deleting")))
    freed = _remove(ctx, doomed)
    stale_before = now - timedelta(seconds=ctx.limits.stale_upload_seconds)
    with ctx.db.write() as s:
        stale = list(s.scalars(select(BlobUpload.id).where(BlobUpload.updated_at < stale_before)))
        if stale:
            s.execute(delete(BlobUpload).where(BlobUpload.id.in_(stale)))
        known = set(s.scalars(select(BlobUpload.id)))
    for upload_id in [*stale, *ctx.staging.orphans(known, ctx.limits.stale_upload_seconds)]:
        ctx.staging.discard(upload_id)
        _forget_hash(upload_id)
    return SweepReport(len(doomed), freed, len(stale))

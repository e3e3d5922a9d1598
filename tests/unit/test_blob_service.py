"""The hub's blob service: limits and quotas before any byte, chunk and whole-hash checks,
offsets, readers, completion, ranges and the expiry sweep. A real hub database (SQLite and
PostgreSQL) and a filesystem store in a temporary folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ndl.core.db import Database, utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, PermissionDenied
from ndl.federation import blob_service as svc
from ndl.federation.blob_models import Blob, BlobUpload
from ndl.federation.blobs import FileStore, Staging

DS = "datasite:nhs-trust"
OTHER = "datasite:dfe"
CHUNK = 64 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def ctx(tmp_path: Path, db_url: str) -> Iterator[svc.BlobContext]:
    """On SQLite and on PostgreSQL (the compare-and-set uses UPDATE ... RETURNING)."""
    db = Database(db_url)
    db.migrate()
    limits = svc.BlobLimits(max_size={"result": 1_000_000, "bundle": 10_000,
                                      "records": 1_000_000, "sealed": 1_000_000},
                            quota_bytes=2_000_000, ttl_seconds=3600, chunk_bytes=CHUNK)
    yield svc.BlobContext(db, FileStore(tmp_path / "blobs" / "store"),
                          Staging(tmp_path / "blobs" / "staging"), limits)
    db.dispose()


def begin(ctx: svc.BlobContext, data: bytes, owner: str = DS, kind: str = "result",
          digest: str | None = None) -> svc.UploadStatus:
    with ctx.db.write() as s:
        return svc.begin_upload(s, ctx.limits, owner=owner, sha256=digest or sha(data),
                                size=len(data), kind=kind, media_type="text/csv")


def send(ctx: svc.BlobContext, status: svc.UploadStatus, data: bytes, owner: str = DS
         ) -> svc.UploadStatus:
    """Send the rest of ``data`` chunk by chunk, as a client would."""
    assert status.upload_id is not None
    while not status.complete:
        piece = data[status.offset:status.offset + CHUNK]
        status = svc.write_chunk(ctx, upload_id=status.upload_id, owner=owner,
                                 offset=status.offset, length=len(piece), sha256=sha(piece),
                                 chunks=[piece[:1000], piece[1000:]])
    return status


def staged_files(ctx: svc.BlobContext) -> list[Path]:
    return list(ctx.staging.root.iterdir())


def test_an_upload_in_chunks_becomes_a_blob_its_owner_can_read(ctx: svc.BlobContext) -> None:
    data = os.urandom(3 * CHUNK + 77)
    status = send(ctx, begin(ctx, data), data)
    assert status.complete and status.offset == len(data)
    assert b"".join(svc.open_blob(ctx, sha(data))) == data
    assert staged_files(ctx) == []
    with ctx.db.read() as s:
        info = svc.blob_info(s, sha(data))
        assert info is not None and info.complete and info.owner == DS
        assert info.size == len(data) and info.media_type == "text/csv"
        assert svc.may_read(s, sha(data), DS) and not svc.may_read(s, sha(data), OTHER)
        assert s.scalars(select(BlobUpload)).all() == []


def test_over_the_kinds_limit_is_refused_before_anything_is_stored(ctx: svc.BlobContext
                                                                   ) -> None:
    with ctx.db.write() as s, pytest.raises(PayloadTooLarge) as err:
        svc.begin_upload(s, ctx.limits, owner=DS, sha256="a" * 64, size=10_001, kind="bundle",
                         media_type="application/zip")
    assert "at most 10,000 bytes" in err.value.message and "10,001" in err.value.message
    assert "--blob-max-bundle-bytes" in err.value.message
    assert err.value.detail == {"limit": 10_000, "size": 10_001, "kind": "bundle"}
    with ctx.db.read() as s:
        assert s.scalars(select(BlobUpload)).all() == []
    assert staged_files(ctx) == []


def test_the_quota_counts_finished_blobs_and_uploads_under_way(ctx: svc.BlobContext) -> None:
    first = os.urandom(900_000)
    send(ctx, begin(ctx, first), first)                    # 0.9 MB held
    begin(ctx, b"x" * 900_000)                              # 0.9 MB more under way
    with pytest.raises(PayloadTooLarge) as err:
        begin(ctx, b"y" * 300_000)                          # 2.1 MB > 2 MB quota
    assert "quota of 2,000,000 bytes" in err.value.message
    assert "holds 1,800,000 bytes" in err.value.message
    begin(ctx, b"z" * 100_000, owner=OTHER)                 # another owner has its own quota
    begin(ctx, b"y" * 200_000)                              # exactly at the quota: allowed


def test_a_corrupted_chunk_is_refused_and_not_kept(ctx: svc.BlobContext) -> None:
    data = os.urandom(2 * CHUNK)
    status = begin(ctx, data)
    assert status.upload_id
    status = svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=0,
                             length=CHUNK, sha256=sha(data[:CHUNK]), chunks=[data[:CHUNK]])
    damaged = bytearray(data[CHUNK:])
    damaged[100] ^= 0xFF
    with pytest.raises(InvalidInput, match="corrupted on the way and was not stored"):
        svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=CHUNK, length=CHUNK,
                        sha256=sha(data[CHUNK:]), chunks=[bytes(damaged)])
    assert ctx.staging.size(status.upload_id) == CHUNK
    with ctx.db.read() as s:
        assert svc.upload_status(s, ctx.limits, status.upload_id, DS).offset == CHUNK
    assert send(ctx, status, data).complete  # the right bytes are then accepted


def test_a_chunk_at_the_wrong_offset_is_a_conflict_naming_the_hubs_offset(
        ctx: svc.BlobContext) -> None:
    data = os.urandom(2 * CHUNK)
    status = begin(ctx, data)
    assert status.upload_id
    for offset in (CHUNK, 5):
        with pytest.raises(Conflict, match="the hub holds 0 bytes") as err:
            svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=offset,
                            length=10, sha256=sha(data[offset:offset + 10]),
                            chunks=[data[offset:offset + 10]])
        assert err.value.detail == {"offset": 0}
    assert ctx.staging.size(status.upload_id) == 0


def test_a_chunk_past_the_end_or_over_the_chunk_size_is_refused(ctx: svc.BlobContext) -> None:
    data = os.urandom(1000)
    status = begin(ctx, data)
    assert status.upload_id
    with pytest.raises(InvalidInput, match="past the 1,000 bytes"):
        svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=0, length=1001,
                        sha256=sha(data + b"!"), chunks=[data + b"!"])
    with pytest.raises(PayloadTooLarge, match="at most 65,536 bytes"):
        svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=0,
                        length=CHUNK + 1, sha256="0" * 64, chunks=[])


def test_a_whole_hash_mismatch_discards_the_upload(ctx: svc.BlobContext) -> None:
    data = os.urandom(CHUNK + 10)
    status = begin(ctx, data, digest=sha(b"what the sender claimed"))
    with pytest.raises(InvalidInput, match="the upload was discarded"):
        send(ctx, status, data)
    with ctx.db.read() as s:
        assert s.scalars(select(BlobUpload)).all() == []
        assert svc.blob_info(s, sha(data)) is None
    assert staged_files(ctx) == []
    assert list(ctx.store.names()) == []


def test_completion_rehashes_the_file_when_the_running_hash_is_gone(ctx: svc.BlobContext
                                                                    ) -> None:
    """After a hub restart the in-memory hash is gone; the staged file is hashed instead."""
    data = os.urandom(2 * CHUNK)
    status = begin(ctx, data)
    assert status.upload_id
    status = svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=0,
                             length=CHUNK, sha256=sha(data[:CHUNK]), chunks=[data[:CHUNK]])
    svc._HASHES.clear()
    assert send(ctx, status, data).complete
    assert b"".join(svc.open_blob(ctx, sha(data))) == data


def test_beginning_again_resumes_the_same_upload(ctx: svc.BlobContext) -> None:
    data = os.urandom(2 * CHUNK)
    first = begin(ctx, data)
    assert first.upload_id
    svc.write_chunk(ctx, upload_id=first.upload_id, owner=DS, offset=0, length=CHUNK,
                    sha256=sha(data[:CHUNK]), chunks=[data[:CHUNK]])
    again = begin(ctx, data)
    assert again.upload_id == first.upload_id and again.offset == CHUNK
    with pytest.raises(Conflict, match="resume it with the same size and kind"):
        begin(ctx, data, kind="records")


def test_a_finished_blob_answers_complete_at_once_to_who_may_read_it(ctx: svc.BlobContext
                                                                     ) -> None:
    data = os.urandom(1000)
    send(ctx, begin(ctx, data), data)
    again = begin(ctx, data)
    assert again.complete and again.upload_id is None and again.offset == 1000


def test_someone_else_must_send_every_byte_before_reading_the_same_blob(ctx: svc.BlobContext
                                                                        ) -> None:
    """Knowing a hash is not holding the bytes: no read access from a hash alone."""
    data = os.urandom(1000)
    send(ctx, begin(ctx, data), data)
    theirs = begin(ctx, data, owner=OTHER)
    assert not theirs.complete and theirs.offset == 0
    with ctx.db.read() as s:
        assert not svc.may_read(s, sha(data), OTHER)
    send(ctx, theirs, data, owner=OTHER)
    with ctx.db.read() as s:
        assert svc.may_read(s, sha(data), OTHER)
        info = svc.blob_info(s, sha(data))
        assert info is not None and info.owner == DS


def test_uploads_are_private_to_their_owner(ctx: svc.BlobContext) -> None:
    data = os.urandom(1000)
    status = begin(ctx, data)
    assert status.upload_id
    with ctx.db.read() as s, pytest.raises(NotFound, match="of yours"):
        svc.upload_status(s, ctx.limits, status.upload_id, OTHER)
    with pytest.raises(NotFound, match="of yours"):
        svc.write_chunk(ctx, upload_id=status.upload_id, owner=OTHER, offset=0, length=1000,
                        sha256=sha(data), chunks=[data])
    with pytest.raises(NotFound):
        svc.abandon_upload(ctx, status.upload_id, OTHER)
    assert ctx.staging.size(status.upload_id) == 0


def test_readers_sharing_and_deleting(ctx: svc.BlobContext) -> None:
    data = os.urandom(1000)
    send(ctx, begin(ctx, data), data)
    with ctx.db.write() as s, pytest.raises(NotFound):  # alice cannot even see it yet
        svc.share_blob(s, sha(data), "user:alice", "user:bob")
    with ctx.db.write() as s:
        svc.share_blob(s, sha(data), DS, "user:alice")
        svc.allow_reader(s, sha(data), "user:alice")  # twice is once
    with ctx.db.write() as s:
        assert svc.may_read(s, sha(data), "user:alice")
        with pytest.raises(PermissionDenied, match="owner"):
            svc.share_blob(s, sha(data), "user:alice", "user:bob")
        with pytest.raises(InvalidInput, match="principal"):
            svc.allow_reader(s, sha(data), "alice; DROP TABLE")
    with pytest.raises(PermissionDenied):
        svc.delete_blob(ctx, sha(data), "user:alice")
    svc.delete_blob(ctx, sha(data), DS)
    assert not ctx.store.exists(sha(data))
    with ctx.db.read() as s:
        assert svc.blob_info(s, sha(data)) is None
        assert not svc.may_read(s, sha(data), "user:alice")


def test_the_sweep_removes_expired_delivered_and_stale_things_only(ctx: svc.BlobContext
                                                                   ) -> None:
    keep, old, done, fresh_done = (os.urandom(500) for _ in range(4))
    for data in (keep, old, done, fresh_done):
        send(ctx, begin(ctx, data), data)
    stale = begin(ctx, b"s" * 2000)
    live = begin(ctx, b"l" * 2000)
    assert stale.upload_id and live.upload_id
    for st in (stale, live):
        assert st.upload_id
        svc.write_chunk(ctx, upload_id=st.upload_id, owner=DS, offset=0, length=10,
                        sha256=sha((b"s" if st is stale else b"l") * 10),
                        chunks=[(b"s" if st is stale else b"l") * 10])
    orphan = ctx.staging.path("f" * 32)
    orphan.write_bytes(b"left behind")
    os.utime(orphan, (0, 0))
    now = utcnow()
    with ctx.db.write() as s:
        b = s.get(Blob, sha(old))
        assert b is not None
        b.expires_at = now - timedelta(seconds=1)
        svc.mark_delivered(s, sha(done))
        svc.mark_delivered(s, sha(fresh_done))
        d = s.get(Blob, sha(done))
        assert d is not None and d.delivered_at is not None
        d.delivered_at = now - timedelta(seconds=ctx.limits.delivered_grace_seconds + 1)
        u = s.get(BlobUpload, stale.upload_id)
        assert u is not None
        u.updated_at = now - timedelta(seconds=ctx.limits.stale_upload_seconds + 1)
    report = svc.sweep_expired(ctx, now)
    assert (report.blobs_deleted, report.uploads_dropped, report.bytes_freed) == (2, 1, 1000)
    assert sorted(ctx.store.names()) == sorted([sha(keep), sha(fresh_done)])
    assert not orphan.exists() and ctx.staging.size(stale.upload_id) == 0
    assert ctx.staging.size(live.upload_id) == 10
    with ctx.db.read() as s:
        assert {b.sha256 for b in s.scalars(select(Blob))} == {sha(keep), sha(fresh_done)}
        assert [u.id for u in s.scalars(select(BlobUpload))] == [live.upload_id]


def test_sending_a_blob_again_keeps_it_for_a_new_term(ctx: svc.BlobContext) -> None:
    data = os.urandom(500)
    send(ctx, begin(ctx, data), data)
    with ctx.db.write() as s:
        svc.mark_delivered(s, sha(data))
    begin(ctx, data)
    with ctx.db.read() as s:
        info = svc.blob_info(s, sha(data))
        assert info is not None and info.delivered_at is None


@pytest.mark.parametrize("field,value,message", [
    ("size", -1, "between 1 and"), ("size", 0, "between 1 and"),
    ("size", 2**63, "between 1 and"), ("size", float("nan"), "whole number"),
    ("size", True, "whole number"), ("size", "10", "whole number"),
    ("sha256", "../../etc/passwd", "64 lowercase hexadecimal"),
    ("sha256", "A" * 64, "64 lowercase hexadecimal"),
    ("kind", "everything", "blob kind must be one of"),
    ("media_type", "text/html\r\nSet-Cookie: x=1", "media_type must look like"),
    ("owner", "root", "owner must be a principal"),
])
def test_bad_begin_arguments_are_refused_with_the_fix(ctx: svc.BlobContext, field: str,
                                                      value: object, message: str) -> None:
    args: dict[str, object] = {"owner": DS, "sha256": "a" * 64, "size": 10, "kind": "result",
                               "media_type": "text/csv", field: value}
    with ctx.db.write() as s, pytest.raises(InvalidInput, match=message):
        svc.begin_upload(s, ctx.limits, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("offset,length", [(-1, 10), (2**63, 10), (0, 0), (0, -5),
                                           (float("nan"), 10), (0, float("inf"))])
def test_bad_chunk_numbers_are_refused(ctx: svc.BlobContext, offset: object, length: object
                                       ) -> None:
    status = begin(ctx, os.urandom(100))
    assert status.upload_id
    with pytest.raises(InvalidInput):
        svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=offset,  # type: ignore[arg-type]
                        length=length, sha256="0" * 64, chunks=[])  # type: ignore[arg-type]


@pytest.mark.parametrize("header,span", [
    (None, None), ("", None), ("bytes=0-", (0, 1000)), ("bytes=10-19", (10, 20)),
    ("bytes=990-5000", (990, 1000)), ("bytes=-10", (990, 1000)), ("bytes=-5000", (0, 1000)),
])
def test_ranges(header: str | None, span: tuple[int, int] | None) -> None:
    assert svc.parse_range(header, 1000) == span


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-4", "bytes=0-1,5-6", "items=0-1",
                                    "bytes=-0", "bytes=-", "bytes=" + "9" * 25 + "-"])
def test_ranges_that_cannot_be_served(header: str) -> None:
    with pytest.raises(ValueError):
        svc.parse_range(header, 1000)


def _drain(resp: object) -> bytes:
    import asyncio

    async def read() -> bytes:
        out = b""
        async for piece in resp.body_iterator:  # type: ignore[attr-defined]
            out += piece if isinstance(piece, bytes) else piece.encode()
        return out

    return asyncio.run(read())


def test_blob_response_serves_whole_and_ranged_and_says_when_the_end_was_sent(
        ctx: svc.BlobContext) -> None:
    data = os.urandom(5000)
    send(ctx, begin(ctx, data), data)
    with ctx.db.read() as s:
        info = svc.blob_info(s, sha(data))
    assert info is not None
    ended: list[int] = []
    resp = svc.blob_response(ctx, info, "bytes=0-99", on_complete=lambda: ended.append(1))
    assert resp.status_code == 206 and resp.headers["content-range"] == "bytes 0-99/5000"
    assert _drain(resp) == data[:100] and ended == []
    resp = svc.blob_response(ctx, info, "bytes=100-", filename="x.csv",
                             on_complete=lambda: ended.append(2))
    assert resp.headers["content-length"] == "4900" and resp.headers["etag"] == f'"{sha(data)}"'
    assert 'attachment; filename="x.csv"' == resp.headers["content-disposition"]
    assert _drain(resp) == data[100:] and ended == [2]
    resp = svc.blob_response(ctx, info, "bytes=100-", if_range='"another"')
    assert resp.status_code == 200 and _drain(resp) == data
    resp = svc.blob_response(ctx, info, "bytes=9000-")
    assert resp.status_code == 416 and resp.headers["content-range"] == "bytes */5000"


def test_staged_bytes_lost_under_the_recorded_offset_restart_the_upload(ctx: svc.BlobContext
                                                                        ) -> None:
    """After a power cut the staged file may hold less than the hub recorded: nothing in it
    is trusted, the client is told to start from 0, and the blob still arrives whole."""
    data = os.urandom(3 * CHUNK)
    status = begin(ctx, data)
    assert status.upload_id
    status = svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=0,
                             length=CHUNK, sha256=sha(data[:CHUNK]), chunks=[data[:CHUNK]])
    status = svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=CHUNK,
                             length=CHUNK, sha256=sha(data[CHUNK:2 * CHUNK]),
                             chunks=[data[CHUNK:2 * CHUNK]])
    with ctx.staging.path(status.upload_id).open("r+b") as f:
        f.truncate(CHUNK + 10)
    piece = data[2 * CHUNK:]
    with pytest.raises(Conflict, match="send it again from byte 0") as err:
        svc.write_chunk(ctx, upload_id=status.upload_id, owner=DS, offset=2 * CHUNK,
                        length=len(piece), sha256=sha(piece), chunks=[piece])
    assert err.value.detail == {"offset": 0}
    with ctx.db.read() as s:
        restarted = svc.upload_status(s, ctx.limits, status.upload_id, DS)
    assert restarted.offset == 0 and ctx.staging.size(status.upload_id) == 0
    assert send(ctx, restarted, data).complete
    assert b"".join(svc.open_blob(ctx, sha(data))) == data


def test_an_upload_whose_bytes_all_arrived_is_finished_by_its_status(ctx: svc.BlobContext
                                                                     ) -> None:
    """The hub died after recording the last chunk but before making it a blob."""
    data = os.urandom(CHUNK + 3)
    status = begin(ctx, data)
    assert status.upload_id
    ctx.staging.path(status.upload_id).write_bytes(data)
    with ctx.db.write() as s:
        up = s.get(BlobUpload, status.upload_id)
        assert up is not None
        up.offset = len(data)
    with pytest.raises(NotFound):
        svc.complete_upload(ctx, status.upload_id, OTHER)
    lock = svc._upload_lock(status.upload_id)
    with lock:  # the last chunk's own request is finishing it: answer, do not wait
        busy = svc.complete_upload(ctx, status.upload_id, DS)
    assert not busy.complete and busy.offset == len(data)
    done = svc.complete_upload(ctx, status.upload_id, DS)
    assert done.complete
    assert b"".join(svc.open_blob(ctx, sha(data))) == data
    with pytest.raises(NotFound):
        svc.complete_upload(ctx, status.upload_id, DS)

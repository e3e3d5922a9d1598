"""The blob store interface, run against both stores: files, and the S3 store talking to a
real S3-compatible server (moto's, started as its own process on loopback; not AWS or MinIO).
Also the staging area's chunk sink, which keeps only verified chunks."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ndl.core.errors import InvalidInput, PayloadTooLarge
from ndl.federation.blobs import (
    S3_PART_SIZE,
    BlobStore,
    FileStore,
    S3Store,
    Staging,
    new_upload_id,
    open_store,
)
from ndl.testing import S3TestServer


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pieces(data: bytes, size: int = 100_000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3TestServer]:
    with S3TestServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(params=["files", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> BlobStore:
    if request.param == "files":
        return FileStore(tmp_path / "blobs")
    server: S3TestServer = request.getfixturevalue("s3_server")
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    bucket = f"b-{os.urandom(4).hex()}"
    server.create_bucket(bucket)
    made = open_store(f"s3://{bucket}/blobs?endpoint={server.url}&region=us-east-1",
                      tmp_path)
    assert isinstance(made, S3Store) and made.prefix == "blobs/"
    return made


def test_put_open_size_exists_delete(store: BlobStore) -> None:
    data = os.urandom(300_001)
    name = sha(data)
    assert not store.exists(name) and store.size(name) is None
    assert store.put(name, pieces(data)) == len(data)
    assert store.exists(name) and store.size(name) == len(data)
    assert b"".join(store.open(name)) == data
    assert list(store.names()) == [name]
    assert store.delete(name) is True
    assert store.delete(name) is False
    assert not store.exists(name)
    with pytest.raises(FileNotFoundError):
        b"".join(store.open(name))


@pytest.mark.parametrize("start,end", [(0, 1), (5, 17), (299_990, None), (123_456, 300_001),
                                       (10, 10)])
def test_ranges_read_exactly_the_bytes_asked_for(store: BlobStore, start: int,
                                                 end: int | None) -> None:
    data = os.urandom(300_001)
    store.put(sha(data), [data])
    assert b"".join(store.open(sha(data), start, end)) == data[start:end]


def test_a_multipart_sized_blob_round_trips_in_parts(store: BlobStore) -> None:
    # Over one S3 part, so the S3 store sends at least two parts and stitches them.
    data = os.urandom(S3_PART_SIZE + 1234)
    store.put(sha(data), pieces(data, 1 << 20))
    got = hashlib.sha256()
    for piece in store.open(sha(data)):
        assert len(piece) <= 1 << 20  # streamed in pieces, never the whole blob
        got.update(piece)
    assert got.hexdigest() == sha(data)


def test_a_put_that_fails_half_way_leaves_nothing(store: BlobStore) -> None:
    data = os.urandom(S3_PART_SIZE + 10)
    name = sha(data)

    def broken() -> Iterator[bytes]:
        yield data[:S3_PART_SIZE]
        yield data[S3_PART_SIZE:S3_PART_SIZE + 5]
        raise ConnectionResetError("the source went away")

    with pytest.raises(ConnectionResetError):
        store.put(name, broken())
    assert not store.exists(name)
    assert list(store.names()) == []


def test_put_file_moves_a_staged_file_in(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    staged = tmp_path / "staged.part"
    staged.write_bytes(data)
    store.put_file(sha(data), staged)
    assert not staged.exists()
    assert b"".join(store.open(sha(data))) == data


@pytest.mark.parametrize("name", ["../../etc/passwd", "A" * 64, "a" * 63, "a" * 65, "",
                                  "g" * 64, "a" * 62 + "/.", "../" + "a" * 61])
def test_names_that_are_not_a_sha256_are_refused_by_every_method(store: BlobStore,
                                                                  name: str) -> None:
    for call in (lambda: store.put(name, [b"x"]), lambda: store.open(name),
                 lambda: store.size(name), lambda: store.delete(name)):
        with pytest.raises(InvalidInput, match="64 lowercase hexadecimal"):
            call()


def test_memory_stays_flat_while_a_large_blob_streams_through(store: BlobStore) -> None:
    size, piece = 96 * 1024 * 1024, os.urandom(1 << 20)
    h = hashlib.sha256()
    for _ in range(size // len(piece)):
        h.update(piece)
    tracemalloc.start()
    try:
        store.put(h.hexdigest(), (piece for _ in range(size // len(piece))))
        read = sum(len(p) for p in store.open(h.hexdigest()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read == size
    # A few parts' worth at most (S3 buffers one 8 MiB part), never the 96 MiB blob.
    assert peak < 32 * 1024 * 1024, f"peak {peak:,} bytes while streaming {size:,}"


def test_the_default_store_is_files_under_the_data_folder(tmp_path: Path) -> None:
    made = open_store("", tmp_path)
    assert isinstance(made, FileStore) and made.root == tmp_path / "blobs" / "store"
    with pytest.raises(InvalidInput, match="s3://bucket"):
        open_store("ftp://example/blobs", tmp_path)
    with pytest.raises(InvalidInput, match="s3://bucket"):
        S3Store.from_url("s3:///no-bucket")


# -- the staging area -------------------------------------------------------------------------

def test_a_staged_chunk_whose_hash_does_not_match_is_removed(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging")
    up = new_upload_id()
    good = os.urandom(1000)
    sink = staging.open_chunk(up, 0, len(good))
    sink.write(good)
    sink.finish(sha(good))
    assert staging.size(up) == 1000
    bad = os.urandom(500)
    sink = staging.open_chunk(up, 1000, 500)
    sink.write(bad)
    with pytest.raises(InvalidInput, match="corrupted on the way and was not stored"):
        sink.finish(sha(b"something else"))
    assert staging.size(up) == 1000
    assert staging.path(up).read_bytes() == good


def test_a_chunk_shorter_or_longer_than_declared_is_removed(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging")
    up = new_upload_id()
    sink = staging.open_chunk(up, 0, 100)
    sink.write(b"x" * 60)
    with pytest.raises(InvalidInput, match="ended after 60 of its declared 100 bytes"):
        sink.finish(sha(b"x" * 60))
    assert staging.size(up) == 0
    sink = staging.open_chunk(up, 0, 100)
    sink.write(b"x" * 90)
    with pytest.raises(PayloadTooLarge, match="longer than the 100 bytes"):
        sink.write(b"x" * 20)
    assert staging.size(up) == 0


def test_bytes_past_the_recorded_offset_are_dropped_when_the_next_chunk_starts(
        tmp_path: Path) -> None:
    """A chunk written but never recorded (the hub died in between) does not count."""
    staging = Staging(tmp_path / "staging")
    up = new_upload_id()
    staging.path(up).write_bytes(b"a" * 100 + b"unrecorded")
    sink = staging.open_chunk(up, 100, 3)
    sink.write(b"bcd")
    sink.finish(sha(b"bcd"))
    assert staging.path(up).read_bytes() == b"a" * 100 + b"bcd"


def test_upload_ids_are_checked_before_they_name_a_file(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging")
    for bad in ("../x", "0" * 31, "Z" * 32, "0" * 32 + "/"):
        with pytest.raises(InvalidInput, match="upload id"):
            staging.path(bad)

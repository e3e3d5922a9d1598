"""Where the hub keeps blob bytes: one small interface, a filesystem store and an S3 store.

A blob is named by the SHA-256 of its bytes (64 lowercase hex digits, checked on every call,
so a name can never be a path). Everything streams in pieces of at most :data:`READ_SIZE`
bytes, so memory stays flat whatever a blob's size.

Uploads in progress are *staged* on the hub's local disk (:class:`Staging`), whichever store
holds finished blobs: resuming an upload means appending to a file, which an object store
cannot do. Once every byte has arrived and the whole SHA-256 checks out, the staged file is
handed to the store (:meth:`BlobStore.put_file`): the filesystem store renames it into place;
the S3 store streams it up as a multipart upload, which S3 makes visible only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ndl.core.errors import InvalidInput, PayloadTooLarge
from ndl.core.private import private_dir

# Pieces read from a store or the network; a response or a hash never holds more than this.
READ_SIZE = 1024 * 1024
# S3 needs every multipart part but the last to be at least 5 MiB; 8 MiB keeps parts few.
S3_PART_SIZE = 8 * 1024 * 1024
# A party signs a request whose body is not JSON (a chunk) or that has none (a download) in
# this header: base64url of an envelope of kind "request" naming the method, path and args.
ENVELOPE_HEADER = "X-Ndl-Envelope"
REQUEST_KIND = "request"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


def check_sha256(value: object, what: str = "sha256") -> str:
    """A blob name: exactly 64 lowercase hexadecimal digits (never a path or a pattern)."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise InvalidInput(f"{what} must be 64 lowercase hexadecimal digits (a SHA-256), "
                           f"got {str(value)[:80]!r}")
    return value


def check_upload_id(value: object) -> str:
    if not isinstance(value, str) or not _UPLOAD_ID.fullmatch(value):
        raise InvalidInput(f"upload id must be 32 lowercase hexadecimal digits, "
                           f"got {str(value)[:80]!r}")
    return value


def new_upload_id() -> str:
    return secrets.token_hex(16)


def file_chunks(path: Path, start: int = 0, end: int | None = None,
                size: int = READ_SIZE) -> Iterator[bytes]:
    """The bytes ``[start, end)`` of a file, in pieces of at most ``size``."""
    with path.open("rb") as f:
        f.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            piece = f.read(size if left is None else min(size, left))
            if not piece:
                return
            if left is not None:
                left -= len(piece)
            yield piece


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    for piece in file_chunks(path):
        h.update(piece)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` survive a power cut (POSIX needs the dir's fsync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore(ABC):
    """Finished blobs, by SHA-256. Writes are atomic: a blob is either whole or absent.

    ``open`` reads ``[start, end)`` (``end=None``: to the end) as an iterator of pieces.
    """

    kind: str = "?"

    @abstractmethod
    def put(self, sha256: str, chunks: Iterable[bytes]) -> int:
        """Store a stream of bytes under ``sha256``; return how many were stored. The caller
        has checked the hash (the store does not hash)."""

    def put_file(self, sha256: str, path: Path) -> None:
        """Move a finished staged file into the store (it is gone from ``path`` afterwards)."""
        self.put(sha256, file_chunks(path, size=S3_PART_SIZE))
        path.unlink(missing_ok=True)

    @abstractmethod
    def open(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The blob's bytes ``[start, end)`` in pieces; raises ``FileNotFoundError`` if absent."""

    @abstractmethod
    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes, or None if the store does not hold it."""

    def exists(self, sha256: str) -> bool:
        return self.size(sha256) is not None

    @abstractmethod
    def delete(self, sha256: str) -> bool:
        """Remove the blob; True if it was there."""

    @abstractmethod
    def names(self) -> Iterator[str]:
        """Every blob name held (for sweeping objects no database row names)."""


class FileStore(BlobStore):
    """Blobs as files under ``root/<first two hex digits>/<sha256>``, written atomically
    (a temporary file, fsynced, renamed into place, the directory fsynced)."""

    kind = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = private_dir(root)
        self.tmp = private_dir(root / "tmp")

    def path(self, sha256: str) -> Path:
        name = check_sha256(sha256)
        return self.root / name[:2] / name

    def _place(self, tmp: Path, sha256: str) -> None:
        dest = self.path(sha256)
        dest.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)

    def put(self, sha256: str, chunks: Iterable[bytes]) -> int:
        self.path(sha256)  # check the name before writing anything
        tmp = self.tmp / f"{sha256}.{secrets.token_hex(8)}"
        n = 0
        try:
            with tmp.open("xb") as f:
                for piece in chunks:
                    f.write(piece)
                    n += len(piece)
                f.flush()
                os.fsync(f.fileno())
            self._place(tmp, sha256)
        finally:
            tmp.unlink(missing_ok=True)
        return n

    def put_file(self, sha256: str, path: Path) -> None:
        self.path(sha256)
        with path.open("rb") as f:
            os.fsync(f.fileno())
        try:
            self._place(path, sha256)
        except OSError:
            # Staging on another filesystem than the store: copy (streamed), then remove.
            super().put_file(sha256, path)

    def open(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self.path(sha256)
        if not path.is_file():
            raise FileNotFoundError(sha256)
        return file_chunks(path, start, end)

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def names(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    if _SHA256.fullmatch(f.name):
                        yield f.name


class S3Store(BlobStore):
    """Blobs as objects ``<prefix><sha256>`` in one bucket of an S3-compatible service.

    Credentials come from the usual AWS environment variables or files (never from the URL),
    so no secret sits in the hub's command line. Writes are multipart uploads of
    :data:`S3_PART_SIZE` parts sent one at a time: memory holds one part, and the object
    appears only when the upload completes (an aborted one leaves nothing).
    """

    kind = "s3"

    def __init__(self, bucket: str, *, endpoint_url: str | None = None,
                 region: str | None = None, prefix: str = "", client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
                config=Config(retries={"max_attempts": 5, "mode": "standard"},
                              s3={"addressing_style": "path"}))
        self.client, self.bucket, self.prefix = client, bucket, prefix

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        """``s3://bucket[/prefix]?endpoint=http://host:port&region=...``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidInput(f"blob store {url!r} is not valid: use s3://bucket[/prefix]"
                               "[?endpoint=http://host:9000&region=eu-west-2]")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        prefix = parts.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(parts.netloc, endpoint_url=query.get("endpoint"), region=query.get("region"),
                   prefix=prefix)

    def _key(self, sha256: str) -> str:
        return self.prefix + check_sha256(sha256)

    def _missing(self, exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def put(self, sha256: str, chunks: Iterable[bytes]) -> int:
        key = self._key(sha256)
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        buf, n = bytearray(), 0

        def send(data: bytes | bytearray) -> None:
            number = len(parts) + 1
            resp = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                           PartNumber=number, Body=bytes(data))
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})

        try:
            for piece in chunks:
                buf += piece
                n += len(piece)
                if len(buf) >= S3_PART_SIZE:
                    send(buf)
                    buf = bytearray()
            if buf or not parts:
                send(buf)
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=upload_id)
            raise
        return n

    def open(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = self._key(sha256)
        if end is not None and end <= start:
            return iter(())
        rng = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key, Range=rng)
        except Exception as exc:
            if self._missing(exc):
                raise FileNotFoundError(sha256) from exc
            raise
        return self._pieces(resp["Body"])

    @staticmethod
    def _pieces(body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(READ_SIZE)
        finally:
            body.close()

    def size(self, sha256: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except Exception as exc:
            if self._missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    def delete(self, sha256: str) -> bool:
        there = self.exists(sha256)
        self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
        return there

    def names(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                name = str(obj["Key"])[len(self.prefix):]
                if _SHA256.fullmatch(name):
                    yield name


def open_store(spec: str, data_dir: Path) -> BlobStore:
    """The store a ``--blob-store`` value names: "" for files under ``DATA_DIR/blobs``, a
    directory path, or ``s3://bucket[/prefix]?endpoint=...``."""
    if not spec:
        return FileStore(data_dir / "blobs" / "store")
    if spec.startswith("s3://"):
        return S3Store.from_url(spec)
    if "://" in spec:
        raise InvalidInput(f"blob store {spec!r} is not valid: leave it empty for files under "
                           "the data folder, give a directory, or s3://bucket?endpoint=URL")
    return FileStore(Path(spec).expanduser())


# The whole upload's running hash is updated on this thread while the chunk's own hash and
# the write happen on the caller's: hashlib lets go of the GIL, so the two hashes of every
# byte run on two cores at once.
_HASHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ndl-blob-hash")


class ChunkSink:
    """One chunk being written into a staged upload at ``offset``.

    The chunk's own SHA-256 is checked in :meth:`finish`; a chunk that does not match, is
    longer or shorter than declared, or is cut off is truncated away (:meth:`abort`), so the
    staged file only ever grows by verified chunks. ``running`` is the whole upload's hash so
    far, if known, carried forward so completion need not read the file again.

    Chunks are not fsynced one by one: an acknowledged chunk is in the operating system's
    cache, which a killed hub process does not lose. The file is fsynced once, whole, before
    it becomes a blob; after a power cut, a staged file shorter than the recorded offset makes
    the upload start again (``blob_service``), and the whole-hash check at completion catches
    any other loss.
    """

    def __init__(self, path: Path, offset: int, length: int,
                 running: Any | None) -> None:
        self.path, self.offset, self.length = path, offset, length
        self.written = 0
        self._chunk = hashlib.sha256()
        self.running = running
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        # The database's offset is the truth: bytes past it (a chunk cut off before the hub
        # recorded it) are dropped, never counted.
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        self._fd: int | None = fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd is None:
            raise InvalidInput("this chunk was already finished or abandoned")
        if self.written + len(data) > self.length:
            self.abort()
            raise PayloadTooLarge(f"the chunk is longer than the {self.length:,} bytes its "
                                  "header declared; send exactly the declared length")
        running = _HASHER.submit(self.running.update, data) if self.running is not None \
            else None
        view = memoryview(data)
        while view:
            done = os.write(self._fd, view)
            view = view[done:]
        self._chunk.update(data)
        if running is not None:
            running.result()
        self.written += len(data)

    def finish(self, sha256: str) -> None:
        """Check the chunk's length and hash; make it durable. Refused chunks are removed."""
        if self._fd is None:
            raise InvalidInput("this chunk was already finished or abandoned")
        if self.written != self.length:
            got = self.written
            self.abort()
            raise InvalidInput(f"the chunk ended after {got:,} of its declared "
                               f"{self.length:,} bytes; send it again whole")
        if self._chunk.hexdigest() != sha256:
            self.abort()
            raise InvalidInput(
                f"the chunk's bytes hash to {self._chunk.hexdigest()}, not the {sha256} its "
                "header gives: it was corrupted on the way and was not stored; send it again")
        os.close(self._fd)
        self._fd = None

    def abort(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.offset)
            os.close(self._fd)
            self._fd = None
        self.running = None


class Staging:
    """Uploads in progress, one file each under ``root`` (always local disk)."""

    def __init__(self, root: Path) -> None:
        self.root = private_dir(root)

    def path(self, upload_id: str) -> Path:
        return self.root / f"{check_upload_id(upload_id)}.part"

    def size(self, upload_id: str) -> int:
        try:
            return self.path(upload_id).stat().st_size
        except FileNotFoundError:
            return 0

    def open_chunk(self, upload_id: str, offset: int, length: int,
                   running: Any | None = None) -> ChunkSink:
        return ChunkSink(self.path(upload_id), offset, length, running)

    def sha256(self, upload_id: str) -> str:
        return sha256_file(self.path(upload_id))

    def discard(self, upload_id: str) -> None:
        self.path(upload_id).unlink(missing_ok=True)

    def orphans(self, known: set[str], older_than: float) -> list[str]:
        """Staged files no upload row names, untouched for ``older_than`` seconds."""
        cutoff = time.time() - older_than
        out = []
        for f in self.root.glob("*.part"):
            upload_id = f.name.removesuffix(".part")
            if upload_id not in known and _UPLOAD_ID.fullmatch(upload_id):
                with contextlib.suppress(FileNotFoundError):
                    if f.stat().st_mtime < cutoff:
                        out.append(upload_id)
        return out

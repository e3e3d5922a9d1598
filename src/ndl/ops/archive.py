"""The backup archive: one tar file (gzip-compressed) that is checked whole before it is used.

Layout, in this order::

    ndl-backup.json      the header: format, format version, kind (hub or datasite), ndl version
    <members>            db/<table>.jsonl, blobs/<sha256>, keys/..., settings/..., state/...
    manifest.json        every member's size and SHA-256, row counts, the Alembic revision,
                         signed by the hub's (or the datasite's) key

The header comes first so a foreign or too-new archive is refused after a few bytes; the
manifest comes last so the writer can stream members (blobs may be gigabytes) and record what
it actually wrote. A reader therefore reads the archive twice: :func:`verify` streams every
member through SHA-256 and compares it with the manifest, writing nothing; only then does the
restore read it again (:func:`members`), checking each hash a second time as it goes in case
the file changed in between.

Member names come from a closed list of patterns (no ``..``, no absolute paths, no links or
devices): the reader never builds a path from a name it has not matched.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ndl.core.errors import InvalidInput
from ndl.core.private import FILE_MODE, private_dir

FORMAT = "ndl-backup"
FORMAT_VERSION = 1
HEADER = "ndl-backup.json"
MANIFEST = "manifest.json"
CHUNK = 1024 * 1024
# gzip cannot expand data more than ~1032 times; a member claiming more than this multiple of
# the archive's own size cannot be real (a forged header, or a truncated file).
_GZIP_RATIO = 1100
_SMALL = 1024 * 1024            # keys, settings, configuration files
_HEADER_MAX = 64 * 1024
_MANIFEST_MAX = 64 * 1024 * 1024
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}"
# Each allowed name, with the largest size a member of that shape may have (None: no cap
# beyond the archive's own size).
_PATTERNS: dict[str, list[tuple[re.Pattern[str], int | None]]] = {
    "hub": [
        (re.compile(r"db/[a-z_][a-z0-9_]{0,62}\.jsonl"), None),
        (re.compile(r"blobs/[0-9a-f]{64}"), None),
        (re.compile(rf"keys/{_PART}"), _SMALL),
        (re.compile(rf"settings/{_PART}"), _SMALL),
    ],
    "datasite": [
        (re.compile(rf"state/{_PART}\.sqlite"), None),
        (re.compile(rf"keys/{_PART}\.pem(\.next)?"), _SMALL),
        (re.compile(r"config/datasite\.json"), _SMALL),
        (re.compile(rf"datasets/{_PART}/(metadata\.json|policy\.ya?ml|policy\.json|source\.json)"),
         16 * _SMALL),
        (re.compile(rf"datasets/{_PART}/data\.parquet"), None),
    ],
}


class ArchiveError(InvalidInput):
    """The archive is not one this ndl can restore: damaged, truncated, changed or foreign."""

    code = "bad_archive"


def _cap(kind: str, name: str) -> int | None:
    for pattern, cap in _PATTERNS[kind]:
        if pattern.fullmatch(name) and ".." not in name:
            return cap
    raise ArchiveError(f"the archive holds a member named {name[:120]!r}, which no ndl backup "
                       "holds (a foreign or tampered archive); nothing was restored")


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str


class _HashingReader(io.RawIOBase):
    """A file-like over ``chunks`` that hashes what tarfile reads from it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n):
            piece = next(self._it, None)
            if piece is None:
                break
            self._buf += piece
        out, self._buf = (self._buf, b"") if n < 0 else (self._buf[:n], self._buf[n:])
        self.hash.update(out)
        self.count += len(out)
        return out


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while piece := f.read(CHUNK):
        yield piece


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArchiveWriter:
    """Write an archive to a private temporary file beside ``out``; :meth:`finish` fsyncs it
    and renames it into place, so a crash never leaves a half-written archive under the name
    asked for. Leaving the ``with`` block without finishing removes the temporary file."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = out
        private_dir(out.parent, tighten=False)
        self.tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.part")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        self._file = os.fdopen(fd, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w|gz", format=tarfile.PAX_FORMAT)
        self.members: list[Member] = []
        self.mtime = int(header.get("created_unix", 0))
        self.kind = str(header["kind"])
        self._add(HEADER, json.dumps(header, indent=2).encode(), check=False)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tar is not None:
            with contextlib.suppress(Exception):
                self._tar.close()
            with contextlib.suppress(Exception):
                self._file.close()
            self.tmp.unlink(missing_ok=True)

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, FILE_MODE, self.mtime
        return info

    def _add(self, name: str, data: bytes, *, check: bool = True) -> Member:
        if check:
            _cap(self.kind, name)
        assert self._tar is not None
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))
        member = Member(name, len(data), hashlib.sha256(data).hexdigest())
        if check:
            self.members.append(member)
        return member

    def add_bytes(self, name: str, data: bytes) -> Member:
        return self._add(name, data)

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes]) -> Member:
        """Stream exactly ``size`` bytes from ``chunks`` (a source that ends early is an
        error: tarfile refuses to write a short member)."""
        _cap(self.kind, name)
        reader = _HashingReader(chunks)
        assert self._tar is not None
        self._tar.addfile(self._info(name, size), reader)
        member = Member(name, size, reader.hash.hexdigest())
        self.members.append(member)
        return member

    def add_file(self, name: str, path: Path) -> Member:
        with path.open("rb") as f:
            return self.add_stream(name, os.fstat(f.fileno()).st_size, _chunks(f))

    def finish(self, manifest: dict[str, Any],
               sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Path:
        """Write the manifest (every member's size and SHA-256 added, then ``sign`` applied),
        then make the archive durable under its name."""
        manifest = {**manifest, "format_version": FORMAT_VERSION,
                    "members": {m.name: {"size": m.size, "sha256": m.sha256}
                                for m in self.members}}
        if sign is not None:
            manifest = sign(manifest)
        self._add(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(),
                  check=False)
        assert self._tar is not None
        self._tar.close()
        self._tar = None  # type: ignore[assignment]
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.out)
        _fsync_dir(self.out.parent)
        return self.out


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes a manifest is hashed and signed as (sorted keys, no spaces)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Verified:
    """What :func:`verify` found: the header, the manifest and the members in order."""

    header: dict[str, Any]
    manifest: dict[str, Any]
    order: list[str] = field(default_factory=list)

    @property
    def members(self) -> dict[str, dict[str, Any]]:
        m: dict[str, dict[str, Any]] = self.manifest["members"]
        return m


def _open(path: Path) -> tuple[tarfile.TarFile, int]:
    if not path.is_file():
        raise ArchiveError(f"{path} is not a file: give the path of an archive "
                           "'ndl backup' wrote")
    size = path.stat().st_size
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    try:
        tar = tarfile.open(path, mode="r|gz" if gz else "r|")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{path} is not an ndl backup (not a tar archive: {exc}); give "
                           "the file 'ndl backup' wrote") from exc
    return tar, size * (_GZIP_RATIO if gz else 1)


def _read_json(tar: tarfile.TarFile, info: tarfile.TarInfo, cap: int) -> tuple[bytes, Any]:
    if info.size > cap:
        raise ArchiveError(f"the archive's {info.name} claims {info.size:,} bytes, more than "
                           f"the {cap:,} it may hold: the archive is forged or damaged")
    f = tar.extractfile(info)
    assert f is not None
    raw = f.read()
    if len(raw) != info.size:
        raise ArchiveError(f"the archive ends inside {info.name}: it is truncated; copy it "
                           "again from where it was made")
    try:
        return raw, json.loads(raw)
    except ValueError as exc:
        raise ArchiveError(f"the archive's {info.name} is not valid JSON: it is damaged") from exc


def _check_header(header: Any, kind: str) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArchiveError("this archive is not an ndl backup (its header names no ndl "
                           "format); give the file 'ndl backup' wrote")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ArchiveError(
            f"this archive is in backup format version {version!r}, but this ndl reads "
            f"version {FORMAT_VERSION}; restore it with the ndl that made it "
            f"(ndl {str(header.get('ndl_version', '?'))[:40]}) or one that reads its format")
    if header.get("kind") != kind:
        raise ArchiveError(f"this archive is a {str(header.get('kind'))[:20]} backup, not a "
                           f"{kind} backup; use 'ndl restore {header.get('kind')}' for it")
    return header


def _members(tar: tarfile.TarFile, path: Path) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(f"{path} is damaged or truncated ({exc}); nothing was restored; "
                           "copy the archive again from where it was made") from exc


def verify(path: Path, kind: str,
           progress: Callable[[str, int], None] | None = None) -> Verified:
    """Read the whole archive, hashing every member, and check it against its manifest.

    Writes nothing. Raises :class:`ArchiveError` naming the first problem: a foreign file,
    another format version, an unexpected or duplicated name, a link or device, a size no
    archive of this size can hold, a truncation, or a member whose size or SHA-256 differs
    from the manifest's.
    """
    tar, most = _open(path)
    seen: dict[str, Member] = {}
    order: list[str] = []
    try:
        header, manifest = _verify_members(tar, path, kind, most, seen, order, progress)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(f"{path} is damaged or truncated ({exc}); nothing was restored; "
                           "copy the archive again from where it was made") from exc
    finally:
        with contextlib.suppress(Exception):
            tar.close()
    if header is None:
        raise ArchiveError(f"{path} is empty or not an ndl backup")
    if manifest is None:
        raise ArchiveError(f"{path} ends before its manifest: it is truncated; copy it again")
    _compare(manifest, seen)
    return Verified(header, manifest, order)


def _verify_members(tar: tarfile.TarFile, path: Path, kind: str, most: int,
                    seen: dict[str, Member], order: list[str],
                    progress: Callable[[str, int], None] | None
                    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    header: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    for info in _members(tar, path):
        if manifest is not None:
            raise ArchiveError(f"the archive has a member ({info.name[:120]!r}) after its "
                               "manifest: it was changed after it was made")
        if not info.isreg():
            raise ArchiveError(f"the archive's member {info.name[:120]!r} is not a plain "
                               "file (a link or device): a tampered archive")
        if header is None:
            if info.name != HEADER:
                raise ArchiveError("this archive is not an ndl backup (it does not start "
                                   f"with {HEADER}); give the file 'ndl backup' wrote")
            header = _check_header(_read_json(tar, info, _HEADER_MAX)[1], kind)
            continue
        if info.name == MANIFEST:
            manifest = _read_json(tar, info, _MANIFEST_MAX)[1]
            continue
        cap = _cap(kind, info.name)
        if info.name in seen:
            raise ArchiveError(f"the archive holds {info.name!r} twice: a tampered archive")
        if info.size > (cap if cap is not None else most) or info.size > most:
            raise ArchiveError(
                f"the archive's member {info.name!r} claims {info.size:,} bytes, more than "
                "it may hold or the archive could contain: it is forged or damaged")
        f = tar.extractfile(info)
        assert f is not None
        h, n = hashlib.sha256(), 0
        for piece in _chunks(f):
            h.update(piece)
            n += len(piece)
            if progress:
                progress(f"checking {info.name}", len(piece))
        if n != info.size:
            raise ArchiveError(f"the archive ends inside {info.name}: it is truncated")
        seen[info.name] = Member(info.name, n, h.hexdigest())
        order.append(info.name)
    return header, manifest


def _compare(manifest: Any, seen: dict[str, Member]) -> None:
    listed = manifest.get("members") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict):
        raise ArchiveError("the archive's manifest lists no members: it is damaged")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArchiveError("the archive's manifest and header disagree on the format version: "
                           "it was changed after it was made")
    for name in sorted(set(listed) | set(seen)):
        want, got = listed.get(name), seen.get(name)
        if got is None:
            raise ArchiveError(f"the manifest lists {name!r} but the archive does not hold it: "
                               "it is truncated or was changed")
        if want is None:
            raise ArchiveError(f"the archive holds {name!r}, which its manifest does not list: "
                               "it was changed after it was made")
        if not isinstance(want, dict) or want.get("size") != got.size \
                or want.get("sha256") != got.sha256:
            raise ArchiveError(f"{name} in the archive does not match its manifest (size or "
                               "SHA-256 differs): the archive was changed or damaged; nothing "
                               "was restored; use another copy")


class MemberReader:
    """One member's bytes, hashed as they are read; :meth:`check` compares with the manifest."""

    def __init__(self, name: str, f: IO[bytes], want: dict[str, Any]) -> None:
        self.name, self._f, self._want = name, f, want
        self._hash, self._n = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        return self._take(lambda: self._f.read(n))

    def readline(self, limit: int = -1) -> bytes:
        return self._take(lambda: self._f.readline(limit))

    def _take(self, how: Callable[[], bytes]) -> bytes:
        try:
            data = how()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ArchiveError(f"the archive became unreadable inside {self.name} ({exc}) "
                               "since it was checked: restore from a copy nobody is writing "
                               "to") from exc
        self._hash.update(data)
        self._n += len(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        while piece := self.read(CHUNK):
            yield piece

    def check(self) -> None:
        for _ in self.chunks():
            pass
        if self._n != self._want["size"] or self._hash.hexdigest() != self._want["sha256"]:
            raise ArchiveError(f"{self.name} changed since the archive was checked (its SHA-256 "
                               "differs now): the file is being modified; restore from a copy "
                               "nobody is writing to")


def members(path: Path, verified: Verified) -> Iterator[MemberReader]:
    """The archive's members again, in order, for a restore; each hash is checked once the
    consumer moves on (a member it did not read is read through)."""
    tar, _ = _open(path)
    try:
        for info in _members(tar, path):
            if info.name in (HEADER, MANIFEST):
                continue
            want = verified.members.get(info.name)
            f = tar.extractfile(info) if want is not None else None
            if want is None or f is None:
                raise ArchiveError(f"{info.name[:120]!r} appeared in the archive since it was "
                                   "checked: restore from a copy nobody is writing to")
            reader = MemberReader(info.name, f, want)
            yield reader
            reader.check()
    finally:
        with contextlib.suppress(Exception):
            tar.close()

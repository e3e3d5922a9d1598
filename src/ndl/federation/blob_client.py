"""Sending and fetching blobs, resumably: used by datasites, the SDK and the CLI.

:func:`upload_file` asks the hub where the blob's upload stands and sends only the rest, one
chunk at a time, each with its own SHA-256: an upload cut at any byte (network, a killed
process) resumes from the last chunk the hub verified, including from a new process, since
beginning the same blob again finds the upload under way. :func:`download` writes into
``dest.part``, resumes it with ``Range``, checks the whole SHA-256 and only then renames it.

A party signs every request (``sign(kind, body) -> envelope``, e.g. a datasite's
``Agent.sign``); a user sends a bearer token. Memory holds one chunk at most.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ndl.core.errors import (
    Conflict,
    InvalidInput,
    NdlError,
    NotFound,
    UpstreamUnavailable,
    error_from_json,
)
from ndl.federation.blobs import (
    ENVELOPE_HEADER,
    REQUEST_KIND,
    check_sha256,
    sha256_file,
)
from ndl.hubclient import _api as api
from ndl.hubclient._call import Call, reaching

log = logging.getLogger("ndl.blobs")

Sign = Callable[[str, dict[str, Any]], dict[str, Any]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BlobRef:
    """A blob the hub holds whole: what an envelope names instead of carrying bytes."""

    sha256: str
    size: int
    kind: str
    media_type: str

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "kind": self.kind,
                "media_type": self.media_type}


@dataclass(frozen=True)
class Auth:
    """How requests prove who sends them: a party's signing callable, or a user's token."""

    sign: Sign | None = None
    token: str | None = None
    extra: Mapping[str, str] | None = None

    def headers(self, method: str, path: str, args: dict[str, Any] | None = None
                ) -> dict[str, str]:
        out = dict(self.extra or {})
        if self.sign is not None:
            env = self.sign(REQUEST_KIND, {"method": method, "path": path, "args": args or {}})
            raw = json.dumps(env, separators=(",", ":")).encode()
            out[ENVELOPE_HEADER] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        elif self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out


def _send(http: httpx.Client, call: Call[Any], timeout: float | None = None) -> Any:
    base = str(http.base_url)
    extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    with reaching(base, call):
        resp = http.request(call.method, call.path, params=call.params, json=call.json,
                            content=call.content, headers=dict(call.headers or {}), **extra)
    return call.finish(resp)


def _retryable(exc: NdlError) -> bool:
    """Worth another go: the network or the hub failed, or a chunk arrived damaged."""
    return isinstance(exc, UpstreamUnavailable | InvalidInput) or exc.http_status >= 500


def upload_file(http: httpx.Client, *, path: Path, kind: str,
                media_type: str = "application/octet-stream", sign: Sign | None = None,
                token: str | None = None, sha256: str | None = None,
                progress: Progress | None = None, retries: int = 8) -> BlobRef:
    """Upload ``path`` as a blob of ``kind`` and return its reference; resumes as it goes.

    ``sha256`` may be given if already known (saves reading the file once more). A failed
    chunk is retried from where the hub says it stands, up to ``retries`` times in a row
    without progress; then the last error is raised (calling again resumes, too).
    """
    auth = Auth(sign=sign, token=token)
    size = path.stat().st_size
    digest = check_sha256(sha256) if sha256 is not None else sha256_file(path)
    args = {"sha256": digest, "size": size, "kind": kind, "media_type": media_type}
    status = _send(http, api.begin_blob_upload(args, auth.headers))
    failures = 0
    with _Reader(path, size) as reader:
        while not status["complete"]:
            offset, upload_id = int(status["offset"]), str(status["upload_id"])
            if progress is not None:
                progress(offset, size)
            if offset >= size:
                # Every byte is there and the hub is still finishing it (its answer to the
                # last chunk was lost): wait, and ask again.
                failures += 1
                if failures > retries * 4:
                    raise UpstreamUnavailable(f"the hub holds all of blob {digest} but has "
                                              "not finished it; upload it again later")
                time.sleep(1.0)
                status = _status_or_begin(http, auth, upload_id, args, UpstreamUnavailable(
                    "the hub dropped the upload while finishing it"))
                continue
            step = int(status["chunk_bytes"])
            data, chunk_sha = reader.chunk(offset, step)
            try:
                last = offset + len(data) >= size
                reader.prefetch(offset + len(data), step)  # read and hash while this one goes
                status = _send(http, api.put_blob_chunk(upload_id, data, offset, auth.headers,
                                                        sha256=chunk_sha),
                               timeout=max(120.0, size / 20e6) if last else 120.0)
                failures = 0
            except Conflict as exc:
                # The hub holds another offset (a chunk we thought lost did arrive): go on
                # from the hub's. The message names it too.
                hub_offset = (exc.detail or {}).get("offset") if isinstance(exc.detail, dict) \
                    else None
                if not isinstance(hub_offset, int) or failures >= retries:
                    raise
                failures += 1
                status = {**status, "offset": hub_offset}
            except NdlError as exc:
                failures += 1
                if not _retryable(exc) or failures > retries:
                    raise
                log.info("blob %s: chunk at %d failed (%s); resuming", digest[:12], offset,
                         exc.message)
                time.sleep(min(0.2 * 2**failures, 5.0))
                status = _status_or_begin(http, auth, upload_id, args, exc)
    if progress is not None:
        progress(size, size)
    return BlobRef(digest, size, kind, media_type)


class _Reader:
    """Chunks of the file with their SHA-256, the next one read and hashed on another thread
    while the current one is on the wire (hashlib lets go of the GIL). Holds two chunks."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ndl-blob-read")
        self.next: tuple[int, int, Future[tuple[bytes, str]]] | None = None

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _read(self, offset: int, step: int) -> tuple[bytes, str]:
        with self.path.open("rb") as f:
            f.seek(offset)
            data = f.read(min(step, self.size - offset))
        return data, hashlib.sha256(data).hexdigest()

    def prefetch(self, offset: int, step: int) -> None:
        if offset < self.size:
            self.next = (offset, step, self.pool.submit(self._read, offset, step))

    def chunk(self, offset: int, step: int) -> tuple[bytes, str]:
        ahead, self.next = self.next, None
        if ahead is not None and ahead[:2] == (offset, step):
            return ahead[2].result()
        return self._read(offset, step)


def _status_or_begin(http: httpx.Client, auth: Auth, upload_id: str, args: dict[str, Any],
                     cause: NdlError) -> dict[str, Any]:
    """Where the upload stands now. Gone from the hub: finished meanwhile (beginning again
    answers complete), or dropped (a whole-hash mismatch discards an upload), when the cause
    is raised rather than starting over silently."""
    try:
        status: dict[str, Any] = _send(http, api.blob_upload_status(upload_id, auth.headers))
    except NotFound:
        again: dict[str, Any] = _send(http, api.begin_blob_upload(args, auth.headers))
        if again["complete"]:
            return again
        raise cause from None
    except UpstreamUnavailable:
        # The hub is down (restarting?): begin again later; the begin finds the same upload.
        time.sleep(1.0)
        status = _send(http, api.begin_blob_upload(args, auth.headers))
    return status


# Tries after a broken download, backing off 1, 2, 4, then 8 s: about 45 s in all, long
# enough for a hub to restart.
DOWNLOAD_RETRIES = 8


class _Again(Exception):
    """A download attempt that may succeed if tried again (resuming): wraps the cause."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def download(http: httpx.Client, url: str, dest: Path, *, sha256: str, size: int | None = None,
             part: Path | None = None, sign: Sign | None = None, token: str | None = None,
             headers: Mapping[str, str] | None = None, progress: Progress | None = None,
             retries: int = DOWNLOAD_RETRIES) -> Path:
    """Fetch a blob (``/api/blobs/<sha256>`` or a route that streams one, such as a work
    item's result) into ``dest``, and return ``dest``.

    Bytes go into ``part`` (by default ``dest.part``), resumed with ``Range`` after a cut or
    from an earlier run; the whole SHA-256 is checked before the part is renamed into place,
    so a file at ``dest`` is always whole. An ETag that is not ``sha256``, bytes past
    ``size`` (when given) or a whole-file hash mismatch raise
    :class:`~ndl.UpstreamUnavailable` at once (the part is deleted where its bytes are
    wrong). A broken connection or an unreachable hub is retried ``retries`` times, backing
    off up to 8 s (about 45 s in all: a hub restart); then the part is kept and the error
    says how to resume. Other hub errors are raised as the error tree names them.
    ``progress(done, total)`` is called as bytes arrive (``done`` may go back to 0 when the
    server sends the file whole again).
    """
    check_sha256(sha256)
    auth = Auth(sign=sign, token=token, extra=headers)
    path = urlsplit(str(http.base_url.join(url))).path
    part = part if part is not None else dest.with_name(dest.name + ".part")
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()  # longer than the file: not a prefix of it; start again
    digest = _Digest()
    failures = 0
    while True:
        try:
            _fetch(http, url, path, part, auth, progress, digest, sha256, size)
            break
        except (httpx.TransportError, _Again) as exc:
            failures += 1
            if failures > retries:
                cause = exc.cause if isinstance(exc, _Again) else exc
                kept = part.stat().st_size if part.exists() else 0
                raise UpstreamUnavailable(
                    f"the download of {path} broke off {failures} times ({cause}); "
                    f"{kept:,} bytes are kept in {part}: run the same command again to "
                    "resume") from cause
            time.sleep(min(0.5 * 2**failures, 8.0))
    got = digest.of(part)
    if got != sha256:
        part.unlink()
        raise UpstreamUnavailable(f"the downloaded file's SHA-256 ({got}) is not the expected "
                                  f"{sha256}, so it was deleted; download it again")
    os.replace(part, dest)
    return dest


class _Digest:
    """The hash of ``dest.part`` so far, kept as bytes are written (no second read), and
    recomputed from the file when they disagree (a part left by an earlier run)."""

    def __init__(self) -> None:
        self.h, self.n = hashlib.sha256(), 0

    def catch_up(self, part: Path, have: int) -> None:
        if self.n != have:
            self.h, self.n = hashlib.sha256(), 0
            if have:
                with part.open("rb") as f:
                    while piece := f.read(1 << 20):
                        self.h.update(piece)
                        self.n += len(piece)

    def update(self, piece: bytes) -> None:
        self.h.update(piece)
        self.n += len(piece)

    def of(self, part: Path) -> str:
        self.catch_up(part, part.stat().st_size)
        return self.h.hexdigest()


def _fetch(http: httpx.Client, url: str, path: str, part: Path, auth: Auth,
           progress: Progress | None, digest: _Digest, sha256: str, size: int | None) -> None:
    """One GET of the rest of the file (from what ``part`` holds), appended to it."""
    have = part.stat().st_size if part.exists() else 0
    hdrs = auth.headers("GET", path)
    if have:
        hdrs["Range"] = f"bytes={have}-"
    with http.stream("GET", url, headers=hdrs,
                     timeout=httpx.Timeout(120.0, connect=15.0)) as resp:
        if resp.status_code == 416 and have:
            part.unlink()  # the part is longer than the blob: not this blob; start again
            raise _Again(UpstreamUnavailable("the partial download did not fit the file; "
                                             "restarting"))
        if resp.status_code >= 400:
            resp.read()
            try:
                body: Any = resp.json()
            except ValueError:
                body = resp.text
            err = error_from_json(resp.status_code, body)
            raise _Again(err) if isinstance(err, UpstreamUnavailable) else err
        etag = resp.headers.get("etag", "").removeprefix("W/").strip('"')
        if etag and etag != sha256:
            raise UpstreamUnavailable(f"the server sent a file with SHA-256 {etag}, not the "
                                      f"expected {sha256}; download it again")
        if resp.status_code == 206:
            start = _range_start(resp)
            if start != have:
                raise UpstreamUnavailable(f"the server answered a resume from byte {have:,} "
                                          f"with bytes from {start:,}")
        else:
            have = 0  # the server sent it all (no range support, or another version)
        total = size if size is not None else _total(resp, have)
        digest.catch_up(part, have)
        with part.open("ab" if have else "wb") as f:
            if progress is not None:
                progress(have, total)
            for piece in resp.iter_bytes():  # as it arrives: a cut keeps every byte received
                if size is not None and have + len(piece) > size:
                    f.close()
                    part.unlink(missing_ok=True)
                    raise UpstreamUnavailable(f"the server sent more than the expected "
                                              f"{size:,} bytes; download it again")
                f.write(piece)
                digest.update(piece)
                have += len(piece)
                if progress is not None:
                    progress(have, total)
    if have < total:  # the connection closed early without an error: resume
        raise _Again(UpstreamUnavailable(f"the download stopped after {have:,} of "
                                         f"{total:,} bytes"))


def _range_start(resp: httpx.Response) -> int:
    match = re.match(r"bytes (\d+)-", resp.headers.get("content-range", ""))
    if match is None:
        raise UpstreamUnavailable("the server answered a resume without a Content-Range")
    return int(match.group(1))


def _total(resp: httpx.Response, have: int) -> int:
    crange = resp.headers.get("content-range", "")
    if resp.status_code == 206 and "/" in crange:
        tail = crange.rsplit("/", 1)[1]
        if tail.isdigit():
            return int(tail)
    length = resp.headers.get("content-length", "")
    return have + int(length) if length.isdigit() else have


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""Blobs as HTTP responses: whole (200) or one byte range (206), for every route that
streams a blob (``/api/blobs/{sha256}``, a work item's result). Memory holds one piece."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Protocol

from starlette.responses import JSONResponse, Response, StreamingResponse

from ndl.core.errors import NotFound
from ndl.federation.blobs import BlobStore, check_sha256


class Named(Protocol):
    """What a response needs to know of a blob (``blob_service.BlobInfo`` has it)."""

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def media_type(self) -> str: ...


class HasStore(Protocol):
    @property
    def store(self) -> BlobStore: ...


def open_blob(source: HasStore | BlobStore, sha256: str, start: int = 0,
              end: int | None = None) -> Iterator[bytes]:
    """The bytes ``[start, end)`` of a finished blob, in pieces of at most a MiB."""
    store = source if isinstance(source, BlobStore) else source.store
    return store.open(check_sha256(sha256), start, end)


_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` for a single ``Range: bytes=...`` header; None for the whole blob.
    Raises ValueError for a range that cannot be served."""
    if header is None or not header.strip():
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        raise ValueError("the Range header must be one range, like 'bytes=1048576-'")
    first, last = m.group(1), m.group(2)
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            raise ValueError("a suffix range of 0 bytes selects nothing")
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise ValueError(f"the range starts at or past the blob's end ({size:,} bytes)")
    return start, end


def blob_response(source: HasStore | BlobStore, info: Named, range_header: str | None,
                  *, filename: str | None = None, if_range: str | None = None,
                  on_complete: Callable[[], None] | None = None) -> Response:
    """Stream a blob: 200 whole, or 206 for one ``Range``; 416 for a range it cannot serve.

    ``on_complete`` runs once the last byte of the blob has been handed to the server (a
    whole download, or a ranged one that reaches the end): the caller marks it delivered.
    """
    etag = f'"{info.sha256}"'
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client holds another version: send it all
    try:
        span = parse_range(range_header, info.size)
    except ValueError as exc:
        return JSONResponse(
            {"error": {"code": "range_not_satisfiable",
                       "message": f"{exc}; the blob is {info.size:,} bytes"}},
            status_code=416, headers={"Content-Range": f"bytes */{info.size}"})
    start, end = span or (0, info.size)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename or info.sha256)[:120]
    headers = {
        "Content-Length": str(end - start), "ETag": etag, "Accept-Ranges": "bytes",
        # Never rendered by a browser under the hub's origin, whatever the media type says.
        "Content-Disposition": f'attachment; filename="{safe}"',
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"

    try:
        pieces = open_blob(source, info.sha256, start, end)  # before the status line goes out
    except FileNotFoundError as exc:
        raise NotFound(f"blob {info.sha256} is no longer held by the hub") from exc

    def body() -> Iterator[bytes]:
        yield from pieces
        if end == info.size and on_complete is not None:
            on_complete()

    return StreamingResponse(body(), status_code=206 if span is not None else 200,
                             media_type=info.media_type, headers=headers)

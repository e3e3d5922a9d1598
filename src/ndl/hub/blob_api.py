"""Blobs over HTTP: resumable chunked uploads and ranged downloads. Thin: every decision is
:mod:`ndl.federation.blob_service`'s.

Parties (datasites, and later enclaves) sign each request in the ``X-Ndl-Envelope`` header,
binding the method, the path and the arguments (for a chunk: its offset, length and SHA-256);
users send their API token and give the same arguments in the body or in ``X-Ndl-*`` headers.
A chunk's bytes are the raw request body: they are streamed to the staging file, never held
whole in memory, and the JSON body limit does not apply to them (the chunk size does).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from ndl.core.db import MAX_DB_INT
from ndl.core.errors import InvalidInput
from ndl.federation import blob_service as blobs
from ndl.hub.deps import Caller, hub, party_or_user
from ndl.hub.login_limits import request_source
from ndl.hub.state import HubState
from ndl.ledger import security_log

router = APIRouter(prefix="/api/blobs")
HubDep = Annotated[HubState, Depends(hub)]
Who = Annotated[Caller, Depends(party_or_user)]
UPLOADS_PREFIX = "/api/blobs/uploads/"

_RAW_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}
_BLOB_BODY: dict[int | str, dict[str, Any]] = {200: {"content": {"application/octet-stream": {}}},
              206: {"description": "the range asked for (Range: bytes=START-END)"},
              416: {"description": "a range the blob cannot serve"}}


class BeginUpload(BaseModel):
    """A blob about to be uploaded: its SHA-256, size, kind and media type."""

    model_config = ConfigDict(extra="forbid", strict=True)
    sha256: str = Field(max_length=64, description="SHA-256 of the whole blob (64 hex digits)")
    size: int = Field(ge=1, le=MAX_DB_INT, description="the blob's size in bytes")
    kind: str = Field(max_length=16, description="result, bundle, records or sealed")
    media_type: str = Field(default="application/octet-stream", max_length=100)


class Reader(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reader: str = Field(max_length=200, description="e.g. 'user:alice' or 'party:enclave-1'")


def _args(model: type[BeginUpload] | type[Reader], caller: Caller, body: Any) -> Any:
    """The call's arguments: what a party signed, or the user's JSON body."""
    raw = caller.args if caller.args is not None else body
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidInput(f"{where}: {first.get('msg')}",
                           detail=exc.errors(include_url=False, include_input=False)) from exc


@router.post("/uploads")
async def begin_upload(state: HubDep, who: Who, body: BeginUpload | None = None
                       ) -> dict[str, Any]:
    """Start an upload, or find the one under way for the same blob (to resume it). Sizes
    over the kind's limit or the caller's quota are refused here, before any byte is sent."""
    ask = _args(BeginUpload, who, body.model_dump() if body is not None else None)

    def begin() -> dict[str, Any]:
        with state.db.write() as s:
            status = blobs.begin_upload(s, state.blobs.limits, owner=who.principal,
                                        sha256=ask.sha256, size=ask.size, kind=ask.kind,
                                        media_type=ask.media_type)
        return status.to_json()

    return await run_in_threadpool(begin)


@router.get("/uploads/{upload_id}")
def upload_status(upload_id: str, state: HubDep, who: Who) -> dict[str, Any]:
    """How many bytes of the upload the hub holds: resume from ``offset``."""
    with state.db.read() as s:
        status = blobs.upload_status(s, state.blobs.limits, upload_id, who.principal)
    if status.offset == status.size:  # every byte arrived but the hub stopped before the end
        status = blobs.complete_upload(state.blobs, upload_id, who.principal)
    return status.to_json()


def _header_int(request: Request, name: str) -> Any:
    raw = request.headers.get(name)
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise InvalidInput(f"the {name} header must be a whole number of bytes, got "
                           f"{str(raw)[:40]!r}")
    return int(raw)


@router.put("/uploads/{upload_id}", openapi_extra=_RAW_BODY)
async def put_chunk(upload_id: str, request: Request, state: HubDep, who: Who
                    ) -> dict[str, Any]:
    """One chunk: the raw bytes that start at ``offset`` and hash to ``sha256``.

    A party signs ``{offset, length, sha256}`` as the request's args; a user sends the
    headers ``X-Ndl-Offset`` and ``X-Ndl-Chunk-Sha256`` (the length is Content-Length).
    """
    # Any: checked by the service (whole numbers in range, 64 hex digits), not trusted here.
    offset: Any
    length: Any
    sha: Any
    if who.args is not None:
        offset, length, sha = (who.args.get(k) for k in ("offset", "length", "sha256"))
    else:
        offset = _header_int(request, "X-Ndl-Offset")
        length = _header_int(request, "Content-Length")
        sha = request.headers.get("X-Ndl-Chunk-Sha256")
    declared = request.headers.get("content-length")
    if declared is not None and declared != str(length):
        raise InvalidInput(f"Content-Length {declared[:20]} differs from the chunk's declared "
                           f"length {str(length)[:20]}; send exactly the declared bytes")
    status = await blobs.awrite_chunk(
        state.blobs, upload_id=upload_id, owner=who.principal, offset=offset, length=length,
        sha256=sha, chunks=request.stream())
    return status.to_json()


@router.delete("/uploads/{upload_id}")
def abandon_upload(upload_id: str, state: HubDep, who: Who) -> dict[str, Any]:
    """Give up an upload; its staged bytes are removed now."""
    blobs.abandon_upload(state.blobs, upload_id, who.principal)
    return {"abandoned": upload_id}


@router.get("/{sha256}", responses=_BLOB_BODY, response_class=Response)
def download(sha256: str, request: Request, state: HubDep, who: Who) -> Response:
    """A blob you may read, streamed; ``Range: bytes=START-`` resumes a cut download."""
    with state.db.write() as s:
        info = blobs.readable_blob(s, sha256, who.principal)
        security_log.record(s, "transfer.blob_download", actor=who.principal,
                            subject=f"blob:{sha256}",
                            source=request_source(request, state.settings.trusted_proxies),
                            details={"kind": info.kind, "size": info.size,
                                     "range": (request.headers.get("range") or "")[:40]})
    return blobs.blob_response(state.blobs, info, request.headers.get("range"),
                               if_range=request.headers.get("if-range"))


@router.get("/{sha256}/info")
def info(sha256: str, state: HubDep, who: Who) -> dict[str, Any]:
    """A blob's size, kind, media type, owner and expiry (if you may read it)."""
    with state.db.read() as s:
        return blobs.readable_blob(s, sha256, who.principal).to_json()


@router.post("/{sha256}/readers")
def share(sha256: str, state: HubDep, who: Who, body: Reader | None = None) -> dict[str, Any]:
    """The owner lets someone else read the blob."""
    ask = _args(Reader, who, body.model_dump() if body is not None else None)
    with state.db.write() as s:
        blobs.share_blob(s, sha256, who.principal, ask.reader)
    return {"sha256": sha256, "reader": ask.reader}


@router.delete("/{sha256}")
def remove(sha256: str, state: HubDep, who: Who) -> dict[str, Any]:
    """The owner removes a blob now (otherwise it goes when delivered or expired)."""
    blobs.delete_blob(state.blobs, sha256, who.principal)
    return {"deleted": sha256}

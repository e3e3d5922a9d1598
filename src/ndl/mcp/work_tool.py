"""The ``export_dataset`` MCP tool: an open dataset, whole, as a file the agent's user fetches.

An export can take minutes and be gigabytes, too much for a tool's answer: the tool queues it
as a work item (``POST /api/work``, as the caller), waits a little for it, and returns its id,
state and the addresses to follow it (``/work/{id}``) and to download the file
(``/api/work/{id}/result``, with ``ndl work fetch ID`` as the resumable, checked way).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from ndl.core.db import MAX_DB_INT
from ndl.mcp.library import Library, check_dataset_id

POLL_SECONDS = 1.0
TITLE = "Export an open dataset whole"


class ExportStarted(BaseModel):
    work_id: str
    dataset_id: str
    state: str = Field(description="queued, leased, running, succeeded, failed, cancelled or "
                                   "expired")
    progress: float = Field(description="From 0 to 1")
    message: str = ""
    final: bool
    page_url: str = Field(description="A web page following the work; keep it")
    result_url: str = Field(description="Where the file is downloaded once state is succeeded")
    fetch_command: str
    filename: str | None = None
    size_bytes: int | None = None
    rows: int | None = None
    sha256: str | None = None
    error: str | None = None


def export_text(e: ExportStarted) -> str:
    lines = [f"Export of {e.dataset_id}: work item {e.work_id} is {e.state} "
             f"({e.progress:.0%}){' — ' + e.message if e.message else ''}."]
    if e.state == "succeeded":
        lines.append(f"File: {e.filename} ({e.size_bytes:,} bytes, {e.rows} rows), SHA-256 "
                     f"{e.sha256}. Download: {e.result_url} or `{e.fetch_command}`.")
    elif e.error:
        lines.append(f"It failed: {e.error}")
    elif not e.final:
        lines.append(f"Follow it at {e.page_url}; when it succeeds, `{e.fetch_command}` "
                     "downloads the file.")
    return "\n".join(lines)


def _started(view: dict[str, Any], base: str) -> ExportStarted:
    wid = str(view["id"])
    res = view.get("result") or {}
    err = view.get("error") or {}
    return ExportStarted(
        work_id=wid, dataset_id=str(view["dataset"]), state=str(view["state"]),
        progress=float(view.get("progress", 0.0)), message=str(view.get("message", "")),
        final=bool(view.get("final")), page_url=f"{base}/work/{wid}",
        result_url=f"{base}/api/work/{wid}/result", fetch_command=f"ndl work fetch {wid}",
        filename=res.get("filename"), size_bytes=res.get("size"), rows=res.get("rows"),
        sha256=res.get("sha256"), error=err.get("message"))


def register(server: MCPServer, library: Library, *,
             as_caller: Callable[[Library, Context], Library],
             base_url: Callable[[Library, Context], str],
             wrap: Callable[[Any], Any]) -> None:
    """Add the tool to ``server`` (not read-only: it starts work at a datasite)."""

    async def export_dataset(
        ctx: Context, dataset_id: Annotated[str, Field(
            description="An OPEN dataset id such as 'local-authority/ward-population'.")],
        format: Annotated[Literal["parquet", "csv"], Field(
            description="The file's format")] = "parquet",
        limit: Annotated[int | None, Field(ge=1, le=MAX_DB_INT, description=(
            "Only the first N rows; leave out for every row"))] = None,
        wait_seconds: Annotated[int, Field(ge=0, le=120, description=(
            "How long to wait for the export before answering"))] = 20,
    ) -> Annotated[CallToolResult, ExportStarted]:
        """Export an OPEN dataset whole (any size) as one Parquet or CSV file, prepared at its
        datasite. Returns the work item's id and state, a page that follows it, and the URL
        the file is downloaded from once it succeeded (too big to return here). Other tiers
        are refused."""
        lib = as_caller(library, ctx)
        params: dict[str, Any] = {"format": format}
        if limit is not None:
            params["limit"] = limit
        view = await lib.submit_work("export", check_dataset_id(dataset_id), params)
        deadline = time.monotonic() + wait_seconds
        while not view.get("final") and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            view = await lib.work(str(view["id"]))
        res = _started(view, base_url(library, ctx))
        return CallToolResult(content=[TextContent(type="text", text=export_text(res))],
                              structured_content=res.model_dump(mode="json"),
                              is_error=res.state in ("failed", "cancelled", "expired"))

    server.add_tool(wrap(export_dataset), title=TITLE, annotations=ToolAnnotations(
        title=TITLE, read_only_hint=False, destructive_hint=False, idempotent_hint=False,
        open_world_hint=False))


__all__ = ["ExportStarted", "register"]

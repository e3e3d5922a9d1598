"""Long work at the datasite: run a work item with progress, stop it when cancelled, deliver
its result once.

A work item is tracked in the same durable table as short messages, under the id
``work:<id>``, so it shares their exactly-once rules: recorded before it starts, its final
answer stored (fsync'd) before it is sent, a redelivery of finished work re-sends the stored
answer instead of running again, and work that keeps killing the datasite is parked. The
result file waits in ``<root>/outbox/`` until the hub has taken it: delivering is "upload the
blob (resuming whatever part the hub already has), then finish", and may be repeated safely.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from ndl.core import tiers
from ndl.core.csvsafe import write_csv
from ndl.core.errors import Cancelled, InvalidInput, NdlError, PermissionDenied
from ndl.datasite.store import LocalDataset
from ndl.federation.blob_client import upload_file
from ndl.federation.blobs import sha256_file

if TYPE_CHECKING:
    from ndl.datasite.agent import Agent

log = logging.getLogger("ndl.datasite")
PREFIX = "work:"
POOL_KIND = "work"  # the pool kind every work item runs as (its limit: work.DEFAULT_PER_KIND)
BATCH_ROWS = 65_536


Report = Callable[[float, str], None]


@dataclass(frozen=True)
class Produced:
    path: Path
    media_type: str
    filename: str
    rows: int


def job_id(work_id: str) -> str:
    return PREFIX + work_id


def is_work(job: str) -> bool:
    return job.startswith(PREFIX)


class WorkItems:
    """Progress and cancel flags of the work items running here (for the heartbeat)."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._progress: dict[str, tuple[float, str]] = {}
        self._cancel: dict[str, threading.Event] = {}

    def start(self, work_id: str) -> threading.Event:
        with self._lock:
            self._progress[work_id] = (0.0, "started")
            return self._cancel.setdefault(work_id, threading.Event())

    def report(self, work_id: str, fraction: float, message: str) -> None:
        with self._lock:
            if work_id in self._progress:
                self._progress[work_id] = (fraction, message)

    def end(self, work_id: str) -> None:
        """The work is done; its result is still to be sent (progress stays at the top)."""
        with self._lock:
            self._progress[work_id] = (1.0, "sending the answer")
            self._cancel.pop(work_id, None)

    def forget(self, work_id: str) -> None:
        with self._lock:
            self._progress.pop(work_id, None)
            self._cancel.pop(work_id, None)

    def progress(self, work_ids: list[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {w: {"progress": p[0], "message": p[1]}
                    for w in work_ids for p in [self._progress.get(w, (0.0, "waiting"))]}

    def cancel(self, work_ids: list[str]) -> None:
        with self._lock:
            for w in work_ids:
                self._cancel.setdefault(w, threading.Event()).set()

    def result_path(self, work_id: str) -> Path:
        """Where a kind writes its result (it adds the file's suffix)."""
        return self.outbox / work_id


def run(agent: Agent, body: dict[str, Any]) -> dict[str, Any]:
    """Run one work item to its final answer (a reply to store; never raises)."""
    work_id = str(body.get("work_id"))
    cancelled = agent.work_items.start(work_id)
    try:
        kind = str(body.get("work_kind"))
        op = tiers.WORK_OPERATIONS.get(kind)
        if op is None or (kind not in KINDS and kind != "job"):
            raise InvalidInput(f"this datasite does not run {kind!r} work")
        ds = agent.store.dataset(str(body.get("dataset")))
        # The one tier definition, checked again here before a row is read.
        tiers.require_operation(ds.meta.tier, op, dataset=ds.meta.name)
        raw = body.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}

        def report(fraction: float, message: str) -> None:
            if cancelled.is_set():
                raise Cancelled("the work was cancelled by its requester")
            agent.work_items.report(work_id, fraction, message)

        out = agent.work_items.result_path(work_id)
        if kind == "job":  # reviewed code in the sandbox: it needs the agent's keys and ledger
            from ndl.datasite import controlled
            made = controlled.run(agent, body, report, cancelled, out)
        else:
            made = KINDS[kind](ds, params, report, out)
        return {"ok": True, "result": {"sha256": sha256_file(made.path),
                                       "size": made.path.stat().st_size,
                                       "media_type": made.media_type,
                                       "filename": made.filename, "rows": made.rows},
                "file": made.path.name}
    except NdlError as exc:
        return {"ok": False, "error": exc.to_json()["error"]}
    except Exception:
        # The text of an unexpected failure may hold a value read from the data: it stays in
        # the datasite's log, and the requester is told only that it failed here.
        log.exception("work item %s failed", work_id)
        return {"ok": False, "error": {"code": "internal_error", "message":
                                       "the work failed at the datasite; its operator can "
                                       "see why in the datasite's log"}}
    finally:
        agent.work_items.end(work_id)


def deliver(agent: Agent, work_id: str, reply: dict[str, Any]) -> None:
    """Upload the result blob (resuming), then send the one final answer; repeatable."""
    body: dict[str, Any] = {k: reply[k] for k in ("ok", "result", "error") if k in reply}
    path = agent.work_items.outbox / str(reply.get("file", "")) if reply.get("file") else None
    if reply.get("ok") and path is not None:
        result = reply["result"]
        if path.exists():

            def sent(done: int, total: int) -> None:
                agent.work_items.report(work_id, 1.0, f"sending the result "
                                                      f"({done * 100 // max(total, 1)}%)")

            upload_file(agent.http, sign=agent.sign, path=path, kind="result",
                        media_type=str(result["media_type"]), sha256=str(result["sha256"]),
                        progress=sent)
    agent.post("/api/federation/work/finish", "work.finish", {"work_id": work_id, **body})
    agent.work_items.forget(work_id)
    if path is not None:
        path.unlink(missing_ok=True)


# -- kinds of work --------------------------------------------------------------------------

def export(ds: LocalDataset, params: dict[str, Any], report: Report, out: Path) -> Produced:
    """An open dataset as one Parquet or CSV file, written batch by batch (memory flat)."""
    if ds.meta.tier != "open":
        raise PermissionDenied(f"{ds.meta.name} is {ds.meta.tier} data: only open data is "
                               "exported whole")
    fmt = params.get("format", "parquet")
    if fmt not in ("parquet", "csv"):
        raise InvalidInput("format must be 'parquet' or 'csv'")
    limit = params.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise InvalidInput("limit must be a whole number of rows, at least 1")
    source = pq.ParquetFile(ds.path)
    total = source.metadata.num_rows if limit is None else min(limit,
                                                               source.metadata.num_rows)
    path = out.with_name(out.name + (".parquet" if fmt == "parquet" else ".csv"))
    tmp = path.with_name(path.name + ".tmp")
    done = 0
    report(0.0, f"exporting {total:,} rows")
    names = source.schema_arrow.names
    try:
        with tmp.open("wb") as f:
            parquet = pq.ParquetWriter(f, source.schema_arrow) if fmt == "parquet" else None
            text = None if parquet else io.TextIOWrapper(f, "utf-8", newline="",
                                                           write_through=True)
            if text is not None:
                write_csv(text, names, [])  # the header
            try:
                for batch in source.iter_batches(batch_size=BATCH_ROWS):
                    if done >= total:
                        break
                    batch = batch.slice(0, total - done)
                    if parquet is not None:
                        parquet.write_batch(batch)
                    else:
                        assert text is not None
                        # Every cell through core.csvsafe: no formula reaches a spreadsheet.
                        write_csv(text, names, zip(*(c.to_pylist() for c in batch.columns),
                                                   strict=True), header=False)
                    done += batch.num_rows
                    report(done / max(total, 1), f"{done:,} of {total:,} rows")
            finally:
                if parquet is not None:
                    parquet.close()
                if text is not None:
                    text.flush()
                    text.detach()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a cancelled or failed export leaves nothing behind
        raise
    name = ds.meta.name + path.suffix
    return Produced(path, "application/vnd.apache.parquet" if fmt == "parquet"
                    else "text/csv; charset=utf-8", name, done)


KINDS: dict[str, Callable[[LocalDataset, dict[str, Any], Report, Path], Produced]] = {
    "export": export,
}

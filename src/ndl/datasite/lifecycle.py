"""The datasite's half of joining, leaving and deleting (ndl.federation.membership and
ndl.catalogue.lifecycle at the hub).

STATUS: at start and every ``NDL_STATUS_EVERY`` seconds (300 by default) the datasite runs a
self-check (the engine opens; the sandbox starts when a controlled dataset means jobs may
run; each dataset's Parquet file has the row count its metadata publish) and sends a report,
signed with its key, to ``POST /api/federation/status``: software version, a hash of its
datasets' policies, a hash of its configuration, sandbox mode, engine and the check's time
and outcome.

DELETE: a hub-signed ``dataset.delete`` message names a dataset its steward withdrew and
asked to delete. The datasite hashes every file in the dataset's folder (data, metadata,
policy, mock and caches), removes the folder, keeps the record under ``deletions/`` and
sends it, signed, to ``POST /api/federation/deletions``. Nothing else is deleted here: a
retired datasite's data stay where they are, for its organisation to keep or remove.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
import rfc8785

import ndl
from ndl.core.errors import InvalidInput, NdlError
from ndl.core.tiers import Operation, tier_def

if TYPE_CHECKING:
    from ndl.datasite.agent import Agent
    from ndl.datasite.store import LocalDataset

log = logging.getLogger("ndl.datasite")
DELETE_KIND = "dataset.delete"  # the hub's ndl.catalogue.lifecycle.DELETE_KIND
STATUS_EVERY_DEFAULT = 300.0


def status_every() -> float:
    raw = os.environ.get("NDL_STATUS_EVERY", "")
    try:
        return max(1.0, float(raw)) if raw else STATUS_EVERY_DEFAULT
    except ValueError:
        log.warning("NDL_STATUS_EVERY=%r is not a number of seconds; using %s", raw,
                    STATUS_EVERY_DEFAULT)
        return STATUS_EVERY_DEFAULT


def _digest(doc: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(doc)).hexdigest()


def self_check(agent: Agent) -> dict[str, Any]:
    problems: list[str] = []
    datasets = []
    try:
        datasets = agent.store.datasets()
    except NdlError as exc:
        problems.append(f"datasets folder: {exc.message}")
    engine_ok = True
    first = next((d for d in datasets if d.source is None), None)
    if first is not None:
        try:
            agent.engine.count_by(first, [])
        except Exception as exc:  # the check reports any failure, it never stops the datasite
            engine_ok = False
            problems.append(f"engine {agent.engine.name}: {str(exc)[:300]}")
    sandbox_ok: bool | None = None
    if any(tier_def(d.meta.tier).allows(Operation.CODE_JOB) for d in datasets):
        try:
            agent.controlled.sandbox()
            sandbox_ok = True
        except Exception as exc:
            sandbox_ok = False
            problems.append(f"sandbox ({agent.controlled.mode}): {str(exc)[:300]}")
    for d in datasets:
        if d.source is not None or d.meta.row_count is None:
            continue
        try:
            rows = pq.ParquetFile(d.path).metadata.num_rows
        except Exception as exc:
            problems.append(f"{d.meta.name}: data.parquet cannot be read: {str(exc)[:200]}")
            continue
        if rows != d.meta.row_count:
            problems.append(f"{d.meta.name}: data.parquet has {rows} rows, its metadata "
                            f"publish {d.meta.row_count}")
    return {"at": datetime.now(UTC).isoformat(), "ok": not problems, "engine_ok": engine_ok,
            "sandbox_ok": sandbox_ok, "datasets_checked": len(datasets),
            "problems": problems[:100]}


def status_report(agent: Agent) -> dict[str, Any]:
    datasets = agent.store.datasets()
    cfg = {k: v for k, v in agent.store.config().items() if k != "registered"}
    return {
        "software_version": ndl.__version__,
        "policy_hash": _digest({d.meta.name: d.policy.model_dump(mode="json")
                                for d in datasets}),
        "config_hash": _digest({**cfg, "threshold": agent.threshold,
                                "sandbox": agent.controlled.mode,
                                "engine": agent.engine.name,
                                "per_kind": agent.pool.per_kind}),
        "sandbox_mode": agent.controlled.mode,
        "engine": agent.engine.name,
        "every_seconds": status_every(),
        "self_check": self_check(agent),
    }


def report_status(agent: Agent) -> dict[str, Any]:
    out: dict[str, Any] = agent.post("/api/federation/status", "status", status_report(agent))
    return out


def start_reporter(agent: Agent) -> threading.Thread:
    """Report now and every :func:`status_every` seconds until the agent stops; resend any
    deletion record the hub has not yet taken on the same beat."""

    def loop() -> None:
        while not agent.stop_event.is_set():
            try:
                report_status(agent)
                resend_deletions(agent)
            except Exception as exc:  # a missed report shows as stale at the hub; no more
                log.warning("status report not sent: %s", exc)
            if agent.stop_event.wait(status_every()):
                return

    t = threading.Thread(target=loop, daemon=True, name="ndl-status")
    t.start()
    return t


# -- deletion ----------------------------------------------------------------------------------

def _deletions_dir(agent: Agent) -> Path:
    d = agent.store.root / "deletions"
    d.mkdir(exist_ok=True)
    return d


def _file_hashes(folder: Path, root: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h = hashlib.sha256()
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out.append({"path": str(p.relative_to(root)), "sha256": h.hexdigest(),
                        "bytes": p.stat().st_size})
    return out


def delete_dataset(agent: Agent, ds: LocalDataset, body: dict[str, Any]) -> dict[str, Any]:
    """Handler for ``dataset.delete``: remove the dataset's folder, keep and send a record."""
    rid = body.get("deletion_id")
    if isinstance(rid, bool) or not isinstance(rid, int):
        raise InvalidInput("a delete message needs the hub's deletion_id")
    folder = (agent.store.root / "datasets" / ds.meta.name).resolve()
    if folder.parent != (agent.store.root / "datasets").resolve():
        raise InvalidInput(f"{ds.meta.name!r} is not a dataset folder of this datasite")
    files = _file_hashes(folder, agent.store.root)
    shutil.rmtree(folder)
    record = {"deletion_id": rid, "dataset": ds.meta.name, "datasite": agent.id,
              "deleted_at": datetime.now(UTC).isoformat(), "files": files}
    (_deletions_dir(agent) / f"{rid}.json").write_text(json.dumps(record, indent=2), "utf-8")
    log.info("deleted dataset %s (%d files) at the hub's request %s", ds.meta.name,
             len(files), rid)
    _send_record(agent, rid, record)
    return {"deleted": ds.meta.name, "files": len(files)}


def _send_record(agent: Agent, rid: int, record: dict[str, Any]) -> None:
    try:
        agent.post("/api/federation/deletions", "dataset.deleted", record)
    except NdlError as exc:  # the record is kept; the status beat sends it again
        log.warning("deletion record %s not sent yet: %s", rid, exc)
        return
    (_deletions_dir(agent) / f"{rid}.sent").touch()


def resend_deletions(agent: Agent) -> None:
    folder = _deletions_dir(agent)
    for path in sorted(folder.glob("*.json")):
        if not path.with_suffix(".sent").exists():
            _send_record(agent, int(path.stem), json.loads(path.read_text("utf-8")))

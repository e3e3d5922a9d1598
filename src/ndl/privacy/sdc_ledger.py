"""The release ledger: every output table a datasite has released, with its TRUE statistics.

Differencing checks (:func:`ndl.privacy.sdc.check_table`'s ``earlier``) need the true counts
of what went out before, for every project on the same dataset: two projects' tables that
differ by three people describe those three people. The ledger is one SQLite file per
datasite and never leaves it.

Tables of every statistic are stored, but differencing compares count tables only (a sum
or mean table's n is compared against them; sums and means are not compared with each other).

Each call opens its own connection, so one ledger object is safe to share between threads,
and processes queue on SQLite's write lock. Every write commits before returning.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from ndl.core.errors import InvalidInput
from ndl.core.private import private_file
from ndl.privacy.sdc import CellStats, TableStats

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sdc_release (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL,
    dataset TEXT NOT NULL, dimensions TEXT NOT NULL, statistic TEXT NOT NULL,
    cells TEXT NOT NULL, at REAL NOT NULL,
    UNIQUE (job_id, name)
);
CREATE INDEX IF NOT EXISTS ix_sdc_release_dataset ON sdc_release (dataset);
"""


def _number(x: float) -> Any:
    # JSON has no NaN or infinity; a non-finite statistic is kept as its name.
    return x if math.isfinite(x) else repr(float(x))


def _from_number(x: Any) -> float:
    return float(x)  # float("nan"), float("inf") and float("-inf") read the names back


def _cells_json(cells: tuple[CellStats, ...]) -> str:
    return json.dumps([{"key": list(c.key), "n": c.n, "value": _number(c.value),
                        "total": None if c.total is None else _number(c.total),
                        "top": [_number(x) for x in c.top]} for c in cells],
                      allow_nan=False, separators=(",", ":"))


def _cells_from_json(text: str) -> tuple[CellStats, ...]:
    return tuple(CellStats(key=tuple(c["key"]), n=int(c["n"]), value=_from_number(c["value"]),
                           total=None if c["total"] is None else _from_number(c["total"]),
                           top=tuple(_from_number(x) for x in c["top"]))
                 for c in json.loads(text))


class ReleaseLedger:
    """The datasite's record of released tables (true values), for differencing checks."""

    def __init__(self, path: Path) -> None:
        self.path = private_file(path)  # 0600 before SQLite creates it under the umask
        db = self._connect()
        try:
            db.executescript(_SCHEMA)
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a recorded release survives a power cut
        return db

    def earlier(self, dataset: str) -> list[TableStats]:
        """Every table recorded for ``dataset`` by any project, oldest first."""
        db = self._connect()
        try:
            rows = db.execute("SELECT name, dataset, dimensions, statistic, cells FROM "
                              "sdc_release WHERE dataset = ? ORDER BY id", (dataset,)).fetchall()
        finally:
            db.close()
        return [TableStats(name=name, dataset=ds, dimensions=tuple(json.loads(dims)),
                           statistic=stat, cells=_cells_from_json(cells))
                for name, ds, dims, stat, cells in rows]

    def record(self, table: TableStats, *, job_id: str, project: str) -> None:
        """Record a released table; committed before this returns.

        Idempotent per ``(job_id, table.name)``: recording again (a datasite restarted
        mid-job) replaces the earlier row rather than adding one, so the ledger holds the
        statistics of the run whose outputs are released.
        """
        for label, value in (("job_id", job_id), ("project", project),
                             ("table name", table.name), ("dataset", table.dataset)):
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"release ledger: {label} must be a non-empty string, "
                                   f"got {value!r}")
        db = self._connect()
        try:
            db.execute(
                "INSERT INTO sdc_release (job_id, project, name, dataset, dimensions, statistic,"
                " cells, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, name) DO "
                "UPDATE SET project = excluded.project, dataset = excluded.dataset, "
                "dimensions = excluded.dimensions, statistic = excluded.statistic, "
                "cells = excluded.cells, at = excluded.at",
                (job_id, project, table.name, table.dataset, json.dumps(list(table.dimensions)),
                 table.statistic, _cells_json(table.cells), time.time()))
        finally:
            db.close()

    def forget_job(self, job_id: str) -> int:
        """Drop every table a job recorded (its outputs were rejected, so nothing went out).

        Returns how many tables were dropped.
        """
        db = self._connect()
        try:
            return db.execute("DELETE FROM sdc_release WHERE job_id = ?", (job_id,)).rowcount
        finally:
            db.close()

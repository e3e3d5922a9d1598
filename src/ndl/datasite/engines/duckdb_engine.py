"""The DuckDB engine: the datasite's own Parquet files, in this process (and its SQL worker).

It wraps :mod:`ndl.datasite.engine` unchanged: counts on the cached locked DuckDB, open SQL
in the memory-capped sandbox behind the allow-list, private queries on the plan's columns
read into this process (kept by :class:`ColumnCache` while the file is unchanged).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ndl.core.errors import InvalidInput
from ndl.core.jsonsafe import json_safe
from ndl.datasite import engine as duck
from ndl.datasite.engines.base import (
    ColumnProfile,
    DatasetProfile,
    Rows,
    check_columns,
    column_names,
)

if TYPE_CHECKING:
    from ndl.datasite.store import LocalDataset
    from ndl.privacy.spec import DpResult, PrivateQuery, SdcRules


class ColumnCache:
    """The last-read columns of one Parquet file, kept while the file is unchanged.

    Private queries on a large dataset spend most of their time reading the same columns
    again; one entry, capped in size, keeps memory bounded however many datasets there are.
    """

    def __init__(self, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._key: tuple[str, int, tuple[str, ...]] | None = None
        self._table: pa.Table | None = None
        self._lock = threading.Lock()

    def read(self, path: Path, columns: list[str]) -> pa.Table:
        key = (str(path), path.stat().st_mtime_ns, tuple(sorted(columns)))
        with self._lock:
            if key == self._key and self._table is not None:
                return self._table.select(columns)
        table = pq.read_table(path, columns=columns)
        with self._lock:
            if table.nbytes <= self.max_bytes:
                self._key, self._table = key, table
        return table


def _local(ds: LocalDataset) -> Path:
    if ds.source is not None:
        raise InvalidInput(f"{ds.meta.name} is read by Spark ({ds.source.describe()}): this "
                           "datasite runs DuckDB; start it with --spark-master to serve it")
    return ds.path


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBEngine:
    """:class:`ndl.datasite.engines.base.Engine` over ``data.parquet`` with DuckDB."""

    name = "duckdb"

    def __init__(self) -> None:
        self.columns = ColumnCache()

    def count_by(self, ds: LocalDataset, by: list[str]) -> tuple[list[str], Rows]:
        # Through the module attribute, so a test that wraps engine.count_by still sees it.
        return duck.count_by(_local(ds), by, column_names(ds))

    def run_sql(self, ds: LocalDataset, sql: str, *, limit: int, timeout: float
                ) -> tuple[list[str], Rows, bool]:
        return duck.run_sql(_local(ds), sql, limit=limit, timeout=timeout)

    def read_columns(self, ds: LocalDataset, columns: list[str]) -> pa.Table:
        check_columns(ds, columns)
        return self.columns.read(_local(ds), columns)

    def private_answer(self, ds: LocalDataset, q: PrivateQuery, *, sdc: SdcRules | None,
                       max_rows_per_person: int | None) -> DpResult:
        from ndl.privacy import check_query, run

        plan = check_query(q, ds.meta, max_rows_per_person=max_rows_per_person)
        table = self.read_columns(ds, list(plan.columns))
        return run(q, table, ds.meta, sdc=sdc, max_rows_per_person=max_rows_per_person)

    def profile(self, ds: LocalDataset) -> DatasetProfile:
        names = column_names(ds)
        parts = ["count(*)"]
        for n in names:
            c = _ident(n)
            parts += [f"count(*) - count({c})", f"count(DISTINCT {c})", f"min({c})",
                      f"max({c})"]
        cur = duck.cursor_for(_local(ds))
        try:
            row: Any = cur.execute(f"SELECT {', '.join(parts)} FROM data").fetchone()  # noqa: S608
        finally:
            cur.close()
        return DatasetProfile(int(row[0]), [
            ColumnProfile(n, int(row[1 + 4 * i]), int(row[2 + 4 * i]),
                          json_safe(row[3 + 4 * i]), json_safe(row[4 + 4 * i]))
            for i, n in enumerate(names)])

    def sample(self, ds: LocalDataset, rows: int) -> pa.Table:
        pf = pq.ParquetFile(_local(ds))
        batches, got = [], 0
        for batch in pf.iter_batches(batch_size=65_536):
            batches.append(batch)
            got += batch.num_rows
            if got >= rows:
                break
        return pa.Table.from_batches(batches, schema=pf.schema_arrow).slice(0, rows)

    def prepare(self, open_sql: bool) -> None:
        if open_sql:
            duck.prestart_sql_sandbox()

    def close(self) -> None:
        """Nothing to stop: the SQL worker ends with this process."""

"""Run queries on a datasite's Parquet files with a locked-down DuckDB.

Each Parquet file gets its own in-memory DuckDB that may read exactly that file:
``allowed_paths`` names it, external access is then switched off and the configuration locked,
so neither a crafted column name nor a query can reach any other file, the network or
extensions. Opening a DuckDB costs ~10 ms, so the locked connection is kept per file and each
query runs on its own cursor.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from ndl.core.errors import InvalidInput, UpstreamTimeout

_cache: dict[tuple[str, float], duckdb.DuckDBPyConnection] = {}
_cache_lock = threading.Lock()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.hex()
    return v


def locked_connection(path: Path) -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB that can read only ``path`` (and nothing else, ever)."""
    con = duckdb.connect(":memory:")
    # Bound what one query can take from the datasite's machine.
    con.execute("SET memory_limit = '1GB'")
    con.execute("SET threads = 2")
    con.execute("SET allowed_paths = ?", [[str(path)]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    # The path is the datasite's own, quoted as a SQL literal; views cannot take parameters.
    con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet({_literal(path)})")  # noqa: S608
    return con


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def cursor_for(path: Path) -> duckdb.DuckDBPyConnection:
    """A cursor on the cached locked connection for ``path`` (re-opened if the file changed)."""
    key = (str(path), path.stat().st_mtime)
    with _cache_lock:
        con = _cache.get(key)
        if con is None:
            for old in [k for k in _cache if k[0] == key[0]]:
                _cache.pop(old).close()
            con = _cache[key] = locked_connection(path)
        return con.cursor()


def count_by(path: Path, by: list[str], columns: list[str]) -> tuple[list[str], list[list[Any]]]:
    """Row counts grouped by ``by`` (validated against ``columns``), sorted by the groups."""
    for col in by:
        if col not in columns:
            raise InvalidInput(f"column {col!r} is not in this dataset")
    cur = cursor_for(path)
    try:
        keys = ", ".join(_ident(c) for c in by)
        if by:
            sql = (f"SELECT {keys}, count(*) AS n FROM data GROUP BY {keys} "  # noqa: S608
                   f"ORDER BY {keys} NULLS LAST")
        else:
            sql = "SELECT count(*) AS n FROM data"
        rows = cur.execute(sql).fetchall()
    finally:
        cur.close()
    return [*by, "n"], [[_jsonable(v) for v in row] for row in rows]


def run_sql(path: Path, sql: str, *, limit: int, timeout: float
            ) -> tuple[list[str], list[list[Any]], bool]:
    """Run one read-only SELECT over the view ``data``; at most ``limit`` rows, ``timeout`` s.

    Returns (columns, rows, truncated). Anything but a single SELECT is refused before it
    runs; a query still running at the deadline is interrupted.
    """
    cur = cursor_for(path)
    try:
        try:
            statements = cur.extract_statements(sql)
        except duckdb.Error as exc:
            raise InvalidInput(f"the SQL does not parse: {exc}") from exc
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise InvalidInput(
                "only one SELECT statement is allowed, e.g. SELECT region, count(*) FROM data "
                "GROUP BY region"
            )
        timer = threading.Timer(timeout, cur.interrupt)
        timer.start()
        try:
            rel = cur.execute(f"SELECT * FROM ({statements[0].query}) LIMIT {int(limit) + 1}")  # noqa: S608
            columns = [d[0] for d in rel.description or []]
            rows = rel.fetchall()
        except duckdb.InterruptException as exc:
            raise UpstreamTimeout(f"the query ran longer than {timeout:g} s and was stopped; "
                                  "add filters or aggregate") from exc
        except duckdb.Error as exc:
            raise InvalidInput(f"the query failed: {str(exc).splitlines()[0]}") from exc
        finally:
            timer.cancel()
    finally:
        cur.close()
    truncated = len(rows) > limit
    return columns, [[_jsonable(v) for v in r] for r in rows[:limit]], truncated

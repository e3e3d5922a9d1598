"""Run aggregate queries on a datasite's Parquet files with a locked-down DuckDB.

Each query gets a fresh in-memory DuckDB that may read exactly one file: ``allowed_paths``
names it, external access is then switched off and the configuration locked, so neither a
crafted column name nor a later query can reach any other file, the network or extensions.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from ndl.core.errors import InvalidInput


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


def locked_connection(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET allowed_paths = ?", [[str(path)]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def count_by(path: Path, by: list[str], columns: list[str]) -> tuple[list[str], list[list[Any]]]:
    """Row counts grouped by ``by`` (validated against ``columns``), sorted by the groups."""
    for col in by:
        if col not in columns:
            raise InvalidInput(f"column {col!r} is not in this dataset")
    con = locked_connection(path)
    try:
        keys = ", ".join(_ident(c) for c in by)
        if by:
            sql = (f"SELECT {keys}, count(*) AS n FROM read_parquet(?) GROUP BY {keys} "  # noqa: S608
                   f"ORDER BY {keys} NULLS LAST")
        else:
            sql = "SELECT count(*) AS n FROM read_parquet(?)"
        rows = con.execute(sql, [str(path)]).fetchall()
    finally:
        con.close()
    return [*by, "n"], [[_jsonable(v) for v in row] for row in rows]

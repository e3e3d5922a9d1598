"""Run queries on a datasite's Parquet files with a locked-down DuckDB.

Each DuckDB may read exactly one Parquet file: ``allowed_paths`` names it, external access is
then switched off and the configuration locked, so neither a crafted column name nor a query
can reach any other file, the network or extensions (autoload and autoinstall are off too).
Each DuckDB spills to its own temporary folder inside a private 0700 folder of this process,
never to the shared ``<cwd>/.tmp``.

Two callers, two regimes:

* :func:`count_by` runs SQL that ndl writes itself (validated column names only). Its locked
  connection is kept per file, because opening a DuckDB costs 30-50 ms.
* :func:`run_sql` runs SQL that anyone wrote over open data. It runs in a child process
  (:mod:`ndl.datasite.sql_sandbox`) whose address space is capped, so no query can take the
  datasite's memory (DuckDB's own ``memory_limit`` does not bound strings: ``repeat('x',
  800000000)`` took a datasite to 1.85 GB). There :func:`run_sql_here` checks the SQL against
  the allow-list of :mod:`ndl.datasite.sql_guard`, runs it on a fresh DuckDB with a fresh
  temporary folder (removed afterwards), stops it at the deadline, refuses answers larger than
  :data:`ANSWER_BYTES`, and scrubs server paths, the home folder and the DuckDB version from
  every error it reports.

Answers are JSON-safe by one convention, :func:`json_safe`.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import duckdb

from ndl.core.errors import InvalidInput, PayloadTooLarge, UpstreamTimeout
from ndl.core.jsonsafe import json_safe

# DuckDB spills to its temporary folder past this; the sandbox caps the whole process above it.
DUCKDB_MEMORY_LIMIT = "512MB"
MAX_TEMP_BYTES = "2GB"
# The hub takes message bodies up to 2 MB; an answer must fit in one with its envelope.
ANSWER_BYTES = 1_500_000
_FETCH_ROWS = 1024

_cache: dict[tuple[str, float], duckdb.DuckDBPyConnection] = {}
_cache_lock = threading.Lock()
_private: Path | None = None
_private_lock = threading.Lock()


def private_folder() -> Path:
    """This process's own 0700 folder for DuckDB's temporary files (removed at exit)."""
    global _private
    with _private_lock:
        if _private is None:
            _private = Path(tempfile.mkdtemp(prefix="ndl-duckdb-"))  # mkdtemp makes it 0700
            atexit.register(shutil.rmtree, _private, True)
        return _private


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'




def open_unlocked(temp_dir: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB with every setting but the file it may read (so it can be opened ahead)."""
    con = duckdb.connect(":memory:", config={
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        # Never scan a Python variable named in a query (DuckDB's Python replacement scans).
        "python_enable_replacements": False,
        "threads": 2,
        "memory_limit": DUCKDB_MEMORY_LIMIT,
        "max_temp_directory_size": MAX_TEMP_BYTES,
        "temp_directory": str(temp_dir),
    })
    # A long query would otherwise draw a progress bar on stdout: in the SQL worker that is
    # the reply channel (see sql_sandbox._serve, which also moves fd 1 aside).
    con.execute("SET enable_progress_bar = false")
    return con


def lock_to(con: duckdb.DuckDBPyConnection, path: Path) -> duckdb.DuckDBPyConnection:
    """Let ``con`` read only ``path``, lock its configuration and define the view ``data``."""
    # Order matters: allowed_paths can only be set while external access is on.
    con.execute("SET allowed_paths = ?", [[str(path)]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    # The path is the datasite's own, quoted as a SQL literal; views cannot take parameters.
    con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet({_literal(path)})")  # noqa: S608
    return con


def locked_connection(path: Path, temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB that can read only ``path`` (and nothing else, ever)."""
    if temp_dir is None:
        temp_dir = Path(tempfile.mkdtemp(dir=private_folder()))
    return lock_to(open_unlocked(temp_dir), path)


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def cursor_for(path: Path) -> duckdb.DuckDBPyConnection:
    """A cursor on the cached locked connection for ``path`` (re-opened if the file changed).

    Only for SQL that ndl writes itself: user SQL goes through :func:`run_sql`.
    """
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
    return [*by, "n"], [[json_safe(v) for v in row] for row in rows]


def run_sql(path: Path, sql: str, *, limit: int, timeout: float
            ) -> tuple[list[str], list[list[Any]], bool]:
    """Run one read-only SELECT over the view ``data``; at most ``limit`` rows, ``timeout`` s.

    Returns (columns, rows, truncated), rows JSON-safe by :func:`json_safe`. Runs in the
    memory-capped SQL sandbox process; raises InvalidInput (refused or failed SQL),
    PayloadTooLarge (answer over :data:`ANSWER_BYTES`) or UpstreamTimeout.
    """
    from ndl.datasite.sql_sandbox import sandbox  # the sandbox imports this module

    return sandbox().run(path, sql, limit=limit, timeout=timeout)


def prestart_sql_sandbox(*, wait: bool = True) -> None:
    """Start the open-SQL worker now. A datasite with open data calls this before it comes
    online, so its first query does not wait the 1.5-5 s the worker takes to start."""
    from ndl.datasite.sql_sandbox import sandbox

    sandbox().prestart(wait=wait)


def run_sql_here(path: Path, sql: str, *, limit: int, timeout: float,
                 con: duckdb.DuckDBPyConnection | None = None, temp_dir: Path | None = None,
                 ) -> tuple[list[str], list[list[Any]], bool]:
    """:func:`run_sql` in this process, without the memory cap (the sandbox's worker calls it).

    ``con`` may be an unlocked DuckDB opened ahead by :func:`open_unlocked` on ``temp_dir``;
    it is locked to ``path`` here, used for this one query and closed, and ``temp_dir`` removed.
    """
    from ndl.datasite.sql_guard import check_select

    check_select(sql)
    if con is None or temp_dir is None:
        temp_dir = Path(tempfile.mkdtemp(dir=private_folder()))
        con = open_unlocked(temp_dir)
    timer = threading.Timer(timeout, con.interrupt)
    try:
        try:
            lock_to(con, path)  # binds the view: a broken file fails here, and is reported
            timer.start()
            return _fetch(con.execute(sql), limit)
        except duckdb.InterruptException as exc:
            raise UpstreamTimeout(f"the query ran longer than {timeout:g} s and was stopped; "
                                  "add filters or aggregate") from exc
        except duckdb.OutOfMemoryException as exc:
            raise InvalidInput("the query needed more memory than a query may use here; "
                               "filter or aggregate, or return shorter values") from exc
        except MemoryError as exc:
            raise InvalidInput("the answer needed more memory than a query may use here; "
                               "select fewer or shorter values") from exc
        except duckdb.Error as exc:
            raise InvalidInput(f"the query failed: {scrub(str(exc), path)}") from exc
    finally:
        timer.cancel()
        con.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _fetch(rel: duckdb.DuckDBPyConnection, limit: int
           ) -> tuple[list[str], list[list[Any]], bool]:
    """Fetch up to ``limit`` rows (+1 to tell truncation), refusing answers too large to send."""
    columns = [d[0] for d in rel.description or []]
    size = len(json.dumps(columns))
    rows: list[list[Any]] = []
    while len(rows) <= limit:
        batch = rel.fetchmany(min(_FETCH_ROWS, limit + 1 - len(rows)))
        if not batch:
            break
        for raw in batch:
            row = [json_safe(v) for v in raw]
            size += len(json.dumps(row, ensure_ascii=False).encode())
            if size > ANSWER_BYTES:
                raise PayloadTooLarge(
                    f"the answer would be larger than {ANSWER_BYTES:,} bytes (at row "
                    f"{len(rows) + 1:,}); select fewer columns or rows, shorten long values "
                    "or aggregate")
            rows.append(row)
    return columns, rows[:limit], len(rows) > limit


_ABS_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s'\"/:]+/)*[^\s'\"/:,;)]+")


def scrub(message: str, path: Path | None = None) -> str:
    """The first line of a DuckDB error, without server paths, home folder or DuckDB version."""
    text = message.splitlines()[0] if message else ""
    secrets = [str(p) for p in (path, path.parent if path else None) if p is not None]
    secrets += [str(private_folder()), str(Path.home()), os.getcwd(), sys.prefix]
    version = duckdb.__version__
    secrets += [f"v{version}", version]
    for secret in sorted((s for s in secrets if len(s) > 2), key=len, reverse=True):
        text = text.replace(secret, "<hidden>")
    return _ABS_PATH.sub("<path>", text)

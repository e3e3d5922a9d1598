"""The hub's database as JSON lines: a consistent snapshot out, rows back in, on either backend.

Why not ``pg_dump``: its archives restore only into PostgreSQL, and it must be at least the
server's major version, so a backup would depend on which client tools the operator has
installed. Dumping rows through SQLAlchemy needs nothing but the hub's own connection, and the
same archive restores into SQLite or PostgreSQL.

* SQLite: the sqlite3 backup API copies the live file (WAL readers never block the hub) to a
  private temporary file, and the rows are read from that copy.
* PostgreSQL: one ``REPEATABLE READ, READ ONLY`` transaction reads every table, so all of them
  come from one instant while the hub keeps writing.

Tables come from ``Base.metadata.sorted_tables`` (parents before children), so a table a
later migration adds is backed up with no change here. The full-text search tables
(``dataset_fts*`` on SQLite, ``dataset_search`` on PostgreSQL) are not copied: they differ by
backend and are rebuilt from the datasets after a restore.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from ndl.core.db import Base, Database
from ndl.core.errors import Conflict, InvalidInput
from ndl.core.migrate import all_models
from ndl.core.private import private_file

Progress = Callable[[str, int], None]
BATCH = 1000
# A row longer than this (one JSON line) is refused rather than read into memory whole.
MAX_LINE = 512 * 1024 * 1024
_DERIVED = ("dataset_fts", "dataset_search", "alembic_version", "sqlite_")


@dataclass(frozen=True)
class TableDump:
    name: str
    columns: list[tuple[str, str]]
    rows: int

    @property
    def member(self) -> str:
        return f"db/{self.name}.jsonl"


def tables() -> list[sa.Table]:
    all_models()
    return list(Base.metadata.sorted_tables)


def _kind(col: sa.Column[Any]) -> str:
    t = col.type
    while isinstance(t, sa.TypeDecorator):
        t = t.impl_instance
    if isinstance(t, sa.JSON):
        return "json"
    if isinstance(t, sa.LargeBinary):
        return "bytes"
    py: type | None
    try:
        py = t.python_type
    except NotImplementedError:
        py = None
    if py is datetime:
        return "datetime"
    if py is date:
        return "date"
    return "plain"


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config_for_script()).get_current_head()
    assert head is not None
    return head


def alembic_config_for_script() -> Any:
    from alembic.config import Config

    from ndl.core.migrate import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def known_revision(rev: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config_for_script()).get_revision(rev) \
            is not None
    except Exception:
        return False


def revision_of(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


@contextlib.contextmanager
def snapshot(db: Database, workdir: Path) -> Iterator[Connection]:
    """A connection that sees one consistent instant of the hub's database."""
    if db.backend == "sqlite":
        src_name = make_url(db.url).database
        assert src_name
        copy = private_file(workdir / "snapshot.sqlite")
        src = sqlite3.connect(f"file:{src_name}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, one instant
        finally:
            dst.close()
            src.close()
        engine = sa.create_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{copy}{suffix}").unlink(missing_ok=True)
        return
    with db.read_engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                      postgresql_readonly=True)
        with conn.begin():
            yield conn


def _encode(kind: str, value: Any) -> Any:
    if value is None or kind in ("plain", "json"):
        return value
    if kind == "bytes":
        return base64.b64encode(value).decode("ascii")
    return value.isoformat()


def _decode(kind: str, value: Any) -> Any:
    if value is None or kind in ("plain", "json"):
        return value
    if kind == "bytes":
        return base64.b64decode(value, validate=True)
    if kind == "datetime":
        return datetime.fromisoformat(value)
    return date.fromisoformat(value)


def dump_table(conn: Connection, table: sa.Table, out: IO[bytes],
               progress: Progress | None = None) -> TableDump:
    """Write ``table``'s rows (in primary-key order) to ``out`` as one JSON object a line."""
    cols = [(c.name, _kind(c)) for c in table.columns]
    order = list(table.primary_key.columns) or list(table.columns)
    n = size = 0
    result = conn.execution_options(yield_per=BATCH).execute(sa.select(table).order_by(*order))
    for row in result:
        line = json.dumps({name: _encode(kind, v) for (name, kind), v in
                           zip(cols, row, strict=True)},
                          ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        out.write(line)
        n += 1
        size += len(line)
        if progress and n % BATCH == 0:
            progress(table.name, size)
            size = 0
    if progress:
        progress(table.name, size)
    return TableDump(table.name, cols, n)


def unexpected_tables(conn: Connection) -> list[str]:
    """Tables in the database that neither the models nor the derived search index name: a
    backup would leave them out, so it refuses instead."""
    known = {t.name for t in tables()}
    return sorted(n for n in sa.inspect(conn).get_table_names()
                  if n not in known and not n.startswith(_DERIVED))


# ---------------------------------------------------------------- restore


def existing_tables(db: Database) -> list[str]:
    with db.read_engine.connect() as conn:
        return sorted(sa.inspect(conn).get_table_names())


def drop_everything(db: Database) -> None:
    """Empty the database for ``restore --force``: every table, the search index included."""
    with db.write_engine.connect() as conn:
        with conn.begin():
            for name in ("dataset_fts", "dataset_search"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        with conn.begin():
            meta = sa.MetaData()
            meta.reflect(conn)
            meta.drop_all(conn)  # children before parents


def _target(name: str, columns: list[tuple[str, str]], conn: Connection) -> sa.Table:
    """The table to insert into: the model's column types where the model has the column
    (they know how to store a UTC datetime or JSON on this backend), else the archive's kind."""
    model = Base.metadata.tables.get(name)
    live = {c["name"] for c in sa.inspect(conn).get_columns(name)}
    cols = []
    for col, kind in columns:
        if col not in live:
            raise InvalidInput(f"the archive's table {name} has a column {col!r} the database "
                               "at the archive's revision does not: the archive was changed")
        have = model.columns.get(col) if model is not None else None
        if kind == "json":
            typ: Any = sa.JSON(none_as_null=bool(have is None or have.nullable))
        elif have is not None:
            typ = have.type
        else:
            from ndl.core.db import UTCDateTime
            typ = {"bytes": sa.LargeBinary(), "datetime": UTCDateTime(),
                   "date": sa.Date()}.get(kind, sa.String())
        cols.append(sa.Column(col, typ))
    return sa.Table(name, sa.MetaData(), *cols)


def load_table(conn: Connection, name: str, columns: list[tuple[str, str]],
               lines: Callable[[], bytes], progress: Progress | None = None) -> int:
    """Insert the rows of one ``db/<table>.jsonl`` member, read with ``lines()``."""
    if not sa.inspect(conn).has_table(name):
        raise InvalidInput(f"the archive holds table {name}, which the database at the "
                           "archive's revision does not have: the archive was changed")
    try:
        return _load(conn, name, columns, lines, progress)
    except sa.exc.DBAPIError as exc:
        raise Conflict(
            f"the rows of {name} do not fit the database at the archive's revision "
            f"({str(exc.orig).splitlines()[0][:200]}): the archive was made by another build "
            "of ndl with the same revision id; restore it with that build. Nothing was "
            "loaded; the database holds the empty schema (use --force next time)") from exc


def _load(conn: Connection, name: str, columns: list[tuple[str, str]],
          lines: Callable[[], bytes], progress: Progress | None) -> int:
    target = _target(name, columns, conn)
    kinds = dict(columns)
    batch: list[dict[str, Any]] = []
    n = size = 0
    while True:
        line = lines()
        if not line:
            break
        size += len(line)
        if not line.endswith(b"\n"):
            raise InvalidInput(f"a row of {name} is longer than {MAX_LINE:,} bytes or cut "
                               "off: the archive is damaged")
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict) or set(raw) - set(kinds):
                raise ValueError("unexpected columns")
            batch.append({k: _decode(kinds[k], v) for k, v in raw.items()})
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"row {n + len(batch) + 1} of {name} in the archive is not "
                               f"valid ({exc}): the archive is damaged") from exc
        if len(batch) >= BATCH:
            conn.execute(sa.insert(target), batch)
            n += len(batch)
            if progress:
                progress(name, size)
            batch, size = [], 0
    if batch:
        conn.execute(sa.insert(target), batch)
        n += len(batch)
    if progress:
        progress(name, size)
    return n


def clear_tables(conn: Connection, names: list[str]) -> None:
    """Remove the rows migrations seed (the register's head, the catalogue's state) before
    the archive's own rows go in; children first."""
    for name in reversed(names):
        conn.execute(sa.table(name).delete())


def reset_sequences(conn: Connection, names: list[str]) -> None:
    """PostgreSQL: move each serial/identity sequence past the highest restored id, so the
    next row the hub inserts does not collide. SQLite keeps its counters itself."""
    if conn.dialect.name != "postgresql":
        return
    for name in names:
        for col in sa.inspect(conn).get_columns(name):
            seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                               {"t": name, "c": col["name"]}).scalar()
            if seq:
                q = conn.dialect.identifier_preparer.quote
                conn.execute(sa.text(
                    f"SELECT setval(:s, COALESCE((SELECT MAX({q(col['name'])}) "  # noqa: S608
                    f"FROM {q(name)}), 0) + 1, false)"), {"s": seq})


def rebuild_search(db: Database) -> int:
    """Index every dataset for full-text search again (the index is not in the archive)."""
    from ndl.catalogue.models import Dataset
    from ndl.catalogue.search import reindex

    n = 0
    with db.write() as s:
        for ds in s.scalars(sa.select(Dataset)):
            reindex(s, ds)
            n += 1
    return n


def check_revision(rev: str) -> None:
    if not known_revision(rev):
        raise Conflict(f"the archive's database is at revision {rev!r}, which this ndl does "
                       f"not know (its newest is {head_revision()}): it was made by a newer "
                       "ndl; install that version (or newer) to restore it")

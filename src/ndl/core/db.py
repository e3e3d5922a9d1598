"""Database plumbing for the hub: one declarative Base, engines for SQLite and PostgreSQL.

SQLite is the embedded default. It runs in WAL mode with two engines over the same file:
reads use deferred transactions (concurrent), writes use ``BEGIN IMMEDIATE`` so that a
read-then-write transaction (appending to the register, leasing mail) takes the write lock up
front instead of failing with "database is locked" half way through.
PostgreSQL needs no such split; both names point at one engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import DateTime, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from ndl.core.errors import InvalidInput, UpstreamUnavailable
from ndl.core.private import private_dir, private_file

# The largest integer every backend stores (SQLite INTEGER, PostgreSQL BIGINT). A bigger one
# from a request would crash the driver, so ids, offsets and cursors are bounded by it.
MAX_DB_INT = 2**63 - 1
# A row id taken from a path or query: a bad one is a 422 naming the parameter, never a 500.
RowId = Annotated[int, Field(ge=1, le=MAX_DB_INT)]


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def normalise_url(url: str) -> str:
    """Accept a bare path as SQLite and the common PostgreSQL spellings."""
    if "://" not in url:
        path = Path(url).expanduser().resolve()
        private_dir(path.parent, tighten=False)
        return f"sqlite:///{path}"
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InvalidInput(
            f"database URL {url!r} is not valid; use a file path, sqlite:///path.db or "
            "postgresql+psycopg://user@host:5432/dbname"
        ) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidInput(f"database {parsed.get_backend_name()!r} is not supported; "
                           "use SQLite or PostgreSQL")
    return url


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _private_sqlite_file(url: str) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask, often
    leaving it world-readable); its -wal and -shm files copy the mode."""
    name = make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    private_dir(path.parent, tighten=False)
    private_file(path)


class Database:
    """Engines and sessions for one hub database."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.backend = make_url(self.url).get_backend_name()
        if self.backend == "sqlite":
            _private_sqlite_file(self.url)
            self.read_engine = _sqlite_engine(self.url, immediate=False)
            self.write_engine = _sqlite_engine(self.url, immediate=True)
        else:
            self.read_engine = self.write_engine = create_engine(
                self.url, pool_pre_ping=True, pool_size=10, max_overflow=10
            )
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error."""
        with self._write() as session, session.begin():
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from ndl.core.migrate import upgrade

        try:
            upgrade(self)
        except Exception as exc:
            if "connect" in str(exc).lower():
                raise UpstreamUnavailable(f"cannot reach the database at {self.safe_url}: {exc}"
                                          ) from exc
            raise

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.read_engine.dispose()
        self.write_engine.dispose()

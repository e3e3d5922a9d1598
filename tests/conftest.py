"""Fixtures shared by every test tier. See tests/README.md for what each tier covers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from ndl.testing import write_dataset
from needs import required

# A real Spark standalone cluster (session-scoped; see tests/spark_cluster.py).
from spark_cluster import spark_cluster, spark_engine  # noqa: F401

# Every hub in the suite is a test hub on loopback, over plain http:// (ndl.core.transport);
# tests of the refusal itself clear this for the call they make.
os.environ.setdefault("NDL_ALLOW_HTTP_LOOPBACK", "1")

PG_BASE = os.environ.get("NDL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end.

    Skips when no server answers, unless NDL_REQUIRE_PG=1 (CI sets it) makes that a failure.
    """
    import sqlalchemy as sa

    admin = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    name = f"ndl_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if required("NDL_REQUIRE_PG"):
            pytest.fail(f"NDL_REQUIRE_PG is set but PostgreSQL is unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE}")
    url = PG_BASE.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """An empty schema for one test: drop everything the previous test created."""
    import sqlalchemy as sa

    engine = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    yield pg_server


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "hub.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def small_site(tmp_path: Path) -> Path:
    """A datasite folder with one safeguarded and one open dataset of known counts."""
    root = tmp_path / "site"
    regions = ["North East"] * 25 + ["London"] * 12 + ["Wales"] * 3
    write_dataset(root, "ae-attendances", pa.table({
        "region": regions, "acuity": [i % 3 + 1 for i in range(len(regions))],
    }), title="A&E attendances", keywords=["A&E", "emergency"],
        description="Synthetic A&E attendances for tests.")
    write_dataset(root, "ward-population", pa.table({
        "ward": ["A", "B", "C"], "population": [100, 5, 7],
    }), tier="open", title="Ward population")
    return root


@pytest.fixture(scope="session")
def sandbox_strict() -> object:
    """A ready strict (bubblewrap) Sandbox.

    Skips when bubblewrap cannot run here, unless NDL_REQUIRE_SANDBOX=1 (CI sets it) makes that
    a failure.
    """
    from ndl.jobs.sandbox import SandboxUnavailable, open_sandbox

    try:
        return open_sandbox("strict")
    except SandboxUnavailable as exc:
        if required("NDL_REQUIRE_SANDBOX"):
            pytest.fail(f"NDL_REQUIRE_SANDBOX is set but the strict sandbox is unavailable: {exc}")
        pytest.skip(f"strict sandbox unavailable: {exc.message}")

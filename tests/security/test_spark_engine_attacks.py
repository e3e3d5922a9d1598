"""Open-data SQL on Spark is locked down as tightly as on DuckDB: the same attacks, refused on
both engines. Then the Spark-side locks alone (the allow-list switched off) still keep a
query to its one dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ndl.core.errors import InvalidInput, PayloadTooLarge, UpstreamTimeout
from ndl.datasite.engines import Engine
from ndl.datasite.engines.duckdb_engine import DuckDBEngine
from ndl.datasite.store import DatasiteStore, LocalDataset
from ndl.testing import write_dataset


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> DatasiteStore:
    root = tmp_path_factory.mktemp("attacks")
    write_dataset(root, "open-wards", pa.table({
        "ward": [f"W{i % 5}" for i in range(40)], "population": list(range(40))}), tier="open")
    write_dataset(root, "secret-rows", pa.table({"nhs_number": ["943 476 5919"]}),
                  tier="controlled")
    return DatasiteStore(root)


@pytest.fixture(params=["duckdb", "spark"])
def engine(request: pytest.FixtureRequest, store: DatasiteStore) -> Engine:
    if request.param == "duckdb":
        return DuckDBEngine()
    return _with_secrets(request.getfixturevalue("spark_engine"), store)


def _with_secrets(spark: Any, store: DatasiteStore) -> Engine:
    """The Spark engine, with a table in Spark's catalogue and a view in the driver's own
    session: neither may be reached from a query over `data`."""
    session = spark.session()
    secret = str(store.dataset("secret-rows").path)
    if not session.catalog.tableExists("secret_tbl"):
        session.catalog.createTable("secret_tbl", path=secret, source="parquet")
    session.read.parquet(secret).createOrReplaceTempView("secret_view")
    return spark  # type: ignore[no-any-return]


ATTACKS = [
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_files('/etc')",
    "SELECT * FROM parquet.`/etc/passwd`",
    "SELECT * FROM \"/etc/passwd\"",
    "SELECT * FROM 'secret-rows/data.parquet'",
    "SELECT * FROM secret_tbl",
    "SELECT * FROM secret_view",
    "SELECT * FROM default.secret_tbl",
    "SELECT * FROM spark_catalog.default.secret_tbl",
    "SELECT * FROM IDENTIFIER('secret_tbl')",
    "SELECT * FROM data UNION ALL SELECT * FROM secret_tbl",
    "SELECT reflect('java.lang.System', 'getenv', 'HOME')",
    "SELECT java_method('java.lang.System', 'getProperty', 'user.home')",
    "SELECT input_file_name() FROM data",
    "SELECT version()",
    "SELECT current_setting('home_directory')",
    "SET spark.sql.runSQLOnFiles=true",
    "CREATE TEMPORARY FUNCTION f AS 'org.apache.hadoop.hive.ql.udf.UDFReflect'",
    "ADD JAR /tmp/evil.jar",
    "SHOW TABLES",
    "DESCRIBE data",
    "SELECT 1; SELECT * FROM secret_tbl",
    "CACHE TABLE x AS SELECT * FROM data",
    "INSERT INTO data VALUES ('x', 1)",
]


@pytest.mark.parametrize("sql", ATTACKS)
def test_attacks_are_refused(engine: Engine, store: DatasiteStore, sql: str) -> None:
    with pytest.raises(InvalidInput) as err:
        engine.run_sql(store.dataset("open-wards"), sql, limit=10, timeout=20)
    text = str(err.value)
    assert str(store.root) not in text and "943 476" not in text


def test_optimizer_hints_are_refused_on_spark(engine: Engine, store: DatasiteStore) -> None:
    """Spark obeys /*+ REPARTITION(100000) */ (100,000 tasks); DuckDB reads a comment."""
    sql = "SELECT /*+ REPARTITION(100000) */ * FROM data"
    if engine.name == "duckdb":
        assert len(engine.run_sql(store.dataset("open-wards"), sql, limit=100,
                                  timeout=20)[1]) == 40
        return
    with pytest.raises(InvalidInput, match="hints"):
        engine.run_sql(store.dataset("open-wards"), sql, limit=10, timeout=20)


def test_a_huge_answer_is_refused(engine: Engine, store: DatasiteStore) -> None:
    with pytest.raises(PayloadTooLarge):  # 40 rows of 100 kB
        engine.run_sql(store.dataset("open-wards"), "SELECT repeat('x', 100000) AS x FROM data",
                       limit=1000, timeout=30)
    with pytest.raises(PayloadTooLarge):  # one row of 2 MB
        engine.run_sql(store.dataset("open-wards"), "SELECT repeat('x', 2000000) AS x",
                       limit=10, timeout=30)


def test_a_long_query_is_stopped_and_the_engine_carries_on(engine: Engine,
                                                          store: DatasiteStore) -> None:
    ds = store.dataset("open-wards")
    sql = ("SELECT count(*) AS n FROM data a, data b, data c, data d, data e, data f, data g "
           "WHERE hash(a.population + b.population + c.population + d.population "
           "+ e.population + f.population + g.population) = 7")  # 40^7 rows: hours
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        engine.run_sql(ds, sql, limit=10, timeout=2)
    assert time.monotonic() - started < 15
    started = time.monotonic()
    assert engine.count_by(ds, [])[1] == [[40]]  # the cancelled job left the engine free
    assert time.monotonic() - started < 15


def _executor_cpu(app_id: str) -> dict[int, float]:
    """CPU seconds so far of each executor process of one Spark application."""
    import psutil

    out = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "org.apache.spark.executor.CoarseGrainedExecutorBackend" in cmd and app_id in cmd:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            out[proc.pid] = t.user + t.system
    return out


def test_a_stopped_query_stops_burning_the_cluster(spark_engine: Any,
                                                   store: DatasiteStore) -> None:
    """A query stopped at its deadline does not go on running on the executors: its job group
    is cancelled with interruption, and the task reaper (spark_engine.LOCKED) kills an
    executor whose task ignores that."""
    ds = store.dataset("open-wards")
    app_id = spark_engine.session().sparkContext.applicationId
    sql = ("SELECT count(*) AS n FROM data a, data b, data c, data d, data e, data f, data g "
           "WHERE hash(a.population + b.population + c.population + d.population "
           "+ e.population + f.population + g.population) = 7")
    with pytest.raises(UpstreamTimeout):
        spark_engine.run_sql(ds, sql, limit=10, timeout=2)
    assert _executor_cpu(app_id), "no executor of this application found to watch"
    deadline, busy = time.monotonic() + 45, None
    while time.monotonic() < deadline:
        before = _executor_cpu(app_id)
        time.sleep(2)
        after = _executor_cpu(app_id)
        busy = sum(after[p] - before[p] for p in after if p in before)
        if busy < 0.6:  # under 30% of one core over the two seconds: nothing runs on
            break
    assert busy is not None and busy < 0.6, f"executors still busy: {busy:.1f} CPU s in 2 s"
    assert spark_engine.count_by(ds, [])[1] == [[40]]


def test_errors_are_scrubbed(engine: Engine, store: DatasiteStore) -> None:
    ds = store.dataset("open-wards")
    for sql in ["SELECT nosuch FROM data", "SELECT CAST(ward AS INTEGER) AS x FROM data"]:
        with pytest.raises(InvalidInput) as err:
            engine.run_sql(ds, sql, limit=10, timeout=20)
        text = str(err.value)
        assert str(store.root) not in text and "file:/" not in text, text
        assert "\n" not in text and " at org.apache" not in text and len(text) < 700


# -- Spark's own locks, with the allow-list switched off --------------------------------------

def _unguarded(spark_engine: Any, ds: LocalDataset, sql: str,
               monkeypatch: pytest.MonkeyPatch) -> Any:
    import ndl.datasite.sql_guard as guard

    monkeypatch.setattr(guard, "check_select", lambda sql: None)
    return spark_engine.run_sql(ds, sql, limit=10, timeout=20)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM parquet.`{secret}`",
    "SELECT * FROM read_files('{secret}')",
    "SELECT * FROM secret_tbl",
    "SELECT * FROM secret_view",
])
def test_without_the_allow_list_spark_still_reads_only_the_dataset(
        spark_engine: Any, store: DatasiteStore, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, sql: str) -> None:
    # Spark's own locks only: DuckDB's (allowed_paths) are tested in test_open_sql_sandbox.
    engine = _with_secrets(spark_engine, store)
    secret = str(store.dataset("secret-rows").path)
    with pytest.raises(InvalidInput) as err:
        _unguarded(engine, store.dataset("open-wards"), sql.format(secret=secret), monkeypatch)
    assert "943 476" not in str(err.value)

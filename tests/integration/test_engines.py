"""One spec for every engine: DuckDB in this process and Spark on a real standalone cluster.

Each spec test runs on both engines and checks against truth computed here from the Parquet
file with pyarrow, so equal answers on both engines are what passes. Spark-only tests cover
datasets Spark reads where they are (a Parquet folder, a catalogue table).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ndl.core.errors import InvalidInput
from ndl.datasite.engines import Engine
from ndl.datasite.engines.duckdb_engine import DuckDBEngine
from ndl.datasite.engines.source import SOURCE_FILE, parquet_source, table_source
from ndl.datasite.store import DatasiteStore, LocalDataset
from ndl.demo.synth import generate_demo_data
from ndl.privacy import from_sql
from ndl.testing import write_dataset

REGIONS = ["North East", "London", "Wales", None]


def _open_table(n: int = 400) -> pa.Table:
    return pa.table({
        "id": list(range(n)),
        "region": [REGIONS[i % 4] for i in range(n)],
        "age": [None if i % 17 == 0 else (i * 7) % 90 for i in range(n)],
        "score": [i / 8 for i in range(n)],
        "flag": [i % 3 == 0 for i in range(n)],
    })


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engines")
    generate_demo_data(root / "demo", people=600, seed=5)
    site = root / "demo" / "nhs-trust"
    write_dataset(site, "open-wards", _open_table(), tier="open")
    return site


@pytest.fixture(scope="module")
def store(site: Path) -> DatasiteStore:
    return DatasiteStore(site)


@pytest.fixture(params=["duckdb", "spark"])
def engine(request: pytest.FixtureRequest) -> Engine:
    if request.param == "duckdb":
        return DuckDBEngine()
    spark: Engine = request.getfixturevalue("spark_engine")
    return spark


def _truth_counts(ds: LocalDataset, by: list[str]) -> list[list[Any]]:
    table = pq.read_table(ds.path, columns=by)
    counts = Counter(tuple(r[c] for c in by) for r in table.to_pylist())
    return sorted(([*k, n] for k, n in counts.items()),
                  key=lambda r: [(v is None, v if v is not None else 0) for v in r[:-1]])


@pytest.mark.parametrize("by", [[], ["region"], ["region", "flag"]])
def test_count_by_is_exact(engine: Engine, store: DatasiteStore, by: list[str]) -> None:
    ds = store.dataset("open-wards")
    columns, rows = engine.count_by(ds, by)
    assert columns == [*by, "n"]
    assert rows == ([[400]] if not by else _truth_counts(ds, by))


def test_count_by_on_the_demo_data(engine: Engine, store: DatasiteStore) -> None:
    ds = store.dataset("ae-attendances")
    assert engine.count_by(ds, ["region", "acuity"])[1] == _truth_counts(ds, ["region",
                                                                             "acuity"])


def test_count_by_refuses_an_unknown_column(engine: Engine, store: DatasiteStore) -> None:
    with pytest.raises(InvalidInput, match="not in this dataset"):
        engine.count_by(store.dataset("open-wards"), ["region); DROP"])


def _expected_sql() -> dict[str, tuple[list[str], list[list[Any]]]]:
    rows = _open_table().to_pylist()
    by_region: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        by_region.setdefault(r["region"], []).append(r)
    order = sorted(by_region, key=lambda k: (k is None, k or ""))
    return {
        "SELECT region, count(*) AS n, sum(age) AS s FROM data GROUP BY region "
        "ORDER BY region NULLS LAST": (["region", "n", "s"], [
            [k, len(by_region[k]), sum(r["age"] for r in by_region[k] if r["age"] is not None)]
            for k in order]),
        "SELECT count(*) AS n FROM data WHERE flag AND age > 40": (["n"], [[sum(
            1 for r in rows if r["flag"] and r["age"] is not None and r["age"] > 40)]]),
        "WITH t AS (SELECT region, age FROM data WHERE age >= 50) SELECT region, max(age) AS m "
        "FROM t WHERE region IS NOT NULL GROUP BY region ORDER BY m DESC, region": (
            ["region", "m"], sorted(
                ([k, max(r["age"] for r in by_region[k] if r["age"] is not None)]
                 for k in order if k is not None), key=lambda x: (-x[1], x[0]))),
        "SELECT id, upper(region) AS r, round(score * 2, 2) AS d FROM data "
        "WHERE id < 3 ORDER BY id": (["id", "r", "d"], [
            [r["id"], r["region"].upper() if r["region"] else None, r["score"] * 2]
            for r in rows[:3]]),
    }


@pytest.mark.parametrize("sql", list(_expected_sql()))
def test_open_sql_answers_match(engine: Engine, store: DatasiteStore, sql: str) -> None:
    columns, rows, truncated = engine.run_sql(store.dataset("open-wards"), sql, limit=100,
                                              timeout=30)
    assert (columns, rows) == _expected_sql()[sql]
    assert truncated is False


def test_open_sql_row_limit_truncates(engine: Engine, store: DatasiteStore) -> None:
    columns, rows, truncated = engine.run_sql(
        store.dataset("open-wards"), "SELECT id FROM data ORDER BY id", limit=7, timeout=30)
    assert columns == ["id"] and rows == [[i] for i in range(7)] and truncated is True


def test_profiles_are_exact(engine: Engine, store: DatasiteStore) -> None:
    ds = store.dataset("open-wards")
    prof = engine.profile(ds)
    table = pq.read_table(ds.path)
    assert prof.rows == table.num_rows
    for col in prof.columns:
        arr = table[col.name]
        assert col.nulls == arr.null_count, col.name
        assert col.distinct == len(pc.unique(arr.drop_null())), col.name
        lo, hi = pc.min_max(arr).values()
        assert (col.min, col.max) == (lo.as_py(), hi.as_py()), col.name


def test_the_same_profile_on_both_engines(spark_engine: Engine, store: DatasiteStore) -> None:
    ds = store.dataset("ae-attendances")
    assert spark_engine.profile(ds) == DuckDBEngine().profile(ds)


def test_private_answers_are_within_their_stated_error(
        engine: Engine, store: DatasiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = store.dataset("ae-attendances")
    if engine.name == "spark":
        from ndl.datasite.engines.spark_engine import _dp_on_spark

        if _dp_on_spark() is not None:  # the statistics are computed on the cluster
            def no_columns(*_: Any) -> None:
                raise AssertionError("the Spark engine brought columns to the driver")

            monkeypatch.setattr(engine, "read_columns", no_columns)
    q = from_sql("SELECT COUNT(*) AS n FROM data GROUP BY region", ds.meta, rho=0.5,
                 project="p", max_rows_per_person=ds.policy.budget.max_rows_per_person)
    result = engine.private_answer(ds, q, sdc=None,
                                   max_rows_per_person=ds.policy.budget.max_rows_per_person)
    truth = dict(Counter(pq.read_table(ds.path, columns=["region"])["region"].to_pylist()))
    half = result.aggregates[0].half_width_95
    assert isinstance(half, float) and half > 0
    rows = {r[0]: r[1] for r in result.rows}
    assert set(truth) <= set(rows)
    for region, n in truth.items():
        # Contribution bounding may drop rows (never add them); 3x the 95% half-width is
        # about 6 sigma of the Gaussian noise.
        assert rows[region] <= n + 3 * half, region
        assert rows[region] >= 0


def test_samples_for_mocks_are_real_rows(engine: Engine, store: DatasiteStore) -> None:
    ds = store.dataset("open-wards")
    sample = engine.sample(ds, 50)
    assert sample.num_rows == 50
    real = {tuple(r.values()) for r in pq.read_table(ds.path).to_pylist()}
    assert all(tuple(r.values()) in real for r in sample.select(
        [c.name for c in ds.meta.columns]).to_pylist())


# -- datasets Spark reads where they are ------------------------------------------------------

def _register(store: DatasiteStore, name: str, source: dict[str, str], like: str) -> LocalDataset:
    """A dataset folder with metadata and source.json, no data.parquet (as publish-source
    writes it)."""
    import json

    folder = store.root / "datasets" / name
    folder.mkdir(exist_ok=True)
    meta = json.loads((store.root / "datasets" / like / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**meta, "name": name}))
    (folder / SOURCE_FILE).write_text(json.dumps(source))
    return store.dataset(name)


def ndl(*args: str | Path) -> tuple[int, str]:
    """Run an ``ndl`` command in this process: (exit code, what it printed)."""
    from typer.testing import CliRunner

    from ndl.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def _warehouse(root: Path) -> Path:
    """The open table as a Parquet folder of two files, as Spark or a lake would keep it."""
    folder = root / "warehouse" / "wards"
    folder.mkdir(parents=True)
    table = _open_table()
    pq.write_table(table.slice(0, 150), folder / "part-0.parquet")
    pq.write_table(table.slice(150), folder / "part-1.parquet")
    return folder


def test_publish_source_registers_a_folder_without_copying(store: DatasiteStore,
                                                           tmp_path: Path) -> None:
    folder = _warehouse(tmp_path)
    done = ndl("publish-source", "--dir", store.root, "--dataset", "wards-folder",
               "--parquet", folder, "--tier", "open", "--publisher", "Test Trust")
    assert done[0] == 0, done[1]
    assert "400 rows" in done[1] and "no data copied" in done[1]
    ds = store.dataset("wards-folder")
    assert ds.source == parquet_source(folder) and not ds.path.exists()
    assert [(c.name, c.type) for c in ds.meta.columns] == [
        ("id", "integer"), ("region", "string"), ("age", "integer"), ("score", "float"),
        ("flag", "boolean")]
    assert ds.meta.row_count == 400
    again = ndl("publish-source", "--dir", store.root, "--dataset", "wards-folder",
                "--parquet", folder)
    assert again[0] != 0 and "--new-version" in again[1]
    no_spark = ndl("publish-source", "--dir", store.root, "--dataset", "wards-tbl",
                   "--table", "warehouse.wards")
    assert no_spark[0] != 0 and "--spark-master" in no_spark[1]
    direct = ndl("publish-source", "--dir", store.root, "--dataset", "wards-direct",
                 "--parquet", folder, "--tier", "open", "--sensitivity",
                 "id=direct_identifier")
    assert direct[0] != 0 and "direct identifiers" in direct[1]
    assert not (store.root / "datasets" / "wards-direct").exists()


def test_a_parquet_folder_is_read_in_place(spark_engine: Any, store: DatasiteStore,
                                           tmp_path: Path) -> None:
    ds = _register(store, "wards-in-place", parquet_source(_warehouse(tmp_path)).to_json(),
                   "open-wards")
    assert ds.source is not None and not ds.path.exists()
    assert spark_engine.count_by(ds, ["region"]) == DuckDBEngine().count_by(
        store.dataset("open-wards"), ["region"])
    sql = "SELECT region, sum(age) AS s FROM data GROUP BY region ORDER BY region NULLS LAST"
    assert spark_engine.run_sql(ds, sql, limit=10, timeout=30) == DuckDBEngine().run_sql(
        store.dataset("open-wards"), sql, limit=10, timeout=30)
    with pytest.raises(InvalidInput, match="--spark-master"):
        DuckDBEngine().count_by(ds, ["region"])
    # The mock of a Spark-read dataset is learned from the engine's sample.
    parquet, method = store.mock_for(ds, lambda n: spark_engine.sample(ds, n))
    assert method and len(parquet) > 0


def test_a_catalogue_table_is_a_source(spark_engine: Any, store: DatasiteStore) -> None:
    spark = spark_engine.session()
    spark.catalog.createTable("wards_tbl", path=str(store.dataset("open-wards").path),
                              source="parquet")
    ds = _register(store, "wards-table", table_source("wards_tbl").to_json(), "open-wards")
    start = time.monotonic()
    assert spark_engine.count_by(ds, ["flag"])[1] == _truth_counts(
        store.dataset("open-wards"), ["flag"])
    assert time.monotonic() - start < 30


# -- a real `ndl datasite --spark-master spark://...` behind a real hub ------------------------

def test_a_spark_datasite_answers_through_the_hub(spark_cluster: Any,
                                                  tmp_path: Path) -> None:
    from ndl.client import Client
    from ndl.testing import DatasiteProcess, HubProcess, granted_project

    generate_demo_data(tmp_path / "demo", people=600, seed=7)
    site = tmp_path / "demo" / "nhs-trust"
    shutil.rmtree(site / "datasets" / "patients")  # one safeguarded dataset is enough here
    write_dataset(site, "open-wards", _open_table(), tier="open")
    assert ndl("publish-source", "--dir", site, "--dataset", "wards-lake", "--parquet",
               _warehouse(tmp_path), "--tier", "open", "--publisher", "NHS")[0] == 0
    hub = HubProcess(tmp_path / "hub")
    hub.create_org("nhs-trust", "NHS", "nhs")
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    token = hub.create_user("alice", ["researcher"], accredited=True)
    # One executor: the test process's own driver holds one on each worker meanwhile.
    env = {"NDL_SPARK_MASTER": spark_cluster.master_url, **spark_cluster.env(max_cores=1)}
    with hub, DatasiteProcess(site, hub.url, org="nhs-trust", token=steward, poll_wait=2,
                              env=env) as datasite:
        project = granted_project(hub.url, token, ["nhs-trust/ae-attendances"])
        with Client(hub.url, token) as c:
            started = time.monotonic()
            ans = c.query("nhs-trust/open-wards", count_by="region")
            count_seconds = time.monotonic() - started
            lake = c.query("nhs-trust/wards-lake", count_by="region")
            sql = c.sql("nhs-trust/open-wards", "SELECT count(*) AS n FROM data WHERE flag")
            private = c.private_query("nhs-trust/ae-attendances", project=project,
                                      sql="SELECT COUNT(*) AS n FROM data GROUP BY region",
                                      rho=0.25)
        log = datasite.log()
    assert ans.rows == _truth_counts(DatasiteStore(site).dataset("open-wards"), ["region"])
    assert lake.rows == ans.rows  # the same rows, read in place from the Parquet folder
    assert sql.rows == [[sum(1 for i in range(400) if i % 3 == 0)]]
    truth = Counter(pq.read_table(site / "datasets/ae-attendances/data.parquet",
                                  columns=["region"])["region"].to_pylist())
    rows = {r[0]: r[1] for r in private["rows"]}
    half = private["aggregates"][0]["half_width_95"]
    assert all(rows[k] is None or rows[k] <= n + 3 * half + 10 for k, n in truth.items())
    assert "Spark session on spark://" in log, log[-2000:]
    print(f"count through the hub on the Spark datasite: {count_seconds:.2f} s")

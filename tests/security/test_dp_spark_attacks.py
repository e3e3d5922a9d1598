"""Attacks on private queries computed in Spark (``ndl.privacy.dp_spark``).

* A person who floods the data (10,000 rows) moves every exact statistic by no more than the
  sensitivity the noise is calibrated to: ``k`` rows' worth.
* Rows whose group or category value is not in the published list (a look-alike, a value
  that sorts between public ones, a SQL fragment, null) change no released cell and never
  appear as a group, whichever of Spark's searches finds the public values.

Runs on a ``local[2]`` session; skips without Java or pyspark unless ``NDL_REQUIRE_SPARK=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.catalogue.metadata import DatasetMeta
from ndl.privacy import check_query, parse_query
from ndl.privacy.bounded import BoundedStats
from ndl.privacy.dp import plan_releases
from ndl.privacy.spec import Plan
from spark_local import local_spark

REGIONS = ["North", "South", "Wales"]  # 3 public values: the CASE tree
WARDS = [f"E05{i:06d}" for i in range(50)]  # 50 public values: Spark's aggregate() search
K = 3
META = DatasetMeta.model_validate({
    "name": "ae", "title": "A&E", "publisher": "Trust", "tier": "safeguarded",
    "columns": [
        {"name": "region", "type": "string", "code_list": [{"code": r} for r in REGIONS]},
        {"name": "ward", "type": "string", "public_key": True, "categories": WARDS},
        {"name": "cost", "type": "float", "minimum": 0, "maximum": 1000},
        {"name": "nhs_number", "type": "string", "join_key": "nhs_number"},
    ]})


def base_rows(n: int = 600) -> dict[str, list[Any]]:
    rng = np.random.default_rng(7)
    return {
        "region": [str(x) for x in rng.choice(REGIONS[:2], n)],
        "ward": [str(x) for x in rng.choice(WARDS, n)],
        "cost": [float(x) for x in rng.integers(0, 800, n)],
        "nhs_number": [f"p{i % 200}" for i in range(n)],
    }


def with_rows(rows: dict[str, list[Any]], extra: dict[str, list[Any]]) -> pa.Table:
    return pa.table({k: pa.array(v + extra[k], pa.float64() if k == "cost" else pa.string())
                     for k, v in rows.items()})


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with local_spark(tmp_path_factory.mktemp("spark")) as session:
        yield session


def frame(spark: Any, table: pa.Table, folder: Path, name: str) -> Any:
    pq.write_table(table, folder / f"{name}.parquet", row_group_size=2000)
    return spark.read.parquet(str(folder / f"{name}.parquet"))


def stats(df: Any, plan: Plan, seed: int = 0) -> BoundedStats:
    from ndl.privacy.dp_spark import spark_stats

    grids = [None if ar.quantile is None else ar.quantile.grid for ar in plan_releases(plan)]
    return spark_stats(df, plan, grids, seed=seed)


AGGS = [{"op": "count"}, {"op": "sum", "column": "cost"}, {"op": "mean", "column": "cost"},
        {"op": "histogram", "column": "ward"},
        {"op": "quantile", "column": "cost", "q": 0.5}]


def test_a_person_with_10000_rows_moves_each_statistic_by_at_most_k_rows(
        spark: Any, tmp_path: Path) -> None:
    rows = base_rows()
    n = 10_000
    flood = {"region": ["North"] * n, "ward": [WARDS[0]] * n, "cost": [1000.0] * n,
             "nhs_number": ["attacker"] * n}
    # And 10,000 rows with no identifier at all: they have no bound, so they count nowhere.
    anonymous = {"region": ["South"] * n, "ward": [WARDS[1]] * n, "cost": [999.0] * n,
                 "nhs_number": [None] * n}
    clean = frame(spark, with_rows(rows, {k: [] for k in rows}), tmp_path, "clean")
    flooded = frame(spark, with_rows(rows, {k: flood[k] + anonymous[k] for k in rows}),
                    tmp_path, "flooded")
    q = parse_query({"dataset": "ae", "aggregates": AGGS, "group_by": ["region"], "rho": 1,
                     "max_rows_per_person": K})
    plan = check_query(q, META)
    quantile = plan_releases(plan)[4].quantile
    assert quantile is not None
    before, after = stats(clean, plan), stats(flooded, plan)
    count, total, mean, hist, median = (
        (b, a) for b, a in zip(before.aggregates, after.aggregates, strict=True))
    # The bound holds, and it is used: the attacker's rows count k times, not 10,000.
    d = count[1].counts - count[0].counts  # type: ignore[operator]
    assert list(d) == [K, 0, 0]
    assert np.abs(total[1].sums - total[0].sums).max() <= K * 1000  # type: ignore[operator]
    assert np.abs(mean[1].counts - mean[0].counts).max() <= K  # type: ignore[operator]
    assert np.abs(mean[1].sums - mean[0].sums).max() <= K * 500  # type: ignore[operator]
    assert np.abs(hist[1].counts - hist[0].counts).sum() <= K  # type: ignore[operator]
    # A quantile's score moves by at most k rows' weight (OpenDP's sensitivity of it).
    moved = np.abs(median[1].scores - median[0].scores).max()  # type: ignore[operator]
    assert 0 < moved <= K * max(quantile.a, quantile.b)


@pytest.mark.parametrize("column", ["region", "ward"])
def test_values_outside_the_public_list_are_never_revealed(
        spark: Any, tmp_path: Path, column: str) -> None:
    rows = base_rows()
    public = REGIONS if column == "region" else WARDS
    secrets_ = ["Secret", "north", "North ", "Nort", "Northz", "E05000000 ", "E05000001x",
                "E0500000", "E05999999", "", "North' OR '1'='1", "Zzz", "A", None]
    n = len(secrets_) * 20
    extra = {"region": [REGIONS[0]] * n, "ward": [WARDS[0]] * n, "cost": [700.0] * n,
             "nhs_number": [f"s{i}" for i in range(n)]}
    extra[column] = secrets_ * 20
    clean = frame(spark, with_rows(rows, {k: [] for k in rows}), tmp_path, "clean")
    dirty = frame(spark, with_rows(rows, extra), tmp_path, "dirty")
    from ndl.privacy.dp_spark import run_spark

    # Grouped by the column; or a histogram over it, even where a filter lets the secret
    # rows through (a filter may name any value: what it selects is only ever counted with
    # noise, and here it reaches no cell at all).
    other = "ward" if column == "region" else "region"
    for q in [
        {"aggregates": [*AGGS[:3], {"op": "histogram", "column": other}],
         "group_by": [column]},
        {"aggregates": [{"op": "histogram", "column": column}],
         "where": [{"column": column, "op": "in", "value": [public[0], "Secret"]}]},
    ]:
        plan = check_query(parse_query({"dataset": "ae", "rho": 1, **q}), META)
        a, b = stats(clean, plan), stats(dirty, plan)
        for x, y in zip(a.aggregates, b.aggregates, strict=True):
            for name in ("counts", "sums", "scores"):
                u, v = getattr(x, name), getattr(y, name)
                assert (u is None and v is None) or np.array_equal(u, v), (q, x.op, name)
    res = run_spark(parse_query({"dataset": "ae", "rho": 1, "aggregates": [{"op": "count"}],
                                 "group_by": [column]}), dirty, META)
    assert [r[0] for r in res.rows] == public  # every public value, and only those


def test_a_filter_value_is_data_not_code(spark: Any, tmp_path: Path) -> None:
    """Filter values reach Spark as typed literals: quotes and SQL in them match nothing."""
    rows = base_rows()
    df = frame(spark, with_rows(rows, {k: [] for k in rows}), tmp_path, "plain")
    plan = check_query(parse_query({
        "dataset": "ae", "rho": 1, "aggregates": [{"op": "count"}],
        "where": [{"column": "region", "op": "=", "value": "North' OR '1'='1"}]}), META)
    counts = stats(df, plan).aggregates[0].counts
    assert counts is not None and list(counts) == [0]

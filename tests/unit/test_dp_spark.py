"""Private queries whose exact statistics Spark computes (``ndl.privacy.dp_spark``).

The statistics Spark computes must be the Arrow path's, vector for vector, wherever the
Arrow path's are not random (bounds aside, a person with more than ``k`` rows keeps a random
``k``): every Spark search strategy (CASE tree, evenly spaced guess, ``aggregate``), NaN,
nulls, empty groups and rows without an identifier. Runs on a ``local[2]`` session; skips
without Java or pyspark unless ``NDL_REQUIRE_SPARK=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InternalError
from ndl.privacy import SdcRules, check_query, parse_query, run
from ndl.privacy.bounded import BoundedStats, QuantileGrid, arrow_stats
from ndl.privacy.dp import plan_releases
from ndl.privacy.spec import Plan
from spark_local import local_spark

REGIONS = ["North", "South", "Wales"]  # Wales has no rows: an empty group
BANDS = [f"b{i:02d}" for i in range(40)]  # more than the CASE tree's 32: searched in Spark
UNEVEN = [0, 1, 3, 4, 6, 9, 10, 12, 15, 16, 18, 21, 22, 24, 27, 28, 30, 33, 34, 36, 39, 40,
          42, 45, 46, 48, 51, 52, 54, 57, 58, 60, 63, 64, 66, 69, 70, 72, 75, 99]


def make_meta(*, person: bool = True) -> DatasetMeta:
    cols: list[dict[str, Any]] = [
        {"name": "region", "type": "string", "code_list": [{"code": r} for r in REGIONS]},
        {"name": "band", "type": "string", "public_key": True, "categories": BANDS},
        {"name": "age", "type": "integer", "minimum": 0, "maximum": 110},
        {"name": "cost", "type": "float", "minimum": 0, "maximum": 1000},
        {"name": "urgent", "type": "boolean"},
        {"name": "arrived", "type": "date"},
    ]
    if person:
        cols.append({"name": "nhs_number", "type": "string", "join_key": "nhs_number"})
    return DatasetMeta.model_validate({"name": "ae", "title": "A&E", "publisher": "Trust",
                                       "tier": "safeguarded", "columns": cols})


META, ROW_META = make_meta(), make_meta(person=False)


def make_table(n: int = 3000, seed: int = 0) -> pa.Table:
    """People with 1..8 rows; null and unlisted regions and bands, null ids, null ages, NaN
    and null costs. Costs are quarters, so every float sum is exact in any order."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["North", "South", "Mars"], n).astype(object)
    region[rng.random(n) < 0.03] = None
    band = rng.choice([*BANDS, "b99"], n).astype(object)
    band[rng.random(n) < 0.02] = None
    age = rng.integers(0, 100, n).astype(object)
    age[rng.random(n) < 0.05] = None
    cost = (rng.integers(0, 1600, n) / 4.0).astype(object)
    cost[rng.random(n) < 0.04] = float("nan")
    cost[rng.random(n) < 0.04] = None
    # Some values sit exactly on candidates and bin edges.
    cost[:40] = [0.0, 100.0, 250.0, 399.75] * 10
    people = np.repeat(np.arange(n), rng.integers(1, 9, n))[:n]
    ids = np.array([f"943{p:07d}" for p in people], dtype=object)
    ids[rng.random(n) < 0.03] = None
    return pa.table({
        "region": pa.array(region, pa.string()), "band": pa.array(band, pa.string()),
        "age": pa.array(age, pa.int64()), "cost": pa.array(cost, pa.float64()),
        "urgent": pa.array(rng.random(n) < 0.3),
        "arrived": pa.array([date(2024, 1, 1) + timedelta(days=int(d))
                             for d in rng.integers(0, 366, n)], pa.date32()),
        "nhs_number": pa.array(ids, pa.string()),
    })


TABLE = make_table()


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with local_spark(tmp_path_factory.mktemp("spark")) as session:
        yield session


@pytest.fixture(scope="module")
def frame(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("data") / "ae.parquet"
    # Several row groups and files-worth of partitions, as a real scan would see.
    pq.write_table(TABLE, path, row_group_size=700)
    return spark.read.parquet(str(path))


def query(aggs: list[dict[str, Any]], *, rho: float = 1.0, **kw: Any) -> Any:
    return parse_query({"dataset": "ae", "aggregates": aggs, "rho": rho, **kw})


def grids(plan: Plan) -> list[QuantileGrid | None]:
    return [None if ar.quantile is None else ar.quantile.grid for ar in plan_releases(plan)]


def both(frame: Any, plan: Plan, seed: int = 0) -> tuple[BoundedStats, BoundedStats]:
    from ndl.privacy.dp_spark import spark_stats

    g = grids(plan)
    return (arrow_stats(TABLE, plan, g, np.random.default_rng(seed)),
            spark_stats(frame, plan, g, seed=seed))


def assert_equal(a: BoundedStats, b: BoundedStats) -> None:
    assert a.n_groups == b.n_groups and len(a.aggregates) == len(b.aggregates)
    for x, y in zip(a.aggregates, b.aggregates, strict=True):
        assert x.op == y.op
        for name in ("counts", "sums", "scores"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None) == (v is None), (x.op, name)
            if u is not None:
                assert u.shape == v.shape and np.array_equal(u, v), (x.op, name, u, v)


EVERY_KIND = [
    {"op": "count"},
    {"op": "sum", "column": "age"},
    {"op": "sum", "column": "cost"},
    {"op": "mean", "column": "cost"},
    {"op": "mean", "column": "age", "label": "mean_age"},
    {"op": "histogram", "column": "age", "bins": 10},  # 12 cells: the CASE tree
    {"op": "histogram", "column": "age", "bins": UNEVEN, "label": "uneven"},  # aggregate()
    {"op": "histogram", "column": "cost", "bins": 200, "label": "fine"},  # evenly spaced
    {"op": "histogram", "column": "band"},  # 40 public values: aggregate()
    {"op": "histogram", "column": "urgent"},
    {"op": "quantile", "column": "age", "q": 0.5},  # 111 integer candidates
    {"op": "quantile", "column": "cost", "q": 0.9},  # 1001 candidates
]


@pytest.mark.parametrize("meta", [META, ROW_META], ids=["person", "row"])
def test_exact_statistics_equal_arrows(frame: Any, meta: DatasetMeta) -> None:
    """k above everyone's row count and bounds that clip nothing: nothing random is left,
    so every vector must be the Arrow path's, exactly."""
    plan = check_query(query(EVERY_KIND, group_by=["region", "urgent"], max_rows_per_person=100,
                             where=[{"column": "arrived", "op": ">=", "value": "2024-02-01"}]),
                       meta)
    arrow, spark = both(frame, plan)
    assert_equal(arrow, spark)
    counts = spark.aggregates[0].counts
    assert counts is not None and counts.sum() > 1000
    assert list(counts[4:]) == [0, 0]  # Wales (both urgent values): empty groups stay zero


def test_clamped_statistics_by_a_large_public_key_equal_arrows(frame: Any) -> None:
    """Clamping and 40 public group values (searched by aggregate()) change nothing."""
    plan = check_query(query([{"op": "count"},
                              {"op": "sum", "column": "age", "bounds": [10, 60]},
                              {"op": "mean", "column": "cost", "bounds": [50, 300]}],
                             group_by=["band"], max_rows_per_person=100), META)
    arrow, spark = both(frame, plan)
    assert_equal(arrow, spark)
    sums = spark.aggregates[1].sums
    assert sums is not None and 0 < sums.max() <= 60 * 100


@pytest.mark.parametrize("where", [
    {"column": "cost", "op": ">", "value": 100},  # NaN > 100 is true in Spark, not here
    {"column": "cost", "op": ">=", "value": 0},
    {"column": "cost", "op": "!=", "value": 250},  # NaN != 250: kept, as in Arrow
    {"column": "age", "op": "<=", "value": 30},
    {"column": "age", "op": "in", "value": [1, 2, 3, 50]},
    {"column": "arrived", "op": "<", "value": "2024-06-01"},
    {"column": "region", "op": "=", "value": "North"},
    {"column": "region", "op": "in", "value": ["South", "Mars"]},
    {"column": "urgent", "op": "=", "value": True},
])
def test_filters_match_arrows(frame: Any, where: dict[str, Any]) -> None:
    plan = check_query(query([{"op": "count"}, {"op": "mean", "column": "cost"}],
                             group_by=["region"], where=[where], max_rows_per_person=100),
                       META)
    arrow, spark = both(frame, plan)
    assert_equal(arrow, spark)
    assert 0 < spark.aggregates[0].counts.sum() < TABLE.num_rows  # type: ignore[union-attr]


def test_each_person_keeps_at_most_k_rows(frame: Any) -> None:
    k = 2
    plan = check_query(query([{"op": "count"}, {"op": "mean", "column": "age"},
                              {"op": "histogram", "column": "urgent"}],
                             group_by=["region"], max_rows_per_person=k), META)
    from ndl.privacy.dp_spark import spark_stats

    stats = [spark_stats(frame, plan, grids(plan), seed=s) for s in (1, 1, 2, 3)]
    rows = TABLE.to_pylist()
    eligible = [r for r in rows if r["region"] in REGIONS and r["nhs_number"] is not None]
    per_person: dict[str, int] = {}
    for r in eligible:
        per_person[r["nhs_number"]] = per_person.get(r["nhs_number"], 0) + 1
    assert max(per_person.values()) > k  # the bound has work to do
    for st in stats:
        counts, means, hist = st.aggregates
        assert counts.counts is not None and means.counts is not None
        assert hist.counts is not None
        # Which rows are random; how many is not: min(rows, k) per person.
        assert counts.counts.sum() == sum(min(n, k) for n in per_person.values())
        for g, region in enumerate(REGIONS):
            people = {r["nhs_number"] for r in eligible if r["region"] == region}
            assert counts.counts[g] <= k * len(people)
        assert (means.counts <= counts.counts).all()
        assert (hist.counts.reshape(3, 2).sum(axis=1) == counts.counts).all()
    # The seed fixes which rows are kept; other seeds keep others.
    assert_equal(stats[0], stats[1])
    assert len({float(st.aggregates[1].sums.sum()) for st in stats[1:]}) > 1  # type: ignore[union-attr]


def test_empty_nan_null_and_missing_identifiers(spark: Any, tmp_path: Path) -> None:
    """Hand-counted: null ids are dropped, NaN and null values are not values."""
    from ndl.privacy.dp_spark import spark_stats

    t = pa.table({
        "region": ["North"] * 6 + ["South", None],
        "band": ["b00"] * 8, "age": pa.array([1, None, 3, 4, 5, 6, 7, 8], pa.int64()),
        "cost": pa.array([10.0, float("nan"), None, 40.0, 2000.0, 60.0, 70.0, 80.0]),
        "urgent": [True] * 8, "arrived": pa.array([date(2024, 1, 1)] * 8, pa.date32()),
        "nhs_number": ["a", "a", "b", None, "c", "c", None, "d"],
    })
    pq.write_table(t, tmp_path / "t.parquet")
    df = spark.read.parquet(str(tmp_path / "t.parquet"))
    plan = check_query(query([{"op": "count"}, {"op": "mean", "column": "cost"},
                              {"op": "sum", "column": "age"},
                              {"op": "quantile", "column": "age", "q": 0.5}],
                             group_by=["region"], max_rows_per_person=10), META)
    count, mean, total, median = spark_stats(df, plan, grids(plan), seed=0).aggregates
    assert count.counts is not None and mean.counts is not None and mean.sums is not None
    assert total.sums is not None and median.scores is not None
    # North keeps a, a, b, c, c (its id-less row is dropped); South's only row has no id.
    assert list(count.counts) == [5, 0, 0]
    assert list(mean.counts) == [3, 0, 0]  # 10, 2000 (clamped to 1000) and 60
    assert list(mean.sums) == [(10 - 500) + (1000 - 500) + (60 - 500), 0, 0]
    assert list(total.sums) == [1 + 3 + 5 + 6, 0, 0]
    assert (median.scores[1:] == 0).all() and median.scores[0].max() > 0  # empty groups: 0


def test_released_answers_within_their_stated_error(frame: Any) -> None:
    """Over three seeds, each released number within its 95% half-width (a quantile: its
    rank error) most of the time, and all within 2.5 times it (failure odds below ~1e-4)."""
    from ndl.privacy.dp_spark import run_spark

    q = query([{"op": "count"}, {"op": "sum", "column": "age"},
               {"op": "mean", "column": "cost"}, {"op": "quantile", "column": "age", "q": 0.5}],
              rho=2.0, group_by=["region"], max_rows_per_person=100)
    plan = check_query(q, META)
    exact = arrow_stats(TABLE, plan, grids(plan), np.random.default_rng(0))
    eligible = [r for r in TABLE.to_pylist() if r["nhs_number"] is not None]
    inside, checks = 0, 0
    for seed in (1, 2, 3):
        res = run_spark(q, frame, META, rng_seed=seed)
        assert res.rho_spent == pytest.approx(2.0) and res.columns[0] == "region"
        count, total, mean, median = res.aggregates
        for g, row in enumerate(res.rows[:2]):  # North and South; Wales is empty
            region, n, s, m, med = row
            costs = [min(max(r["cost"], 0), 1000) for r in eligible if r["region"] == region
                     and r["cost"] is not None and not np.isnan(r["cost"])]
            ages = sorted(r["age"] for r in eligible if r["region"] == region
                          and r["age"] is not None)
            rank = sum(a < med for a in ages), sum(a <= med for a in ages)
            target = 0.5 * len(ages)
            rank_off = max(rank[0] - target, target - rank[1], 0)
            hw_mean = mean.half_width_95[g]  # type: ignore[index]
            errors = [(abs(n - exact.aggregates[0].counts[g]), count.half_width_95),  # type: ignore[index]
                      (abs(s - exact.aggregates[1].sums[g]), total.half_width_95),  # type: ignore[index]
                      (abs(m - float(np.mean(costs))), hw_mean),
                      (rank_off, median.rank_error_95 + 1)]  # + the integer grid's spacing
            for err, hw in errors:
                assert isinstance(hw, float) and err <= 2.5 * hw, (region, err, hw)
                inside += err <= hw
                checks += 1
    assert inside >= checks - 6, f"{inside} of {checks} within the 95% half-width"


def test_spark_answer_has_the_arrow_answers_shape(frame: Any) -> None:
    from ndl.privacy.dp_spark import run_spark

    q = query([{"op": "count", "label": "n"}, {"op": "histogram", "column": "urgent"}],
              group_by=["region"], max_rows_per_person=3)
    sdc = SdcRules(round_to=5, suppress_below=20)
    timings: dict[str, float] = {}
    ours = run_spark(q, frame, META, sdc=sdc, timings=timings)
    theirs = run(q, TABLE, META, sdc=sdc)
    assert ours.columns == theirs.columns == ["region", "n", "urgent=False", "urgent=True"]
    assert [r[0] for r in ours.rows] == REGIONS
    assert ours.rho_spent == theirs.rho_spent and ours.privacy_unit == theirs.privacy_unit
    assert [a.noise_scale for a in ours.aggregates] == [a.noise_scale for a in theirs.aggregates]
    assert all(x is None or x % 5 == 0 for r in ours.rows for x in r[1:])  # SDC after DP
    assert ours.rows[2][1] is None  # Wales: empty, so suppressed (20 is 6.7 noise scales)
    assert set(timings) == {"plan", "scalar", "cells", "noise"}


def test_a_frame_that_does_not_fit_the_metadata_is_refused(frame: Any) -> None:
    from ndl.privacy.dp_spark import run_spark

    q = query([{"op": "mean", "column": "cost"}], group_by=["region"])
    with pytest.raises(InternalError, match="lacks columns its metadata lists: cost"):
        run_spark(q, frame.drop("cost"), META)
    with pytest.raises(InternalError, match="metadata says float"):
        run_spark(q, frame.withColumn("cost", frame["region"]), META)

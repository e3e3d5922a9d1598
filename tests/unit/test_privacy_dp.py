"""Private queries run with OpenDP: exact budgets, calibrated error, public groups, SDC after
DP and person-level contribution bounds. Noise cannot be seeded (OpenDP draws it from the OS),
so every statistical check has a failure probability below ~1e-5."""

from __future__ import annotations

import math
import time
from datetime import date, timedelta
from typing import Any

import numpy as np
import opendp.prelude as dp
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InternalError, InvalidInput
from ndl.privacy import DpResult, SdcRules, check_query, from_sql, parse_query, preview, run
from ndl.privacy.dp import bound_contributions, quantile_release

REGIONS = ["North", "South", "Wales"]


def make_meta(*, person: bool = False, cost_bounds: bool = True, **extra: Any
              ) -> DatasetMeta:
    cols: list[dict[str, Any]] = [
        {"name": "region", "type": "string", "code_list": [{"code": r} for r in REGIONS]},
        {"name": "age", "type": "integer", "minimum": 0, "maximum": 110},
        {"name": "cost", "type": "float", **({"minimum": 0, "maximum": 1000} if cost_bounds
                                             else {})},
        {"name": "arrived", "type": "date"},
    ]
    if person:
        cols.append({"name": "nhs_number", "type": "string", "join_key": "nhs_number"})
    return DatasetMeta.model_validate({"name": "ae", "title": "A&E", "publisher": "Trust",
                                       "tier": "safeguarded", "columns": cols, **extra})


META = make_meta()


def make_table(sizes: dict[str, int], seed: int = 0) -> pa.Table:
    """Rows per region (a region outside the code list included), ages 0..99, costs."""
    rng = np.random.default_rng(seed)
    region = [r for r, n in sizes.items() for _ in range(n)]
    n = len(region)
    return pa.table({
        "region": region,
        "age": rng.integers(0, 100, n),
        "cost": rng.uniform(0, 400, n),
        "arrived": [date(2024, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 365, n)],
    })


TABLE = make_table({"North": 600, "South": 300, "Mars": 50})


def q(aggs: list[dict[str, Any]], rho: float, **kw: Any) -> Any:
    return parse_query({"dataset": "ae", "aggregates": aggs, "rho": rho, **kw})


def col(res: DpResult, name: str) -> list[Any]:
    i = res.columns.index(name)
    return [row[i] for row in res.rows]


ALL_AGGS = [{"op": "count"}, {"op": "sum", "column": "age"}, {"op": "mean", "column": "cost"},
            {"op": "quantile", "column": "age", "q": 0.5},
            {"op": "histogram", "column": "age", "bins": 4}]


def test_budget_is_split_exactly_and_matches_opendp_maps() -> None:
    query = q(ALL_AGGS, 0.7, group_by=["region"])
    res = run(query, TABLE, META)
    assert res.rho_spent <= 0.7
    assert res.rho_spent == pytest.approx(0.7, rel=1e-12)
    assert [a.rho for a in res.aggregates] == pytest.approx([0.14] * 5, rel=1e-12)
    # Rebuild each measurement from the reported scales: OpenDP's own maps agree.
    count, total, mean, median, hist = res.aggregates
    ints = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64")
    floats = (dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float))
    assert dp.m.make_gaussian(*ints, scale=count.noise_scale).map(1) == count.rho
    assert dp.m.make_gaussian(*ints, scale=total.noise_scale).map(110) == total.rho
    assert isinstance(mean.noise_scale, list)
    s_n, s_s = mean.noise_scale
    assert (dp.m.make_gaussian(*ints, scale=s_n).map(1)
            + dp.m.make_gaussian(*floats, scale=s_s).map(500.0)) == pytest.approx(mean.rho)
    chain = quantile_release(1, 0.5, [float(a) for a in range(111)], 0.14)
    assert chain.release.scale == median.noise_scale and chain.release.spent == median.rho
    assert dp.m.make_gaussian(*ints, scale=hist.noise_scale).map(1) == hist.rho
    # The preview promises exactly what the run then spends.
    pv = preview(query, META)
    assert [a["noise_scale"] for a in pv["aggregates"]] == [a.noise_scale for a in res.aggregates]
    assert pv["rho_total"] == res.rho_spent


def test_large_rho_is_close_to_truth_and_every_public_group_is_released() -> None:
    res = run(q(ALL_AGGS, 100.0, group_by=["region"]), TABLE, META)
    assert col(res, "region") == REGIONS  # Wales has no rows; Mars is not a public group
    truth = {r: TABLE.filter(pc.equal(TABLE["region"], r)) for r in REGIONS}
    count, total, mean, _, hist = res.aggregates
    for i, r in enumerate(REGIONS):
        t = truth[r]
        assert abs(col(res, "count")[i] - t.num_rows) <= 3 * count.half_width_95
        assert abs(col(res, "sum(age)")[i] - (pc.sum(t["age"]).as_py() or 0)) \
            <= 3 * total.half_width_95
        ages = np.asarray(t["age"])
        bins = [int(((lo <= ages) & (ages < hi)).sum()) for lo, hi in
                [(0, 27.5), (27.5, 55), (55, 82.5), (82.5, 111)]]
        got = [res.rows[i][res.columns.index(c)] for c in res.columns if c.startswith("age ")]
        assert got[0] == 0 or got[0] <= 3 * hist.half_width_95  # below 0: empty
        assert all(abs(g - b) <= 3 * hist.half_width_95 for g, b in zip(got[1:5], bins,
                                                                        strict=True))
        if t.num_rows:
            mean_hw = mean.half_width_95[i]  # type: ignore[index]
            assert abs(col(res, "mean(cost)")[i] - pc.mean(t["cost"]).as_py()) <= 2.5 * mean_hw
            assert abs(col(res, "median(age)")[i] - float(np.median(ages))) <= 2
        else:
            assert col(res, "count")[i] <= 3 * count.half_width_95
    assert count.half_width_95 <= 2 and mean.half_width_95[0] < 1.0  # type: ignore[index]


def test_small_rho_is_noisy_at_the_stated_scale() -> None:
    rng = np.random.default_rng(1)
    t = pa.table({"region": ["North"] * 200_000, "age": rng.integers(0, 100, 200_000),
                  "cost": np.zeros(200_000), "arrived": pa.nulls(200_000, pa.date32())})
    res = run(q([{"op": "histogram", "column": "age", "bins": [float(a) for a in range(101)]}],
                1e-4), t, META)
    truth = np.bincount(np.asarray(t["age"]), minlength=100)
    errors = np.array(res.rows[0][1:101], dtype=float) - truth
    sigma = res.aggregates[0].noise_scale
    assert sigma == pytest.approx(1 / math.sqrt(2e-4), rel=1e-6)
    # 100 independent errors: their spread is within 5 standard errors of sigma.
    assert 0.64 * sigma < errors.std() < 1.36 * sigma


def test_filters_select_rows() -> None:
    res = run(q([{"op": "count"}], 100.0, group_by=["region"],
                where=[{"column": "age", "op": ">=", "value": 50},
                       {"column": "arrived", "op": "<", "value": "2024-07-01"},
                       {"column": "region", "op": "in", "value": ["North", "Wales"]}]),
              TABLE, META)
    ok = pc.and_(pc.and_(pc.greater_equal(TABLE["age"], 50),
                         pc.less(TABLE["arrived"], pa.scalar(date(2024, 7, 1)))),
                 pc.is_in(TABLE["region"], pa.array(["North", "Wales"])))
    kept = TABLE.filter(ok)
    for i, r in enumerate(REGIONS):
        assert abs(col(res, "count")[i]
                   - pc.sum(pc.equal(kept["region"], r)).as_py()) <= 2


def test_sdc_rounds_and_suppresses_after_dp() -> None:
    t = make_table({"North": 600, "South": 3})
    res = run(q([{"op": "count"}, {"op": "mean", "column": "cost"},
                 {"op": "histogram", "column": "region"}], 100.0, group_by=["region"]),
              t, META, sdc=SdcRules(round_to=5, suppress_below=10))
    counts = col(res, "count")
    assert counts[0] % 5 == 0 and abs(counts[0] - 600) <= 5
    assert counts[1] is None and counts[2] is None  # 3 rows and 0 rows: suppressed
    means = col(res, "mean(cost)")
    assert means[0] is not None and means[1] is None and means[2] is None
    cells = [v for row in res.rows for v in row[3:]]
    assert all(v is None or v % 5 == 0 for v in cells)
    # Wales's mean was None before SDC (no rows to average), so it is not counted.
    assert res.suppressed == 3 + sum(v is None for v in cells)
    raw = run(q([{"op": "count"}], 100.0, group_by=["region"]), t, META)
    assert col(raw, "count")[1] is not None and raw.suppressed == 0


def _heavy_table() -> pa.Table:
    ids = ["P-heavy"] * 1000 + [f"P{i}" for i in range(200)] + [None] * 7
    cost = [1000.0] * 1000 + [1.0] * 200 + [1000.0] * 7
    n = len(ids)
    return pa.table({"region": ["North"] * n, "age": [40] * n, "cost": cost,
                     "arrived": pa.nulls(n, pa.date32()), "nhs_number": ids})


def test_person_level_bounds_a_heavy_persons_influence() -> None:
    t = _heavy_table()
    query = q([{"op": "count"}, {"op": "sum", "column": "cost"}], 100.0,
              max_rows_per_person=5)
    person = run(query, t, make_meta(person=True), rng_seed=3)
    assert person.privacy_unit.startswith("person") and person.max_rows_per_person == 5
    count, total = person.rows[0]
    # 200 people with one row + the heavy person's 5; rows with no NHS number are dropped.
    assert abs(count - 205) <= 3 * person.aggregates[0].half_width_95
    assert abs(total - 5200) <= 3 * person.aggregates[1].half_width_95
    assert person.aggregates[1].sensitivity.startswith("L2 = 5 x")
    rows = run(query, t, META)  # the same rows with no identifier: one row, one unit
    assert rows.rows[0][0] > 1100 and rows.rows[0][1] > 900_000


@pytest.mark.parametrize("ids", [
    pa.chunked_array([["a"] * 50 + ["b", "c", None, "a"]]),
    pa.chunked_array([[7] * 50, [8, 9, None, 7]]),
])
def test_bounding_keeps_k_random_rows_per_person(ids: pa.ChunkedArray) -> None:
    rows = np.arange(len(ids))
    kept = bound_contributions(ids, rows, 3, np.random.default_rng(0))
    vals = ids.to_pylist()
    per = {v: sum(vals[i] == v for i in kept) for v in set(vals) - {None}}
    assert sorted(per.values()) == [1, 1, 3] and 52 not in kept  # the null id is dropped
    again = bound_contributions(ids, rows, 3, np.random.default_rng(0))
    assert list(kept) == list(again)  # the seed fixes which rows are kept
    picks = {tuple(bound_contributions(ids, rows, 3, np.random.default_rng(s)))
             for s in range(10)}
    assert len(picks) > 5  # ... and different seeds keep different rows


@pytest.mark.parametrize("alpha", [0.5, 0.9, 0.25, 0.3])
def test_quantile_scores_equal_opendps(alpha: float) -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.integers(-5, 30, 300).astype(float), [2.0] * 20])
    cands = [float(c) for c in range(0, 26, 2)]
    qr = quantile_release(1, alpha, cands, 0.1)
    ours = qr.scores(values, np.zeros(len(values), dtype=np.int64), 1)[0]
    score = dp.t.make_quantile_score_candidates(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance(), cands,
        alpha)
    assert list(ours) == score(list(values))


def test_preview_states_error_before_spending() -> None:
    query = q(ALL_AGGS, 0.5, group_by=["region"])
    pv = preview(query, META, n_estimate=400)
    count, total, mean, median, _ = pv["aggregates"]
    sigma = 1 / math.sqrt(2 * 0.1)
    assert count["noise_scale"] == pytest.approx(sigma, rel=1e-9)
    assert count["half_width_95"] == dp.discrete_gaussian_scale_to_accuracy(
        count["noise_scale"], 0.05)
    assert total["half_width_95"] == pytest.approx(110 * sigma * 1.96, rel=0.01)
    assert mean["half_width_95"] > 0 and "delta method" in mean["note"]
    assert "quantile level 0.5 +/-" in median["note"]
    assert preview(query, META)["aggregates"][2]["half_width_95"] is None  # needs n


def test_preview_interval_covers_the_truth_in_repeated_runs() -> None:
    """Calibration: the 95% half-widths shown before spending hold in practice."""
    t = make_table({"North": 500, "South": 500, "Wales": 500}, seed=5)
    query = from_sql("SELECT region, COUNT(*), SUM(age), AVG(cost), MEDIAN(age) FROM data "
                     "GROUP BY region", META, rho=0.02)
    pv = preview(query, META, n_estimate=500)
    half = [a["half_width_95"] for a in pv["aggregates"]]
    rank_r = 1 / math.sqrt(2 * 0.005) * math.log(111 / 0.05) / 2
    assert pv["aggregates"][3]["note"].count(f"{rank_r:.1f} rows")
    truths = []
    for r in REGIONS:
        g = t.filter(pc.equal(t["region"], r))
        truths.append((g.num_rows, pc.sum(g["age"]).as_py(), pc.mean(g["cost"]).as_py(),
                       np.sort(np.asarray(g["age"]))))
    hits = np.zeros(4)
    n_runs = 200
    for _ in range(n_runs):
        res = run(query, t, META)
        for row, (n, s, m, ages) in zip(res.rows, truths, strict=True):
            hits[0] += abs(row[1] - n) <= half[0]
            hits[1] += abs(row[2] - s) <= half[1]
            hits[2] += abs(row[3] - m) <= half[2]
            below = np.searchsorted(ages, row[4], "left")
            upto = np.searchsorted(ages, row[4], "right")
            hits[3] += below - rank_r <= n / 2 <= upto + rank_r
    coverage = hits / (n_runs * len(REGIONS))
    print(f"\ncoverage of the previewed 95% intervals (count, sum, mean, median rank): "
          f"{np.round(coverage, 3).tolist()}")
    assert (coverage >= 0.9).all()


def test_bad_input_is_refused_before_any_noise() -> None:
    with pytest.raises(InvalidInput, match="give bounds"):
        run(q([{"op": "sum", "column": "cost"}], 1.0), TABLE, make_meta(cost_bounds=False))
    with pytest.raises(InternalError, match="lacks columns"):
        run(q([{"op": "count"}], 1.0, where=[{"column": "arrived", "op": ">",
                                               "value": "2024-01-01"}]),
            TABLE.drop_columns(["arrived"]), META)
    # Only the columns a query reads need to be loaded.
    plan = check_query(q([{"op": "sum", "column": "cost"}], 1.0, group_by=["region"]),
                       make_meta(person=True))
    assert plan.columns == ["region", "cost", "nhs_number"]
    assert run(q([{"op": "count"}], 1.0), TABLE.select(["region"]), META).rows
    with pytest.raises(InternalError, match="holds string but its metadata says integer"):
        bad = TABLE.set_column(1, "age", pa.array(["x"] * TABLE.num_rows))
        run(q([{"op": "count"}], 1.0, where=[{"column": "age", "op": ">", "value": 3}]),
            bad, META)


def test_ten_million_rows_count_and_sum_by_region() -> None:
    """Speed is measured, not asserted (run with -s to see it)."""
    n = 10_000_000
    rng = np.random.default_rng(0)
    codes = pa.array(rng.integers(0, 3, n).astype(np.int32))
    region = pa.DictionaryArray.from_arrays(codes, pa.array(REGIONS)).cast(pa.string())
    t = pa.table({"region": region, "age": rng.integers(0, 100, n),
                  "cost": rng.gamma(2.0, 100.0, n), "arrived": pa.nulls(n, pa.date32())})
    query = from_sql("SELECT region, COUNT(*), SUM(cost) FROM data GROUP BY region", META,
                     rho=1.0)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        res = run(query, t, META)
        times.append(time.perf_counter() - start)
    ids = pc.cast(pa.array(rng.integers(0, 8_000_000, n)), pa.string())
    tp = t.append_column("nhs_number", ids)
    start = time.perf_counter()
    pres = run(query, tp, make_meta(person=True))
    person_s = time.perf_counter() - start
    print(f"\n10M rows, count+sum by region: row-level {min(times):.3f} s warm "
          f"(runs {', '.join(f'{x:.3f}' for x in times)}; the first pays for fresh memory); "
          f"person-level (8M string NHS numbers, at most 5 rows each) {person_s:.3f} s")
    assert abs(col(res, "count")[0] - n / 3) < 10_000
    assert abs(col(pres, "count")[0] - n / 3) < 10_000

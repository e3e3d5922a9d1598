"""Private queries whose exact statistics Spark computes; the noise is OpenDP's, as on Arrow.

Entry point for the datasite's Spark engine::

    run_spark(q, df, meta, *, sdc=None, max_rows_per_person=None, rng_seed=None,
              policy_bounds=None, timings=None) -> DpResult

It checks the query against the metadata (:func:`ndl.privacy.spec.check_query`), has Spark
filter, group, bound and clamp the rows of ``df`` and reduce them to the per-group vectors of
:class:`ndl.privacy.bounded.BoundedStats` (:func:`spark_stats`); only those small vectors reach
the driver, where :func:`ndl.privacy.dp.answer` adds the same OpenDP noise, and applies the
same SDC, as the Arrow path. The statistics are those of
:func:`ndl.privacy.bounded.arrow_stats`, row for row:

* **filters**: a null compares false. Spark orders NaN above every number (Arrow: NaN compares
  false), so every comparison but ``!=`` on a float column also requires ``NOT isnan``.
* **groups**: only the plan's public key values, found by a binary search written as nested
  ``CASE WHEN`` (log2 n comparisons a row, no join); other values and nulls are left out.
* **bounding**, after filters and groups as on Arrow: rows without an identifier are
  dropped, then each person keeps at most ``k`` rows, ``row_number() OVER (PARTITION BY
  person ORDER BY rand(seed)) <= k``. Which rows are kept is a different random choice from
  Arrow's; how many is the same.
* **values**: nulls and NaN are left out; values are cast to double and clamped with
  ``least(greatest(x, lo), hi)``. Sums are float64 as on Arrow, added in Spark's order: a
  float sum can differ from numpy's in its last bits, whole-number sums are equal.
* **histograms and quantiles**: each row's cell, or its place among the quantile's
  candidates (how many lie below it, and whether it equals the next), is computed in Spark
  and only the counts per group and cell come back; the scores are made from those counts
  (:meth:`ndl.privacy.bounded.QuantileGrid.scores`), so no value leaves Spark.

When one query needs both a per-group pass (counts, sums, means) and a per-cell pass
(histograms, quantiles) and rows are bounded per person, the bounded rows are persisted in
between, so that both passes see the same random choice of rows.

``timings``, when given, receives seconds per phase (``plan``: building the query;
``scalar`` / ``cells``: each Spark job, scan to collect; ``noise``: OpenDP and SDC).
"""

from __future__ import annotations

import operator
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, Literal

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InternalError, InvalidInput
from ndl.privacy.bounded import AggStats, BoundedStats, QuantileGrid
from ndl.privacy.dp import answer
from ndl.privacy.spec import AggPlan, DpResult, Filter, Plan, PrivateQuery, SdcRules, check_query

# Internal column names; a dataset's own columns are selected away before these are added.
_G, _PERSON, _ROW = "__ndl_group", "__ndl_person", "__ndl_row"
_AGG, _CELL = "__ndl_agg", "__ndl_cell"


def run_spark(q: PrivateQuery, df: DataFrame, meta: DatasetMeta, *,
              sdc: SdcRules | None = None, max_rows_per_person: int | None = None,
              rng_seed: int | None = None,
              policy_bounds: dict[str, tuple[float, float]] | None = None,
              timings: dict[str, float] | None = None) -> DpResult:
    """Answer the query on ``df`` with zCDP noise, the statistics computed in Spark.

    ``max_rows_per_person`` is the policy's default bound (see :func:`check_query`);
    ``rng_seed`` fixes which of a person's rows are kept (a fresh random seed by default),
    never the noise.
    """
    plan = check_query(q, meta, policy_bounds, max_rows_per_person=max_rows_per_person)
    check_frame(df, meta, plan)
    seed = secrets.randbits(63) if rng_seed is None else rng_seed
    t0 = time.perf_counter()
    stats_s = 0.0

    def stats(p: Plan, grids: Sequence[QuantileGrid | None]) -> BoundedStats:
        nonlocal stats_s
        t = time.perf_counter()
        out = spark_stats(df, p, grids, seed=seed, timings=timings)
        stats_s = time.perf_counter() - t
        return out

    result = answer(plan, stats, sdc=sdc)
    if timings is not None:
        timings["noise"] = time.perf_counter() - t0 - stats_s
    return result


def spark_stats(df: DataFrame, plan: Plan, grids: Sequence[QuantileGrid | None], *,
                seed: int, timings: dict[str, float] | None = None) -> BoundedStats:
    """The plan's exact statistics, computed in Spark (see the module's docstring)."""
    t = time.perf_counter()
    rows = bounded_frame(df, plan, seed=seed)
    G = plan.n_groups
    scalar = [j for j, a in enumerate(plan.aggregates) if a.op in ("count", "sum", "mean")]
    cells = [j for j, a in enumerate(plan.aggregates) if a.op in ("histogram", "quantile")]
    persist = bool(scalar and cells and plan.person_column)
    if persist:
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    found: dict[int, AggStats] = {}
    times = timings if timings is not None else {}
    times["plan"] = time.perf_counter() - t
    try:
        if scalar:
            t = time.perf_counter()
            found.update(_scalar_pass(rows, plan, scalar, G))
            times["scalar"] = time.perf_counter() - t
        if cells:
            t = time.perf_counter()
            found.update(_cell_pass(rows, plan, grids, cells, G))
            times["cells"] = time.perf_counter() - t
    finally:
        if persist:
            rows.unpersist()
    return BoundedStats(G, tuple(found[j] for j in range(len(plan.aggregates))))


def bounded_frame(df: DataFrame, plan: Plan, *, seed: int) -> DataFrame:
    """The rows the statistics are made of: filtered, with their group index (``__ndl_group``,
    public values only), at most ``k`` random rows per person; the aggregates' columns."""
    schema = {f.name: f.dataType for f in df.schema.fields}
    out = df
    for f in plan.filters:
        out = out.where(_filter(f, schema[f.column]))
    group: Column = F.lit(0)
    for i, g in enumerate(plan.groups):
        idx = _index_in(_col(g.name), g.values, schema[g.name])
        group = idx if i == 0 else group * F.lit(len(g.values)) + idx
    measured = list(dict.fromkeys(a.column for a in plan.aggregates if a.column))
    keep = [_col(c) for c in measured]
    if plan.person_column is not None:
        keep.append(_col(plan.person_column).alias(_PERSON))
    out = out.select(group.alias(_G), *keep).where(F.col(_G).isNotNull())
    if plan.person_column is None:
        return out
    person = F.col(_PERSON)
    order = Window.partitionBy(person).orderBy(F.rand(seed))
    return (out.where(person.isNotNull())
            .withColumn(_ROW, F.row_number().over(order))
            .where(F.col(_ROW) <= F.lit(plan.k))
            .drop(_ROW, _PERSON))


def check_frame(df: DataFrame, meta: DatasetMeta, plan: Plan) -> None:
    """The DataFrame holds the plan's columns with the types the metadata says."""
    schema = {f.name: f.dataType for f in df.schema.fields}
    missing = [c for c in plan.columns if c not in schema]
    if missing:
        raise InternalError(f"the data of {meta.name} lacks columns its metadata lists: "
                            f"{', '.join(missing)}; republish the dataset")
    for name in plan.columns:
        col = meta.column(name)
        if col is not None and not _KINDS[col.type](schema[name]):
            raise InternalError(f"column {name!r} of {meta.name} holds {schema[name]} but its "
                                f"metadata says {col.type}; fix the metadata and republish")


_FLOATS = (T.FloatType, T.DoubleType)
_KINDS: dict[str, Callable[[T.DataType], bool]] = {
    "integer": lambda t: isinstance(t, T.IntegralType),
    "float": lambda t: isinstance(t, (*_FLOATS, T.IntegralType)),
    "string": lambda t: isinstance(t, T.StringType | T.VarcharType | T.CharType),
    "boolean": lambda t: isinstance(t, T.BooleanType),
    "date": lambda t: isinstance(t, T.DateType),
}


# --- expressions ------------------------------------------------------------------------------


def _col(name: str) -> Column:
    return F.col("`" + name.replace("`", "``") + "`")


def _python(v: Any, typ: T.DataType) -> Any:
    """``v`` as the Python value of a column of type ``typ`` (as Arrow's cast would make it)."""
    number = not isinstance(v, bool) and isinstance(v, int | float)
    if isinstance(typ, T.DateType) and isinstance(v, str):
        try:
            return date.fromisoformat(v)
        except ValueError:
            pass
    elif isinstance(typ, T.DateType) and isinstance(v, date):
        return v
    elif isinstance(typ, T.IntegralType) and number and float(v).is_integer():
        return int(v)
    elif isinstance(typ, _FLOATS) and number:
        return float(v)
    elif isinstance(typ, T.BooleanType) and isinstance(v, bool):
        return v
    elif isinstance(typ, T.StringType) and isinstance(v, str):
        return v
    raise InvalidInput(f"{v!r} cannot be compared with a column of type {typ.simpleString()}")


def _literal(v: Any, typ: T.DataType) -> Column:
    return F.lit(_python(v, typ)).cast(typ)


_COMPARE: dict[str, Callable[[Column, Column], Column]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


def _filter(f: Filter, typ: T.DataType) -> Column:
    c = _col(f.column)
    if f.op == "in":
        assert isinstance(f.value, list)
        cond = c.isin([_literal(v, typ) for v in f.value])
    else:
        cond = _COMPARE[f.op](c, _literal(f.value, typ))
    if isinstance(typ, _FLOATS) and f.op != "!=":
        cond = cond & ~F.isnan(c)  # NaN > x is true in Spark, false in Arrow and IEEE
    return cond


# Keys searched by nested CASE WHENs (codegen'd, log2 n comparisons a row). Far more and
# Spark's generated method outgrows the JVM's 64 KB limit (at ~1000 keys it falls back to
# slow interpreted code, logging a compile error).
_TREE_MAX = 32
_WINDOW = 5  # keys compared around an evenly spaced grid's arithmetic guess


def _search(v: Column, keys: Sequence[Any], typ: T.DataType, side: Literal["left", "right"],
            finish: Callable[[Column, Column], Column]) -> Column:
    """``finish(i, keys)``, ``i`` being how many of the ascending ``keys`` lie below ``v``
    (``left``: strictly, ``right``: at or below; numpy's ``searchsorted`` sides) and ``keys``
    them as an array literal (see :func:`_key`). Exact, whichever way it is found:

    * up to :data:`_TREE_MAX` keys, a binary search of nested CASE WHENs;
    * evenly spaced numbers (a quantile's candidates, equal-width bins), an arithmetic guess
      then :data:`_WINDOW` comparisons around it, the guess checked on the driver to be
      close enough for every key (:func:`_evenly_spaced`);
    * otherwise, a binary search in Spark's ``aggregate`` over the array (interpreted: about
      1.7 us a row on one core, so only where the other two do not apply).

    Callers guard nulls and NaN: ``v`` must be a value.
    """
    m = len(keys)
    arr = F.lit(list(keys)).cast(T.ArrayType(typ))

    def below(k: Column) -> Column:
        return k < v if side == "left" else k <= v

    if m <= _TREE_MAX:
        lits = [_literal(k, typ) for k in keys]

        def node(lo: int, hi: int) -> Column:  # the answer lies in lo..hi
            if lo == hi:
                return finish(F.lit(lo), arr)
            mid = (lo + hi) // 2
            return F.when(below(lits[mid]), node(mid + 1, hi)).otherwise(node(lo, mid))

        return node(0, m)
    if isinstance(typ, T.DoubleType) and _evenly_spaced(keys):
        c0, step = float(keys[0]), (float(keys[-1]) - float(keys[0])) / (m - 1)
        t = F.least(F.greatest((v - F.lit(c0)) / F.lit(step), F.lit(-3.0)), F.lit(m + 3.0))
        base = F.least(F.greatest(F.floor(t).cast("int") - 2, F.lit(0)), F.lit(m))
        # Every key before ``base`` is below v, every key from base + _WINDOW on is not.
        i = base
        for d in range(_WINDOW):
            i = i + F.when(below(_key(arr, base + d)), 1).otherwise(0)
        return finish(i, arr)
    steps = [1 << b for b in range(m.bit_length() - 1, -1, -1)]

    def merge(lo: Column, s: Column) -> Column:
        return lo + F.when((lo + s <= m) & below(_key(arr, lo + s - 1)), s).otherwise(0)

    return F.aggregate(F.lit(steps), F.lit(0), merge, lambda i: finish(i, arr))


def _key(arr: Column, i: Column) -> Column:
    """The ``i``-th (from 0) element of an array, null past its end."""
    return F.try_element_at(arr, i + 1)


def _evenly_spaced(keys: Sequence[Any]) -> bool:
    """Whether guessing a value's place as ``floor((v - k0) / step)`` is never more than a
    key or two off: checked at every key, the guess being monotonic in ``v``."""
    c = np.asarray(keys, dtype=np.float64)
    m = len(c)
    if m < 2 or not np.all(np.diff(c) > 0):
        return False
    step = (c[-1] - c[0]) / (m - 1)
    off = np.floor((c - c[0]) / step) - np.arange(m)
    return bool(step > 0 and np.all((off >= -2) & (off <= 1)))


def _index_in(c: Column, values: Sequence[Any], typ: T.DataType) -> Column:
    """The index of ``c`` in ``values`` (its first), or null for a value not listed or null."""
    first: dict[Any, int] = {}
    for i, v in enumerate(values):
        first.setdefault(_python(v, typ), i)
    keys = sorted(first)
    index = F.lit([first[k] for k in keys])
    return F.when(c.isNotNull(), _search(
        c, keys, typ, "left",
        lambda i, arr: F.when(_key(arr, i) == c, _key(index, i))))


def _number(a: AggPlan) -> tuple[Column, Column]:
    """The aggregate's column as double, and whether a row has a value (neither null nor
    NaN)."""
    assert a.column is not None
    v = _col(a.column).cast("double")
    return v, v.isNotNull() & ~F.isnan(v)


def _cell(a: AggPlan, grid: QuantileGrid | None, typ: T.DataType) -> Column:
    """A histogram's cell for the row, or a quantile's code ``2 * below + tie``; null if none."""
    assert a.column is not None
    if a.op == "histogram" and a.categories is not None:
        return _index_in(_col(a.column), a.categories, typ)
    v, ok = _number(a)
    if a.op == "histogram":
        assert a.edges is not None
        n = len(a.edges)
        cell = _search(v, [float(e) for e in a.edges], T.DoubleType(), "right",
                       lambda i, arr: i)
        # The last bin is closed: its upper edge is in it, not above it.
        return F.when(ok, F.when(v == F.lit(float(a.edges[-1])), F.lit(n - 1)).otherwise(cell))
    assert grid is not None
    return F.when(ok, _search(v, list(grid.candidates), T.DoubleType(), "left",
                              lambda i, arr: 2 * i + F.when(_key(arr, i) == v, 1).otherwise(0)))


# --- the two passes ---------------------------------------------------------------------------


def _scalar_pass(rows: DataFrame, plan: Plan, which: list[int], G: int
                 ) -> dict[int, AggStats]:
    """Counts, sums and means: one aggregation by group."""
    exprs = [F.count(F.lit(1)).alias("n")]
    for j in which:
        a = plan.aggregates[j]
        if a.op == "count":
            continue
        assert a.bounds is not None
        lo, hi = a.bounds
        v, ok = _number(a)
        x = F.least(F.greatest(v, F.lit(float(lo))), F.lit(float(hi)))
        if a.op == "mean":
            x = x - F.lit((lo + hi) / 2)
        exprs += [F.count(F.when(ok, F.lit(1))).alias(f"c{j}"),
                  F.sum(F.when(ok, x)).alias(f"s{j}")]
    got = rows.groupBy(_G).agg(*exprs).collect()
    index = np.asarray([r[_G] for r in got], dtype=np.intp)

    def vector(name: str, dtype: type) -> np.ndarray:
        out: np.ndarray = np.zeros(G, dtype=dtype)
        out[index] = [r[name] or 0 for r in got]  # an empty sum is null in Spark
        return out

    found: dict[int, AggStats] = {}
    for j in which:
        a = plan.aggregates[j]
        if a.op == "count":
            found[j] = AggStats("count", counts=vector("n", np.int64))
        elif a.op == "sum":
            s = vector(f"s{j}", np.float64)
            found[j] = AggStats("sum", sums=np.rint(s) if a.integer else s)
        else:
            found[j] = AggStats("mean", counts=vector(f"c{j}", np.int64),
                                sums=vector(f"s{j}", np.float64))
    return found


def _cell_pass(rows: DataFrame, plan: Plan, grids: Sequence[QuantileGrid | None],
               which: list[int], G: int) -> dict[int, AggStats]:
    """Histograms and quantiles: one aggregation by (group, aggregate, cell), each row
    exploded into one cell per aggregate."""
    schema = {f.name: f.dataType for f in rows.schema.fields}
    cells = [(j, _cell(plan.aggregates[j], grids[j], schema[plan.aggregates[j].column or ""]))
             for j in which]
    if len(cells) == 1:
        j, c = cells[0]
        tagged = rows.select(F.col(_G), F.lit(j).alias(_AGG), c.alias(_CELL))
    else:
        packed = F.array(*[F.struct(F.lit(j).alias(_AGG), c.alias(_CELL)) for j, c in cells])
        tagged = rows.select(F.col(_G), F.inline(packed))
    got = (tagged.where(F.col(_CELL).isNotNull()).groupBy(_G, _AGG, _CELL).count()
           .collect())
    found: dict[int, AggStats] = {}
    for j in which:
        a, grid = plan.aggregates[j], grids[j]
        mine = [(r[_G], r[_CELL], r["count"]) for r in got if r[_AGG] == j]
        g = np.asarray([x[0] for x in mine], dtype=np.intp)
        cell = np.asarray([x[1] for x in mine], dtype=np.intp)
        n = np.asarray([x[2] for x in mine], dtype=np.int64)
        if a.op == "histogram":
            width = len(a.cell_labels)
            counts = np.zeros(G * width, dtype=np.int64)
            np.add.at(counts, g * width + cell, n)
            found[j] = AggStats("histogram", counts=counts)
            continue
        assert grid is not None
        m = len(grid.candidates)
        first = np.zeros((G, m + 1), dtype=np.int64)
        ties = np.zeros((G, m), dtype=np.int64)
        np.add.at(first, (g, cell // 2), n)
        tie = cell % 2 == 1
        np.add.at(ties, (g[tie], cell[tie] // 2), n[tie])
        found[j] = AggStats("quantile", scores=grid.scores(first, ties))
    return found

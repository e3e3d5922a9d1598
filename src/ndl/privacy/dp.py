"""Run a checked private query at the datasite with OpenDP under zCDP, and preview its error.

Rows are filtered, grouped, bounded and clamped with pyarrow / numpy (vectorised: a count and
sum by region over 10M rows takes ~0.25 s warm on 2 cores); OpenDP then adds the noise to the
aggregated vectors and states, through each measurement's privacy map, the rho it spends.
Under zCDP rho composes additively (Bun & Steinke 2016, Lemma 2.3): the query's rho is split
equally between its aggregates (a mean halves its share between a count and a sum), and the
maps add up to the query's rho.

Neighbouring datasets differ by one privacy unit (see :mod:`ndl.privacy.spec`): a row, or a
person after each person is cut to at most ``k`` rows (those kept are chosen at random per
person; rows with no identifier are dropped). With ``k = 1`` for row-level data, and clamping
bounds ``[lo, hi]``, ``M = max(|lo|, |hi|)``:

========== ============================================== ===================================
aggregate  mechanism (OpenDP)                             sensitivity
========== ============================================== ===================================
count      discrete Gaussian on the per-group counts       L2 = k
           (``make_gaussian``, integers)
sum        Gaussian on per-group clamped sums (discrete    L2 = k * M
           for integer columns, continuous for floats)
mean       count of non-null values (discrete, L2 = k)     L2 = k * (hi - lo) / 2 for the
           and sum of ``clamp(x) - mid`` (continuous);     centred sum; mean =
           half the share each                             mid + sum / count, within [lo, hi]
quantile   Smith's score over candidates on the bounds     score L-inf = k * D * max(q, 1-q)
           (``make_quantile_score_candidates``' score)     (OpenDP's own ``map``)
           then report-noisy-max (``make_noisy_max``,
           Gumbel, zCDP)
histogram  discrete Gaussian on per-group bin counts       L2 = k (each row in one cell)
========== ============================================== ===================================

Each group's key values are public, every group is released (empty ones as 0 + noise), and
all group vectors of one aggregate form one vector to one measurement. Noise is drawn by
OpenDP from the operating system's CSPRNG and cannot be seeded; ``rng_seed`` only fixes
which of a person's rows are kept. Float sums are computed in float64: the rounding error of
summation (at most ~1e-16 of the sum per row) is not added to the sensitivity.

Accuracy (95%): counts, sums and histograms use OpenDP's ``*_scale_to_accuracy``. A mean's
error is approximated by the delta method, ``sqrt(s_sum^2 + ((hi-lo)/2)^2 s_count^2) / n``
(worst case over where the mean lies), with ``n`` the noisy count at run time or the user's
estimate in a preview. A quantile's error is stated in rank: with 95% probability the
released candidate's score is within ``scale * ln(m / 0.05)`` of the best candidate's, so
at most that many rows (divided by ``D``) away from the q-th row beyond the candidate grid's
own spacing; the value error then depends on the data and is not stated. Every interval is
for the noise alone: the bias from clamping to the bounds or from rows dropped by the
person-level bound is not in it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import numpy as np
import opendp.prelude as dp
import pyarrow as pa
import pyarrow.compute as pc

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InternalError, InvalidInput
from ndl.privacy.sdc import round_count
from ndl.privacy.spec import (
    QUANTILE_CANDIDATES,
    AggPlan,
    AggregateReport,
    DpResult,
    Filter,
    Plan,
    PrivateQuery,
    SdcRules,
    check_query,
)

dp.enable_features("contrib")

ALPHA = 0.05
_ZCDP = dp.zero_concentrated_divergence()


# --- OpenDP measurements ------------------------------------------------------------------


@dataclass
class Release:
    """One OpenDP measurement over an aggregated vector, with the rho its map reports."""

    meas: dp.Measurement
    scale: float
    d_in: Any
    spent: float
    mechanism: str
    discrete: bool = False


def _fit(build: Callable[[float], dp.Measurement], scale: float, d_in: Any, rho: float
         ) -> tuple[dp.Measurement, float]:
    """The measurement at ``scale``, widened if OpenDP's (rounded-up) map exceeds ``rho``."""
    s = scale
    for j in range(48):  # widen by 1, 2, 4, ... ulps: spend as close to rho as OpenDP allows
        meas = build(s)
        if meas.map(d_in) <= rho:
            return meas, s
        s = scale * (1 + 2.0 ** (j - 52))
    scale = dp.binary_search_param(build, d_in=d_in, d_out=rho)
    return build(scale), scale


def gaussian_release(d_in: float, rho: float, *, integer: bool) -> Release:
    """Gaussian noise on a vector of L2 sensitivity ``d_in``: discrete for integers."""
    if integer:
        d: Any = int(d_in)
        space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64")
        name = "discrete Gaussian (OpenDP make_gaussian, i64)"
    else:
        d = float(d_in)
        space = (dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                 dp.l2_distance(T=float))
        name = "Gaussian (OpenDP make_gaussian, f64)"
    meas, scale = _fit(lambda s: dp.m.make_gaussian(*space, scale=s), d / math.sqrt(2 * rho),
                       d, rho)
    return Release(meas, scale, d, float(meas.map(d)), name, integer)


@dataclass
class QuantileRelease:
    release: Release
    candidates: list[float]
    a: int  # OpenDP's integer score weight of a row above a candidate (D * q)
    b: int  # ... and of a row below it (D * (1 - q))

    def scores(self, values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """OpenDP's quantile scores |b * #below - a * #above| per group and candidate."""
        c = np.asarray(self.candidates)
        m = len(c)
        i = np.searchsorted(c, values, side="left")
        eq = (i < m) & (c[np.minimum(i, m - 1)] == values)
        first = np.bincount(groups * (m + 1) + i, minlength=n_groups * (m + 1))
        first = first.reshape(n_groups, m + 1)[:, :m]
        ties = np.bincount(groups[eq] * m + i[eq], minlength=n_groups * m).reshape(n_groups, m)
        n = np.bincount(groups, minlength=n_groups)[:, None]
        below = np.cumsum(first, axis=1) - ties
        above = n - below - ties
        scores: np.ndarray = np.abs(self.b * below - self.a * above).astype(np.int64)
        return scores

    def select(self, scores: np.ndarray) -> list[float]:
        """Report-noisy-max (smallest score) in each group's row of scores."""
        pick = dp.m.make_noisy_max(dp.vector_domain(dp.atom_domain(T="u64")),
                                   dp.linf_distance(T="u64"), _ZCDP,
                                   scale=self.release.scale, negate=True)
        return [self.candidates[pick([int(s) for s in row])] for row in scores]

    @property
    def rank_half_width(self) -> float:
        """Rows between the released candidate and the q-th row, with 95% probability."""
        m = len(self.candidates)
        return self.release.scale * math.log(m / ALPHA) / (self.a + self.b)


def candidates_for(bounds: tuple[float, float], integer: bool) -> list[float]:
    lo, hi = bounds
    if integer and hi - lo + 1 <= QUANTILE_CANDIDATES:
        return [float(v) for v in range(int(lo), int(hi) + 1)]
    return [float(v) for v in np.linspace(lo, hi, QUANTILE_CANDIDATES)]


def quantile_release(k: int, q: float, candidates: list[float], rho: float) -> QuantileRelease:
    """Score transformation >> noisy max, with rho from OpenDP's map of the chain."""
    score = dp.t.make_quantile_score_candidates(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance(),
        candidates, q)

    def build(s: float) -> dp.Measurement:
        chain: dp.Measurement = score >> dp.m.then_noisy_max(_ZCDP, scale=s, negate=True)
        return chain

    meas, scale = _fit(build, float(score.map(k)) / math.sqrt(2 * rho), k, rho)
    # Score weights, read off OpenDP's transformation: one row above / below every candidate.
    a = int(score([candidates[-1] + 1.0])[0])
    b = int(score([candidates[0] - 1.0])[0])
    rel = Release(meas, scale, k, float(meas.map(k)),
                  "report-noisy-max over quantile scores (OpenDP make_quantile_score_"
                  "candidates >> make_noisy_max, Gumbel, zCDP)")
    return QuantileRelease(rel, candidates, a, b)


# --- planning the releases ------------------------------------------------------------------


@dataclass
class AggRelease:
    plan: AggPlan
    releases: list[Release]
    report: AggregateReport
    quantile: QuantileRelease | None = None


def _accuracy(rel: Release) -> float:
    if rel.discrete:
        return float(dp.discrete_gaussian_scale_to_accuracy(float(rel.scale), ALPHA))
    return float(dp.gaussian_scale_to_accuracy(float(rel.scale), ALPHA))


def mean_half_width(count: Release, total: Release, bounds: tuple[float, float], n: float
                    ) -> float | None:
    """95% half-width of a mean over ``n`` rows (delta method, worst case; see above)."""
    if n < 1:
        return None
    r = (bounds[1] - bounds[0]) / 2
    sigma = math.sqrt(total.scale ** 2 + (r * count.scale) ** 2) / n
    return float(dp.gaussian_scale_to_accuracy(sigma, ALPHA))


def plan_releases(plan: Plan, n_estimate: int | None = None) -> list[AggRelease]:
    """Every aggregate's measurements with its equal share of rho; nothing is run."""
    k = plan.k
    unit = "person" if plan.person_column else "row"
    share = plan.query.rho / len(plan.aggregates)
    out: list[AggRelease] = []
    for i, a in enumerate(plan.aggregates):
        # The last share takes what is left, so the shares sum to rho exactly.
        rho_i = plan.query.rho - share * (len(plan.aggregates) - 1) \
            if i == len(plan.aggregates) - 1 else share
        note, qr = "", None
        rank: float | None = None
        if a.op in ("count", "histogram"):
            rel = gaussian_release(k, rho_i, integer=True)
            rels, sens = [rel], f"L2 = {k} (one {unit} changes the counts by at most {k})"
            half: float | list[float | None] | None = _accuracy(rel)
        elif a.op == "sum":
            assert a.bounds is not None
            m = max(abs(a.bounds[0]), abs(a.bounds[1]))
            rel = gaussian_release(k * m, rho_i, integer=a.integer)
            rels, half = [rel], _accuracy(rel)
            sens = f"L2 = {k} x max(|lo|, |hi|) = {k * m:g} (values clamped to {a.bounds})"
        elif a.op == "mean":
            assert a.bounds is not None
            lo, hi = a.bounds
            cnt = gaussian_release(k, rho_i / 2, integer=True)
            tot = gaussian_release(k * (hi - lo) / 2, rho_i - rho_i / 2, integer=False)
            rels = [cnt, tot]
            sens = (f"count L2 = {k}; centred sum L2 = {k} x (hi - lo) / 2 = "
                    f"{k * (hi - lo) / 2:g} (values clamped to {a.bounds})")
            half = None if n_estimate is None else mean_half_width(cnt, tot, a.bounds,
                                                                    n_estimate)
            note = ("noisy sum / noisy count; 95% half-width by the delta method, worst case "
                    "over the mean's position" + ("" if n_estimate else
                                                  "; give n_estimate (rows per group)"))
        else:
            assert a.bounds is not None and a.q is not None
            qr = quantile_release(k, a.q, candidates_for(a.bounds, a.integer), rho_i)
            rels, half = [qr.release], None
            r = rank = qr.rank_half_width
            step = qr.candidates[1] - qr.candidates[0]
            sens = (f"score L-inf = {k} x {max(qr.a, qr.b)} = {k * max(qr.a, qr.b)} "
                    f"(OpenDP's map of its quantile score; {k} row(s) per {unit})")
            note = (f"{len(qr.candidates)} candidates {step:g} apart over {a.bounds}; with 95%"
                    f" probability the value has the q-th row within {r:.1f} rows of it "
                    "(plus the rows between neighbouring candidates)")
            if n_estimate:
                note += f", i.e. quantile level {a.q:g} +/- {r / n_estimate:.4f}"
        spent = sum(r_.spent for r_ in rels)
        scales: float | list[float] = rels[0].scale if len(rels) == 1 \
            else [r_.scale for r_ in rels]
        report = AggregateReport(
            label=a.label, op=a.op, column=a.column,  # type: ignore[arg-type]
            mechanism=" + ".join(r_.mechanism for r_ in rels), sensitivity=sens, rho=spent,
            noise_scale=scales, half_width_95=half, note=note, rank_error_95=rank,
            cells=a.cell_labels or [a.label])
        out.append(AggRelease(a, rels, report, qr))
    return out


def preview(q: PrivateQuery, meta: DatasetMeta, n_estimate: int | None = None, *,
            policy_bounds: dict[str, tuple[float, float]] | None = None,
            max_rows_per_person: int | None = None) -> dict[str, Any]:
    """Expected error of each aggregate at the query's rho, before anything is spent.

    ``n_estimate`` is the rows expected in each group after filters (needed for means).
    """
    plan = check_query(q, meta, policy_bounds, max_rows_per_person=max_rows_per_person)
    rels = plan_releases(plan, n_estimate)
    return {
        "dataset": q.dataset, "rho": q.rho, "confidence": 1 - ALPHA,
        "privacy_unit": plan.privacy_unit, "max_rows_per_person": plan.max_rows_per_person,
        "groups": plan.n_groups,
        "aggregates": [r.report.model_dump() for r in rels],
        "rho_total": sum(r.report.rho for r in rels),
    }


# --- the data path ---------------------------------------------------------------------------


def _plain(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    return arr.cast(arr.type.value_type) if pa.types.is_dictionary(arr.type) else arr


def _numpy_bool(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _typed(v: Any, typ: pa.DataType) -> pa.Scalar:
    if pa.types.is_date(typ) and isinstance(v, str):
        v = date.fromisoformat(v)
    try:
        return pa.scalar(v).cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(f"{v!r} cannot be compared with a column of type {typ}") from exc


_COMPARE = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}


def _filter_mask(table: pa.Table, f: Filter) -> np.ndarray:
    arr = _plain(table[f.column])
    if f.op == "in":
        assert isinstance(f.value, list)
        values = pa.array([_typed(v, arr.type).as_py() for v in f.value], type=arr.type)
        return _numpy_bool(pc.is_in(arr, value_set=values))
    return _numpy_bool(_COMPARE[f.op](arr, _typed(f.value, arr.type)))


def _index_in(arr: pa.ChunkedArray, values: list[Any]) -> np.ndarray:
    arr = _plain(arr)
    vs = pa.array([_typed(v, arr.type).as_py() for v in values], type=arr.type)
    idx = pc.fill_null(pc.index_in(arr, value_set=vs), -1)
    return np.asarray(idx.to_numpy(), dtype=np.intp)


def _float_values(arr: pa.ChunkedArray) -> np.ndarray:
    """Values as float64, nulls as NaN."""
    return np.asarray(pc.cast(_plain(arr), pa.float64()).to_numpy(zero_copy_only=False),
                      dtype=np.float64)


def _hash64(ids: pa.ChunkedArray) -> np.ndarray:
    """A 64-bit key per identifier; equal ids give equal keys (collisions only merge people,
    which bounds them more tightly, never less)."""
    ids = _plain(ids)
    if pa.types.is_integer(ids.type):
        v = np.asarray(pc.fill_null(ids, 0).to_numpy(), dtype=np.int64).view(np.uint64)
        return v * np.uint64(0x9E3779B97F4A7C15)  # bijective on 64 bits
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_external_access = false")
        con.register("ids", pa.table({"id": ids}))
        # A projection keeps insertion order in DuckDB (preserve_insertion_order is on).
        out = con.execute("SELECT hash(id) AS h FROM ids").fetchnumpy()["h"]
    finally:
        con.close()
    return np.asarray(out, dtype=np.uint64)


def bound_contributions(ids: pa.ChunkedArray, rows: np.ndarray, k: int,
                        rng: np.random.Generator) -> np.ndarray:
    """The subset of ``rows`` that keeps at most ``k`` random rows per person."""
    if ids.null_count:
        rows = rows[_numpy_bool(pc.is_valid(ids))[rows]]  # no identifier, no bound: dropped
    keys = _hash64(ids)[rows]
    size = 1 << max(10, min(24, (2 * len(rows)).bit_length()))
    bucket = keys.view(np.int64) & (size - 1)
    # Most people have few rows: only buckets over k need the exact per-person cut.
    heavy = np.flatnonzero(np.bincount(bucket, minlength=size)[bucket] > k)
    if heavy.size == 0:
        return rows
    # One sort of (person key, random position) packed into a uint64: the key's top bits,
    # then the row's place in a random permutation, so each person's rows come out in a
    # random order. Fewer key bits can only merge people (a tighter bound, never looser).
    nb = max(1, (len(heavy) - 1).bit_length())
    perm = rng.permutation(len(heavy))
    packed = np.sort(((keys[heavy][perm] >> np.uint64(nb)) << np.uint64(nb))
                     | np.arange(len(heavy), dtype=np.uint64))
    person = packed >> np.uint64(nb)
    pos = np.arange(len(packed))
    starts = np.maximum.accumulate(np.where(np.r_[True, person[1:] != person[:-1]], pos, 0))
    over = (packed[pos - starts >= k] & np.uint64((1 << nb) - 1)).astype(np.intp)
    keep = np.ones(len(rows), dtype=bool)
    keep[heavy[perm[over]]] = False
    return rows[keep]


def _select_rows(table: pa.Table, plan: Plan, rng: np.random.Generator
                 ) -> tuple[np.ndarray | None, np.ndarray]:
    """(row indices to use, or None for all; their group index in the product of the public
    key values). Large arrays are touched as few times as possible: at 10M rows each pass
    costs tens of milliseconds."""
    n = table.num_rows
    keep: np.ndarray | None = None
    for f in plan.filters:
        mask = _filter_mask(table, f)
        keep = mask if keep is None else keep & mask
    gidx: np.ndarray = np.zeros(n, dtype=np.intp)
    for i, g in enumerate(plan.groups):
        idx = _index_in(table[g.name], g.values)
        valid = idx >= 0
        if not valid.all():
            keep = valid if keep is None else keep & valid
        gidx = idx if i == 0 else gidx * len(g.values) + idx
    rows = None if keep is None else np.flatnonzero(keep)
    if plan.person_column is not None:
        rows = bound_contributions(table[plan.person_column],
                                   np.arange(n) if rows is None else rows, plan.k, rng)
    return rows, gidx if rows is None else gidx[rows]


def _values(table: pa.Table, name: str, rows: np.ndarray | None, groups: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column's non-null values on the selected rows, with their groups."""
    v = _float_values(table[name])
    if rows is not None:
        v = v[rows]
    nan = np.isnan(v)
    if nan.any():
        return v[~nan], groups[~nan]
    return v, groups


def _clamped(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    # Skipping the copy when nothing is out of bounds gives the same result, only faster.
    if values.size and bounds[0] <= values.min() and values.max() <= bounds[1]:
        return values
    clipped: np.ndarray = np.clip(values, bounds[0], bounds[1])
    return clipped


def _noisy(rel: Release, vector: np.ndarray, integer: bool) -> np.ndarray:
    if integer:
        return np.asarray(rel.meas([int(v) for v in vector]), dtype=np.int64)
    return np.asarray(rel.meas([float(v) for v in vector]), dtype=np.float64)


def run(q: PrivateQuery, table: pa.Table, meta: DatasetMeta, *, sdc: SdcRules | None = None,
        rng_seed: int | None = None,
        policy_bounds: dict[str, tuple[float, float]] | None = None,
        max_rows_per_person: int | None = None) -> DpResult:
    """Answer the query on ``table`` with zCDP noise; SDC rules applied after, for free.

    ``max_rows_per_person`` is the policy's default bound (see :func:`check_query`).
    """
    plan = check_query(q, meta, policy_bounds, max_rows_per_person=max_rows_per_person)
    missing = [c for c in plan.columns if c not in table.column_names]
    if missing:
        raise InternalError(f"the data of {meta.name} lacks columns its metadata lists: "
                            f"{', '.join(missing)}; republish the dataset")
    _check_types(table, meta, plan)
    rels = plan_releases(plan)  # before touching the data: a bad plan spends nothing
    spent = sum(r.report.rho for r in rels)
    if not spent <= q.rho * (1 + 1e-9):
        raise InternalError(f"OpenDP reports rho {spent} above the {q.rho} asked for")
    rows, groups = _select_rows(table, plan, np.random.default_rng(rng_seed))
    G = plan.n_groups
    cells: list[np.ndarray] = []  # per aggregate: (G, width) released values (object)
    group_size: np.ndarray | None = None  # a noisy count per group, for SDC of other cells
    for ar in rels:
        a = ar.plan
        if a.op == "count":
            noisy = np.maximum(_noisy(ar.releases[0], np.bincount(groups, minlength=G), True), 0)
            cells.append(noisy.reshape(G, 1).astype(object))
            group_size = noisy if group_size is None else group_size
            continue
        if a.op == "histogram":
            cells.append(_histogram(ar, table, rows, groups, G))
            continue
        assert a.column is not None
        v, g = _values(table, a.column, rows, groups)
        if a.op == "sum":
            assert a.bounds is not None
            s = np.bincount(g, weights=_clamped(v, a.bounds), minlength=G)
            noisy_s = _noisy(ar.releases[0], np.rint(s) if a.integer else s, a.integer)
            cells.append(noisy_s.reshape(G, 1).astype(object))
        elif a.op == "mean":
            assert a.bounds is not None
            lo, hi = a.bounds
            mid = (lo + hi) / 2
            n = _noisy(ar.releases[0], np.bincount(g, minlength=G), True)
            s = _noisy(ar.releases[1], np.bincount(g, minlength=G,
                                                   weights=_clamped(v, a.bounds) - mid),
                       False)
            means = [None if n_g < 1 else float(min(max(mid + s_g / n_g, lo), hi))
                     for n_g, s_g in zip(n, s, strict=True)]
            cells.append(np.array(means, dtype=object).reshape(G, 1))
            cnt, tot = ar.releases
            ar.report.half_width_95 = [mean_half_width(cnt, tot, a.bounds, float(n_g))
                                       for n_g in n]
            group_size = np.maximum(n, 0) if group_size is None else group_size
        else:
            assert ar.quantile is not None
            qr = ar.quantile
            picks = qr.select(qr.scores(v, g, G))
            out = [int(p) if a.integer and float(p).is_integer() else p for p in picks]
            cells.append(np.array(out, dtype=object).reshape(G, 1))
    suppressed = _apply_sdc(rels, cells, group_size, sdc)
    keys = [list(t) for t in itertools.product(*(g.values for g in plan.groups))] or [[]]
    out_rows = [[_jsonable(x) for x in key] + [_jsonable(x) for c in cells for x in c[i]]
                for i, key in enumerate(keys)]
    columns = [g.name for g in plan.groups] + [lab for ar in rels for lab in
                                               (ar.plan.cell_labels or [ar.plan.label])]
    return DpResult(dataset=q.dataset, columns=columns, rows=out_rows,
                    aggregates=[r.report for r in rels], rho_requested=q.rho, rho_spent=spent,
                    privacy_unit=plan.privacy_unit,
                    max_rows_per_person=plan.max_rows_per_person, suppressed=suppressed,
                    sdc=sdc)


_ARROW_KINDS: dict[str, Callable[[pa.DataType], bool]] = {
    "integer": pa.types.is_integer,
    "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "boolean": pa.types.is_boolean,
    "date": pa.types.is_date,
}


def _check_types(table: pa.Table, meta: DatasetMeta, plan: Plan) -> None:
    for name in plan.columns:
        col = meta.column(name)
        typ = table.schema.field(name).type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if col is not None and not _ARROW_KINDS[col.type](typ):
            raise InternalError(f"column {name!r} of {meta.name} holds {typ} but its metadata "
                                f"says {col.type}; fix the metadata and republish")


def _histogram(ar: AggRelease, table: pa.Table, rows: np.ndarray | None, groups: np.ndarray,
               G: int) -> np.ndarray:
    a = ar.plan
    assert a.column is not None
    if a.categories is not None:
        idx = _index_in(table[a.column], a.categories)
        idx = idx if rows is None else idx[rows]
        width = len(a.categories)
    else:
        assert a.edges is not None
        v = _float_values(table[a.column])
        v = v if rows is None else v[rows]
        edges = np.asarray(a.edges)
        # Cells: below the first edge, the bins (the last one closed), above the last edge.
        idx = np.searchsorted(edges, v, side="right")
        idx[v == edges[-1]] = len(edges) - 1
        idx[np.isnan(v)] = -1
        width = len(edges) + 1
    ok = idx >= 0
    counts = np.bincount(groups[ok] * width + idx[ok], minlength=G * width)
    noisy = np.maximum(_noisy(ar.releases[0], counts, True), 0)
    histograms: np.ndarray = noisy.reshape(G, width).astype(object)
    return histograms


def _apply_sdc(rels: list[AggRelease], cells: list[np.ndarray], group_size: np.ndarray | None,
               sdc: SdcRules | None) -> int:
    """Suppress small noisy counts (and other cells of small groups), then round the counts
    that remain: suppression first, as :mod:`ndl.privacy.sdc` does for every tier, so a
    small count is never rounded up into release."""
    if sdc is None:
        return 0
    suppressed = 0
    small = None
    if sdc.suppress_below is not None and group_size is not None:
        small = group_size < sdc.suppress_below
    for ar, c in zip(rels, cells, strict=True):
        counts = ar.plan.op in ("count", "histogram")
        for g in range(c.shape[0]):
            for j in range(c.shape[1]):
                x = c[g, j]
                if x is None:
                    continue
                under = (sdc.suppress_below is not None and x < sdc.suppress_below) if counts \
                    else (small is not None and bool(small[g]))
                if under:
                    c[g, j] = None
                    suppressed += 1
                elif counts and sdc.round_to is not None:
                    c[g, j] = round_count(int(x), sdc.round_to)
    return suppressed


def _jsonable(v: Any) -> Any:
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v

"""Run a checked private query at the datasite with OpenDP under zCDP, and preview its error.

Rows are filtered, grouped, bounded and clamped into exact per-group vectors by a pluggable
step (:mod:`ndl.privacy.bounded`: pyarrow / numpy by default, or Spark through
:func:`ndl.privacy.dp_spark.run_spark`); :func:`answer` then has OpenDP add the noise to those
vectors and state, through each measurement's privacy map, the rho it spends.
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

import numpy as np
import opendp.prelude as dp
import pyarrow as pa

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InternalError
from ndl.privacy.bounded import (
    AggStats,
    QuantileGrid,
    StatsFn,
    arrow_stats,
    check_stats,
    check_table,
    quantile_scores,
)
from ndl.privacy.bounded import bound_contributions as bound_contributions  # its old home
from ndl.privacy.sdc import round_count
from ndl.privacy.spec import (
    QUANTILE_CANDIDATES,
    AggPlan,
    AggregateReport,
    DpResult,
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

    @property
    def grid(self) -> QuantileGrid:
        """What an engine needs to compute the scores."""
        return QuantileGrid(tuple(self.candidates), self.a, self.b)

    def scores(self, values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """OpenDP's quantile scores |b * #below - a * #above| per group and candidate."""
        return quantile_scores(self.grid, values, groups, n_groups)

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


# --- noise on the exact statistics --------------------------------------------------------


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
    check_table(table, meta, plan)
    rng = np.random.default_rng(rng_seed)
    return answer(plan, lambda p, grids: arrow_stats(table, p, grids, rng), sdc=sdc)


def answer(plan: Plan, stats: StatsFn, *, sdc: SdcRules | None = None) -> DpResult:
    """The plan's releases with OpenDP's noise on the exact statistics ``stats`` computes.

    Every engine's answer goes through here, so the noise, the rho spent and the SDC after it
    do not depend on where the rows were counted.
    """
    q = plan.query
    rels = plan_releases(plan)  # before touching the data: a bad plan spends nothing
    spent = sum(r.report.rho for r in rels)
    if not spent <= q.rho * (1 + 1e-9):
        raise InternalError(f"OpenDP reports rho {spent} above the {q.rho} asked for")
    grids = [None if ar.quantile is None else ar.quantile.grid for ar in rels]
    exact = stats(plan, grids)
    check_stats(exact, plan, grids)
    G = plan.n_groups
    cells: list[np.ndarray] = []  # per aggregate: (G, width) released values (object)
    group_size: np.ndarray | None = None  # a noisy count per group, for SDC of other cells
    for ar, st in zip(rels, exact.aggregates, strict=True):
        cell, size = _release(ar, st, G)
        cells.append(cell)
        group_size = size if group_size is None else group_size
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


def _release(ar: AggRelease, st: AggStats, G: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One aggregate's (G, width) released cells, and its noisy group sizes if it has them."""
    a = ar.plan
    if a.op in ("count", "histogram"):
        assert st.counts is not None
        noisy = np.maximum(_noisy(ar.releases[0], st.counts, True), 0)
        width = a.width
        return noisy.reshape(G, width).astype(object), noisy if a.op == "count" else None
    if a.op == "sum":
        assert st.sums is not None
        noisy_s = _noisy(ar.releases[0], st.sums, a.integer)
        return noisy_s.reshape(G, 1).astype(object), None
    if a.op == "mean":
        assert a.bounds is not None and st.counts is not None and st.sums is not None
        lo, hi = a.bounds
        mid = (lo + hi) / 2
        n = _noisy(ar.releases[0], st.counts, True)
        s = _noisy(ar.releases[1], st.sums, False)
        means = [None if n_g < 1 else float(min(max(mid + s_g / n_g, lo), hi))
                 for n_g, s_g in zip(n, s, strict=True)]
        cnt, tot = ar.releases
        ar.report.half_width_95 = [mean_half_width(cnt, tot, a.bounds, float(n_g))
                                   for n_g in n]
        return np.array(means, dtype=object).reshape(G, 1), np.maximum(n, 0)
    assert ar.quantile is not None and st.scores is not None
    picks = ar.quantile.select(st.scores)
    out = [int(p) if a.integer and float(p).is_integer() else p for p in picks]
    return np.array(out, dtype=object).reshape(G, 1), None


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

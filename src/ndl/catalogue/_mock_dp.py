"""Differentially private one-column marginals for mock data, learned with OpenDP under zCDP.

Every release here is over one column of a table in which each person has at most one row,
so adding or removing a person changes one count by one (L2 sensitivity 1 for a count vector;
``(l0, l2, linf) = (1, 1, 1)`` for a map of counts). Three mechanisms, all OpenDP measurements:

* **Known categories** (booleans; strings or integers with a public ``code_list``): Gaussian
  noise on every category count plus a null count (``make_gaussian``; pure zCDP). Categories
  whose noisy count is under a noise floor are then dropped (post-processing: free).
* **Unknown categories** (other strings): the stability histogram. Only values present in the
  data are counted, Gaussian noise is added and a value is released only if its noisy count
  clears a threshold (``make_gaussian_threshold``; approximate zCDP). The threshold is the
  smallest for which OpenDP's privacy map gives delta_i or less, so a value held by one
  person is released with probability below delta_i: rare categories never reach the mock.
* **Numbers and dates**: the same thresholded histogram at several resolutions, coarse to
  fine (numbers: sign and power of ten, then 1, 2 and 4 significant figures; dates: decade,
  year, month, the day being drawn uniformly within the month), each level a release with an
  equal share of the column's budget. The mock descends the released tree and stops where
  the data are too thin to release a finer node, sampling uniformly within the last released
  range (dates no later than today when that range includes today). No clamping bounds are
  learned from the data: a range appears only if enough rows fall in it, so outliers, which
  could single out a person, are never reproduced; public bounds from the column metadata
  (extra fields ``minimum`` / ``maximum``) clamp numbers before and after when present.

The counts themselves are computed here in Python (one row changes one count, as above);
OpenDP adds the noise and states the privacy spent through its maps, which we add up:
under zCDP rho composes additively (Bun & Steinke 2016, Lemma 2.3) and so does delta.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from statistics import NormalDist
from typing import Any, Literal, Protocol

import numpy as np
import opendp.prelude as dp

from ndl.core.errors import InternalError

dp.enable_features("contrib")

NumberKind = Literal["integer", "float", "date"]
NULL_KEY = "n"
# Significant figures kept at tree levels 2 and 3 (level 1 is sign and power of ten).
SIG_FIGS: tuple[int, ...] = (1, 2, 4)
# Expected number of pure-noise categories let through per known-category histogram.
_FALSE_KEEP = 0.05
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ENUMERATE_LIMIT = 10_000
_TINY = 1e-300  # floats closer to zero count as zero (their powers of ten underflow)


@dataclass(frozen=True)
class Spend:
    """Privacy spent by one release, as OpenDP's privacy map reports it."""

    rho: float
    delta: float = 0.0


class ColumnModel(Protocol):
    def sample(self, rng: np.random.Generator, n: int) -> list[Any]: ...

    def support(self) -> tuple[list[Any], np.ndarray] | None:
        """Every value the model can draw with its probability, or None if too many."""


@dataclass(frozen=True, eq=False)
class Categorical:
    """A released histogram over whole values (``None`` is the null value)."""

    values: tuple[Any, ...]
    probs: np.ndarray

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        idx = rng.choice(len(self.values), size=n, p=self.probs)
        return [self.values[i] for i in idx]

    def support(self) -> tuple[list[Any], np.ndarray] | None:
        return list(self.values), self.probs


ALL_NULL = Categorical((None,), np.array([1.0]))


@dataclass(frozen=True, eq=False)
class Ranges:
    """Terminal nodes of a released tree: sample a node, then uniformly inside its range."""

    kind: NumberKind
    keys: tuple[str, ...]
    probs: np.ndarray
    bounds: tuple[float | None, float | None] = (None, None)
    latest: int | None = None  # dates: a range that spans this day is cut off after it
    _ranges: list[tuple[int, float, float] | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ranges = [_node_range(k, self.kind) for k in self.keys]
        if self.latest is not None:
            # A coarse node (a decade) that includes today would otherwise yield future
            # dates; that most records are not dated in the future is public knowledge.
            ranges = [r if r is None or not r[1] <= self.latest < r[2] - 1
                      else (r[0], r[1], self.latest + 1) for r in ranges]
        object.__setattr__(self, "_ranges", ranges)

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        picks = rng.choice(len(self.keys), size=n, p=self.probs)
        u = rng.random(n)
        return [self._value(self._ranges[i], float(x)) for i, x in zip(picks, u, strict=True)]

    def _value(self, rng_: tuple[int, float, float] | None, u: float) -> Any:
        if rng_ is None:
            return None
        sign, lo, hi = rng_
        if self.kind == "float":
            v: Any = sign * (lo + u * (hi - lo))
        else:
            v = sign * (int(lo) + min(int(u * (hi - lo)), int(hi - lo) - 1))
        lo_b, hi_b = self.bounds
        if lo_b is not None:
            v = max(v, lo_b if self.kind == "float" else math.ceil(lo_b))
        if hi_b is not None:
            v = min(v, hi_b if self.kind == "float" else math.floor(hi_b))
        if self.kind == "date":
            return date.fromordinal(int(v))
        if self.kind == "integer":
            return int(min(max(v, _INT64_MIN), _INT64_MAX))
        return float(v)

    def support(self) -> tuple[list[Any], np.ndarray] | None:
        if self.kind == "float" and any(r is not None and r[2] > r[1] for r in self._ranges):
            return None
        width = sum(1 if r is None else int(r[2] - r[1]) for r in self._ranges)
        if width > _ENUMERATE_LIMIT:
            return None
        probs: dict[Any, float] = defaultdict(float)
        for r, p in zip(self._ranges, self.probs, strict=True):
            if r is None:
                probs[None] += float(p)
                continue
            w = int(r[2] - r[1])
            for j in range(w):
                probs[self._value(r, (j + 0.5) / w)] += float(p) / w
        return list(probs), np.array(list(probs.values()))


# --- OpenDP measurements ------------------------------------------------------------------


def _sigma(rho: float) -> float:
    return math.sqrt(1.0 / (2.0 * rho))


def gaussian_counts(counts: Sequence[int], rho: float) -> tuple[np.ndarray, float, Spend]:
    """Discrete Gaussian noise on a count vector of L2 sensitivity 1, spending at most rho."""
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int)

    def build(scale: float) -> dp.Measurement:
        return dp.m.make_gaussian(*space, scale=scale)

    sigma = _sigma(rho)
    meas = build(sigma)
    if meas.map(1) > rho:  # OpenDP may round the map up: let it choose the scale.
        sigma = dp.binary_search_param(build, d_in=1, d_out=rho)
        meas = build(sigma)
    noisy = np.asarray(meas([int(c) for c in counts]), dtype=float)
    return noisy, sigma, Spend(float(meas.map(1)))


def threshold_counts(
    counts: dict[str, int], rho: float, delta: float
) -> tuple[dict[str, float], Spend]:
    """Stability histogram: noisy counts of the keys whose noisy count clears a threshold."""
    dom = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int))
    met = dp.l02inf_distance(dp.absolute_distance(T=int))
    sigma = _sigma(rho)
    d_in = (1, 1, 1)  # one person: one key, changed by one

    def build(t: int) -> dp.Measurement:
        return dp.m.make_gaussian_threshold(dom, met, scale=sigma, threshold=t)

    # Smallest integer threshold whose delta is within budget (delta falls as it rises).
    lo, hi = 1, 2
    while build(hi).map(d_in)[1] > delta:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if build(mid).map(d_in)[1] > delta else (lo, mid)
    meas = build(hi)
    spent_rho, spent_delta = meas.map(d_in)
    if spent_rho > rho * (1 + 1e-9):
        raise InternalError(f"OpenDP reports rho {spent_rho} above the {rho} allotted")
    released = meas({k: int(v) for k, v in counts.items()}) if counts else {}
    return {k: float(v) for k, v in released.items()}, Spend(float(spent_rho), float(spent_delta))


# --- column learners ------------------------------------------------------------------------


def learn_known(values: Sequence[Any], categories: Sequence[Any], rho: float
                ) -> tuple[Categorical, Spend]:
    """Histogram over a public category list plus null; rare noisy categories dropped."""
    index = {c: i for i, c in enumerate(categories)}
    counts = [0] * (len(categories) + 1)
    for v in values:
        i = len(categories) if v is None else index.get(v)
        if i is not None:  # values outside the public list are not counted
            counts[i] += 1
    noisy, sigma, spend = gaussian_counts(counts, rho)
    floor = sigma * NormalDist().inv_cdf(1 - _FALSE_KEEP / len(counts))
    keep = noisy > floor
    if not keep.any():  # nothing clears the floor: the likeliest category stands for all
        keep[int(np.argmax(noisy))] = True
    weights = np.where(keep, np.maximum(noisy, 1e-9), 0.0)
    options = [*categories, None]
    chosen = [i for i in range(len(options)) if keep[i]]
    probs = weights[chosen] / weights[chosen].sum()
    return Categorical(tuple(options[i] for i in chosen), probs), spend


def learn_unknown(values: Sequence[str | None], rho: float, delta: float
                  ) -> tuple[Categorical, Spend]:
    """Stability histogram over the string values present; all-null if nothing is released."""
    counts = Counter(NULL_KEY if v is None else "v" + v for v in values)
    released, spend = threshold_counts(dict(counts), rho, delta)
    if not released:
        return ALL_NULL, spend
    keys = sorted(released)  # a fixed order keeps sampling deterministic per seed
    w = np.array([released[k] for k in keys])
    vals = tuple(None if k == NULL_KEY else k[1:] for k in keys)
    return Categorical(vals, w / w.sum()), spend


def learn_null_rate(values: Sequence[Any], rho: float) -> tuple[float, Spend]:
    """The share of nulls, from a noisy (nulls, non-nulls) pair."""
    nulls = sum(v is None for v in values)
    noisy, _, spend = gaussian_counts([nulls, len(values) - nulls], rho)
    a, b = (max(float(x), 0.0) for x in noisy)
    return (a / (a + b) if a + b > 0 else 0.0), spend


def learn_tree(values: Sequence[Any], kind: NumberKind, rho: float, delta: float,
               bounds: tuple[float | None, float | None] = (None, None)
               ) -> tuple[Ranges | Categorical, list[Spend]]:
    """Thresholded histograms of a numeric or date column at every tree level (see above)."""
    levels = tree_levels(kind)
    level_counts: list[Counter[str]] = [Counter() for _ in range(levels)]
    lo_b, hi_b = bounds
    # Keys are computed once per distinct value: dates and integers repeat a great deal.
    for v, n in Counter(values).items():
        if v is not None and kind != "date":
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            else:
                v = v if lo_b is None else max(v, lo_b)
                v = v if hi_b is None else min(v, hi_b)
        for level, key in enumerate(_node_keys(v, kind)):
            level_counts[level][key] += n
    spends: list[Spend] = []
    released: list[dict[str, float]] = []
    for counts in level_counts:
        rel, spend = threshold_counts(dict(counts), rho / levels, delta / levels)
        released.append(rel)
        spends.append(spend)
    terminals = _descend(released)
    if not terminals:
        return ALL_NULL, spends
    keys = sorted(terminals)
    p = np.array([terminals[k] for k in keys])
    latest = date.today().toordinal() if kind == "date" else None
    return Ranges(kind, tuple(keys), p / p.sum(), bounds, latest), spends


# --- the tree ---------------------------------------------------------------------------


def tree_levels(kind: NumberKind) -> int:
    """Levels of the tree: decade, year, month for dates; power of ten and SIG_FIGS else."""
    return 3 if kind == "date" else 1 + len(SIG_FIGS)


def _node_keys(v: Any, kind: NumberKind) -> list[str]:
    """Keys of the nodes holding v, coarse to fine; a parent key is its child's prefix."""
    if v is None:
        return [NULL_KEY]
    if kind == "date":
        decade = f"{v.year // 10:03d}"
        return [decade, f"{decade}|{v.year:04d}", f"{decade}|{v.year:04d}|{v.month:02d}"]
    if v == 0:
        return ["0"]
    sign = "+" if v > 0 else "-"
    a = abs(v)
    if kind == "integer":
        d = len(str(int(a))) - 1
        parts = [str(int(a) // 10 ** max(d - s + 1, 0)) for s in SIG_FIGS]
    else:
        if a < _TINY:
            return ["0"]
        d = math.floor(math.log10(a))
        d += (_pow10(d + 1) <= a) - (_pow10(d) > a)  # log10 can be off by one at powers
        parts = [str(math.floor(_scale(a, d - s + 1))) for s in SIG_FIGS]
    keys = [f"{sign}{d}"]
    for part in parts:
        keys.append(f"{keys[-1]}|{part}")
    return keys


def _scale(a: float, w: int) -> float:
    # Multiplying by 10**-w is exact more often than dividing by a fractional 10**w.
    return a * _pow10(-w) if w < 0 else a / _pow10(w)


def _pow10(e: int) -> float:
    return 10.0 ** min(e, 308)  # float overflow past 1e308


def _node_range(key: str, kind: NumberKind) -> tuple[int, float, float] | None:
    """(sign, lo, hi) of a node: magnitudes in [lo, hi); dates as ordinals; None for null."""
    if key == NULL_KEY:
        return None
    parts = key.split("|")
    if kind == "date":
        if len(parts) == 1:
            first = max(int(parts[0]) * 10, 1)
            return 1, date(first, 1, 1).toordinal(), _year_start(int(parts[0]) * 10 + 10)
        y = int(parts[1])
        if len(parts) == 2:
            return 1, date(y, 1, 1).toordinal(), _year_start(y + 1)
        m = int(parts[2])
        end = _year_start(y + 1) if m == 12 else date(y, m + 1, 1).toordinal()
        return 1, date(y, m, 1).toordinal(), end
    if key == "0":
        return 1, 0, 1 if kind == "integer" else 0
    sign = 1 if parts[0][0] == "+" else -1
    d = int(parts[0][1:])
    if len(parts) == 1:
        return sign, _pow10(d), _pow10(d + 1)
    s = SIG_FIGS[len(parts) - 2]
    w = d - s + 1
    if kind == "integer":
        w = max(w, 0)
    k = int(parts[-1])
    return sign, k * _pow10(w), (k + 1) * _pow10(w)


def _year_start(y: int) -> int:
    """Ordinal of 1 January of year y, or the day after the last date Python can hold."""
    return date(y, 1, 1).toordinal() if y <= 9999 else date(9999, 12, 31).toordinal() + 1


def _descend(levels: list[dict[str, float]]) -> dict[str, float]:
    """Probability of stopping at each released node, descending from the coarsest level.

    At a node with noisy count c whose released children sum to s, each child gets its share
    c_i / max(c, s) and the rest (rows in children too thin to release) stays at the node,
    which is then sampled uniformly over its whole range.
    """
    children: dict[str, list[str]] = defaultdict(list)
    for level in levels[1:]:
        for key in sorted(level):
            children[key.rsplit("|", 1)[0]].append(key)
    counts = {k: c for level in levels for k, c in level.items() if c > 0}
    top = sorted(k for k in levels[0] if k in counts)
    total = sum(counts[k] for k in top)
    out: dict[str, float] = defaultdict(float)
    stack = [(k, counts[k] / total) for k in top]
    while stack:
        key, p = stack.pop()
        kids = [k for k in children.get(key, ()) if k in counts]
        s = sum(counts[k] for k in kids)
        denom = max(counts[key], s)
        for k in kids:
            stack.append((k, p * counts[k] / denom))
        rest = p * (1 - s / denom)
        if rest > 0:
            out[key] += rest
    return dict(out)

"""The safeguarded-tier query: aggregates a researcher may ask for, checked against metadata.

A :class:`PrivateQuery` names aggregates (count, sum, mean, quantile, histogram), optional
filters, at most two group keys and the zCDP budget ``rho`` to spend. :func:`check_query`
resolves it against the dataset's own metadata into a :class:`Plan` (bounds, public groups,
the privacy unit) or raises :class:`InvalidInput` listing every problem and what is allowed,
before anything is spent.

Rules, and why:

* **Group keys must be public** (a ``code_list``, a boolean, or ``public_key: true`` with
  ``categories``): every listed group is released, empty ones included, so which groups exist
  leaks nothing. Rows whose key is null or outside the list are left out of grouped results.
* **Identifiers are never aggregated, filtered or grouped on**: columns tagged
  ``direct_identifier`` or with a join key naming a person (NHS number, UPN, local id, name).
* **Bounds**: sums, means, quantiles and numeric histograms clamp values to ``[lo, hi]``.
  They come from the column metadata (extra keys ``minimum`` / ``maximum``) or from the
  query; query bounds must lie within the metadata's when it has them (the steward's
  policy). With neither, the query is refused: the noise depends on the bounds, and bounds
  taken from the data would leak it.
* **Privacy unit**: a person where the dataset has a person identifier column (join key
  ``nhs_number``, ``upn`` or ``local_id``), each person keeping at most
  ``max_rows_per_person`` rows (query value, else metadata extra key of the same name, else
  5); otherwise a row.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ndl.catalogue.metadata import ColumnMeta, DatasetMeta
from ndl.core import tiers
from ndl.core.errors import InvalidInput
from ndl.core.tiers import ColumnUse

PERSON_KEYS: tuple[str, ...] = ("nhs_number", "upn", "local_id")
MAX_GROUP_KEYS = 2
MAX_GROUPS = 10_000
MAX_CELLS = 100_000  # groups x histogram bins, per aggregate
DEFAULT_MAX_ROWS_PER_PERSON = 5
MAX_ROWS_PER_PERSON = 100
QUANTILE_CANDIDATES = 1001  # evenly spaced over the bounds (integers if fewer)
MAX_HISTOGRAM_EDGES = 1001
MAX_AGGREGATES = 20

Op = Literal["count", "sum", "mean", "quantile", "histogram"]
FilterOp = Literal["=", "!=", "<", "<=", ">", ">=", "in"]
Scalar = str | int | float | bool

ALLOWED = (
    "aggregates: count, sum(col), mean(col), quantile(col, q), histogram(col, bins) over "
    "integer or float columns, bins being a number of equal bands within the bounds or a "
    "list of band edges, or left out for the column's published bands (histograms also over "
    "boolean or code-list columns); "
    f"group_by: up to {MAX_GROUP_KEYS} public key columns (with a code_list, boolean, or "
    "public_key: true and categories in the metadata); where: column op value with op one "
    "of = != < <= > >= in; bounds [lo, hi] within the column's published minimum/maximum"
)


class Filter(BaseModel):
    # NaN or infinite bounds and values would pass every comparison check unnoticed.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    column: str = Field(min_length=1, max_length=100)
    op: FilterOp
    value: Scalar | list[Scalar]


class Aggregate(BaseModel):
    # NaN or infinite bounds and values would pass every comparison check unnoticed.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    op: Op
    column: str | None = Field(default=None, max_length=100)
    q: float | None = Field(default=None, gt=0, lt=1)
    bounds: tuple[float, float] | None = None
    # Histogram bins: an int (equal widths over the bounds) or explicit ascending edges;
    # for boolean / code-list columns omit it (the public values) or list a subset of them.
    bins: int | list[Scalar] | None = None
    label: str | None = Field(default=None, min_length=1, max_length=100)


class PrivateQuery(BaseModel):
    # NaN or infinite bounds and values would pass every comparison check unnoticed.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dataset: str = Field(min_length=1, max_length=200)
    aggregates: list[Aggregate] = Field(min_length=1, max_length=MAX_AGGREGATES)
    group_by: list[str] = Field(default_factory=list, max_length=MAX_GROUP_KEYS)
    where: list[Filter] = Field(default_factory=list, max_length=50)
    rho: float = Field(gt=0, le=100)
    project: str | None = Field(default=None, max_length=64)
    max_rows_per_person: int | None = Field(default=None, ge=1, le=MAX_ROWS_PER_PERSON)


class SdcRules(BaseModel):
    """Statistical disclosure control applied after DP (post-processing: no privacy cost)."""

    model_config = ConfigDict(extra="forbid")

    round_to: int | None = Field(default=None, ge=1, le=1000)
    suppress_below: int | None = Field(default=None, ge=1, le=1000)


class AggregateReport(BaseModel):
    """How one aggregate was (or would be) released, and how far off it is likely to be."""

    label: str
    op: Op
    column: str | None
    mechanism: str
    sensitivity: str
    rho: float
    noise_scale: float | list[float]
    # Half-width of a 95% interval in the output's units; per group for means (run only).
    half_width_95: float | list[float | None] | None
    note: str = ""
    # A quantile's error in rows: the released value has the q-th row within this many.
    rank_error_95: float | None = None
    # Its output columns, in order (a histogram fills one per bin), so a face can tell
    # which released number each error bar belongs to.
    cells: list[str] = Field(default_factory=list)


class DpResult(BaseModel):
    dataset: str
    columns: list[str]
    rows: list[list[Any]]
    aggregates: list[AggregateReport]
    rho_requested: float
    rho_spent: float
    privacy_unit: str
    max_rows_per_person: int | None
    suppressed: int = 0
    sdc: SdcRules | None = None


# --- the resolved plan --------------------------------------------------------------------


@dataclass(frozen=True)
class GroupKey:
    name: str
    values: list[Any]


@dataclass(frozen=True)
class AggPlan:
    op: str
    label: str
    column: str | None = None
    integer: bool = False  # the column holds integers (sums are then exact integers)
    bounds: tuple[float, float] | None = None
    q: float | None = None
    edges: list[float] | None = None  # numeric histogram
    categories: list[Any] | None = None  # categorical histogram
    cell_labels: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        """Output columns this aggregate fills."""
        return len(self.cell_labels) if self.op == "histogram" else 1


@dataclass(frozen=True)
class Plan:
    query: PrivateQuery
    groups: list[GroupKey]
    aggregates: list[AggPlan]
    filters: list[Filter]
    person_column: str | None
    max_rows_per_person: int | None

    @property
    def n_groups(self) -> int:
        return math.prod(len(g.values) for g in self.groups)

    @property
    def k(self) -> int:
        """Rows one privacy unit can contribute after bounding."""
        return self.max_rows_per_person or 1

    @property
    def columns(self) -> list[str]:
        """The columns the query reads: load only these (e.g. ``pq.read_table(columns=)``)."""
        used = [f.column for f in self.filters] + [g.name for g in self.groups] \
            + [a.column for a in self.aggregates if a.column] \
            + ([self.person_column] if self.person_column else [])
        return list(dict.fromkeys(used))

    @property
    def privacy_unit(self) -> str:
        if self.person_column is None:
            return "row (the dataset has no person identifier)"
        return (f"person (identified by {self.person_column}; at most "
                f"{self.max_rows_per_person} rows each)")


# --- checks -------------------------------------------------------------------------------


def is_identifier(col: ColumnMeta) -> bool:
    return tiers.is_identifier(col)


def person_column(meta: DatasetMeta) -> str | None:
    """The column that identifies a person, preferring NHS number, then UPN, then local id."""
    for key in PERSON_KEYS:
        for col in meta.columns:
            if col.join_key == key:
                return col.name
    return None


def public_values(col: ColumnMeta) -> list[Any] | None:
    """The published set of values of a column, typed like the column; None if it has none."""
    extra = col.model_extra or {}
    if col.type == "boolean":
        return [False, True]
    codes: list[Any] | None = None
    if col.code_list:
        codes = [e.code for e in col.code_list]
    elif extra.get("public_key") is True and isinstance(extra.get("categories"), list):
        codes = list(extra["categories"])
    if codes is None:
        return None
    try:
        if col.type == "integer":
            return [int(c) for c in codes]
        if col.type == "float":
            return [float(c) for c in codes]
        if col.type == "date":
            return [c if isinstance(c, date) else date.fromisoformat(str(c)) for c in codes]
    except (TypeError, ValueError):
        return None
    return [str(c) for c in codes]


def metadata_bounds(col: ColumnMeta) -> tuple[float, float] | None:
    """The steward's published clamping bounds (extra keys ``minimum`` / ``maximum``)."""
    extra = col.model_extra or {}
    found: list[float] = []
    for key in ("minimum", "maximum"):
        v = extra.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        found.append(float(v))
    lo, hi = found
    return (lo, hi) if lo < hi else None


def _dataset_matches(name: str, meta: DatasetMeta) -> bool:
    return name == meta.name or name.endswith("/" + meta.name)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


class _Checker:
    def __init__(self, q: PrivateQuery, meta: DatasetMeta,
                 policy_bounds: dict[str, tuple[float, float]] | None) -> None:
        self.q, self.meta, self.policy_bounds = q, meta, policy_bounds or {}
        self.problems: list[str] = []
        self.names = [c.name for c in meta.columns]

    def col(self, name: str | None, role: str, use: ColumnUse = ColumnUse.MEASURE
            ) -> ColumnMeta | None:
        if name is None:
            self.problems.append(f"{role} needs a column")
            return None
        col = self.meta.column(name)
        if col is None:
            self.problems.append(f"{role}: column {name!r} is not in {self.meta.name}; its "
                                 f"columns are {', '.join(self.names)}")
            return None
        # The tier's column rule (ndl.core.tiers), the same one every face and the datasite
        # apply: identifiers never; quasi-identifiers only with published values, or measured.
        problem = tiers.column_use_problem(self.meta.tier, col, use,
                                           published=public_values(col) is not None)
        if problem is not None:
            self.problems.append(f"{role}: {problem}")
            return None
        return col

    def bounds(self, agg: Aggregate, col: ColumnMeta, role: str) -> tuple[float, float] | None:
        allowed = self.policy_bounds.get(col.name) or metadata_bounds(col)
        b = agg.bounds
        if b is None:
            if allowed is None:
                self.problems.append(
                    f"{role}: give bounds [lo, hi] for {col.name!r}: the dataset publishes no "
                    "minimum/maximum for it, and bounds must not come from the data")
            b = allowed
        elif not (math.isfinite(b[0]) and math.isfinite(b[1]) and b[0] < b[1]):
            self.problems.append(f"{role}: bounds must be finite numbers with lo < hi")
            return None
        elif allowed is not None and not (allowed[0] <= b[0] and b[1] <= allowed[1]):
            self.problems.append(
                f"{role}: bounds [{_fmt(b[0])}, {_fmt(b[1])}] for {col.name!r} must lie "
                f"within the published [{_fmt(allowed[0])}, {_fmt(allowed[1])}]")
            return None
        if b is not None and col.type == "integer":
            lo, hi = math.ceil(b[0]), math.floor(b[1])
            if lo >= hi:
                self.problems.append(f"{role}: bounds hold fewer than two integers")
                return None
            b = (float(lo), float(hi))
        return b

    def aggregate(self, i: int, agg: Aggregate, n_groups: int) -> AggPlan | None:
        role = f"aggregate {i + 1} ({agg.op})"
        if agg.op == "count":
            if agg.column is not None or agg.bounds is not None or agg.bins is not None:
                self.problems.append(f"{role}: count takes no column, bounds or bins "
                                     "(it counts rows)")
            return AggPlan("count", agg.label or "count")
        col = self.col(agg.column, role)
        if col is None:
            return None
        if agg.op == "quantile" and agg.q is None:
            self.problems.append(f"{role}: give q, the quantile in (0, 1), e.g. 0.5")
        if agg.op != "quantile" and agg.q is not None:
            self.problems.append(f"{role}: q is only for quantiles")
        if agg.op != "histogram" and agg.bins is not None:
            self.problems.append(f"{role}: bins are only for histograms")
        if agg.op == "histogram":
            return self.histogram(role, agg, col, n_groups)
        if col.type not in ("integer", "float"):
            self.problems.append(f"{role}: {agg.op} needs an integer or float column; "
                                 f"{col.name!r} is {col.type}")
            return None
        b = self.bounds(agg, col, role)
        if b is None:
            return None
        if agg.op == "quantile":
            qv = agg.q or 0.5
            label = agg.label or (f"median({col.name})" if qv == 0.5
                                  else f"quantile({col.name}, {qv:g})")
        else:
            label = agg.label or f"{agg.op}({col.name})"
        return AggPlan(agg.op, label, col.name, col.type == "integer", b, q=agg.q)

    def histogram(self, role: str, agg: Aggregate, col: ColumnMeta, n_groups: int
                  ) -> AggPlan | None:
        cats = public_values(col)
        # With published values, bins are those values (or a listed subset of them); an int
        # asks for equal-width numeric bins instead.
        if cats is not None and (col.type in ("string", "boolean")
                                 or not isinstance(agg.bins, int)):
            if agg.bins is not None:
                if not isinstance(agg.bins, list) or any(v not in cats for v in agg.bins):
                    self.problems.append(f"{role}: bins for {col.name!r} must be a list of "
                                         f"its public values: {cats[:20]}")
                    return None
                cats = list(agg.bins)
            if len(cats) * n_groups > MAX_CELLS:
                self.problems.append(f"{role}: more than {MAX_CELLS} cells")
                return None
            return AggPlan("histogram", agg.label or f"histogram({col.name})", col.name,
                           categories=cats, cell_labels=[f"{col.name}={v}" for v in cats])
        if col.type not in ("integer", "float"):
            self.problems.append(f"{role}: a histogram needs a numeric column or one with "
                                 f"public values (code_list); {col.name!r} is {col.type} "
                                 "without published values")
            return None
        if isinstance(agg.bins, int) and not isinstance(agg.bins, bool):
            if not 1 <= agg.bins <= MAX_HISTOGRAM_EDGES - 1:
                self.problems.append(f"{role}: bins must be 1..{MAX_HISTOGRAM_EDGES - 1}")
                return None
            b = self.bounds(agg, col, role)
            if b is None:
                return None
            step = (b[1] - b[0]) / agg.bins
            edges = [b[0] + j * step for j in range(agg.bins)] + [b[1]]
        elif isinstance(agg.bins, list):
            edges = []
            for v in agg.bins:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    self.problems.append(f"{role}: bin edges must be finite numbers")
                    return None
                edges.append(float(v))
            if not 2 <= len(edges) <= MAX_HISTOGRAM_EDGES or any(
                    a >= b for a, b in itertools.pairwise(edges)):
                self.problems.append(f"{role}: bin edges must be 2..{MAX_HISTOGRAM_EDGES} "
                                     "strictly increasing numbers")
                return None
        elif (published := _published_bands(col)) is not None:
            edges = published
        else:
            self.problems.append(f"{role}: give bins: a number of equal-width bins within "
                                 "the bounds, or a list of edges (the column publishes no "
                                 "bands)")
            return None
        cells = ([f"{col.name} < {_fmt(edges[0])}"]
                 + [f"{col.name} in [{_fmt(a)}, {_fmt(b)}{']' if j == len(edges) - 2 else ')'}"
                    for j, (a, b) in enumerate(itertools.pairwise(edges))]
                 + [f"{col.name} > {_fmt(edges[-1])}"])
        if len(cells) * n_groups > MAX_CELLS:
            self.problems.append(f"{role}: more than {MAX_CELLS} cells")
            return None
        return AggPlan("histogram", agg.label or f"histogram({col.name})", col.name,
                       col.type == "integer", edges=edges, cell_labels=cells)

    def group(self, name: str) -> GroupKey | None:
        col = self.col(name, "group_by", ColumnUse.GROUP_KEY)
        if col is None:
            return None
        values = public_values(col)
        if values is None:
            self.problems.append(
                f"group_by: {name!r} is not a public key; group only by columns whose values "
                "are published (a code_list, a boolean, or public_key: true with "
                "categories), so that which groups exist reveals nothing")
            return None
        return GroupKey(name, values)

    def filter(self, f: Filter) -> None:
        col = self.col(f.column, f"where {f.column} {f.op}", ColumnUse.FILTER)
        if col is None:
            return
        values = f.value if isinstance(f.value, list) else [f.value]
        if (f.op == "in") != isinstance(f.value, list) or (f.op == "in" and not values):
            self.problems.append(f"where {f.column}: 'in' takes a non-empty list; other "
                                 "operators take one value")
            return
        for v in values:
            if not _value_fits(v, col):
                self.problems.append(f"where {f.column}: {v!r} is not a {col.type} value")
                return
        if col.type in ("string", "boolean") and f.op not in ("=", "!=", "in"):
            self.problems.append(f"where {f.column}: {col.type} columns take = != or in")


def _published_bands(col: ColumnMeta) -> list[float] | None:
    """The steward's band edges for a numeric column (extra key ``bands``, e.g. [0, 18, 65,
    120]): public like a code list, so a histogram over them reveals only noisy counts."""
    bands = (col.model_extra or {}).get("bands")
    if not isinstance(bands, list) or not 2 <= len(bands) <= MAX_HISTOGRAM_EDGES:
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
           for v in bands):
        return None
    edges = [float(v) for v in bands]
    return edges if all(a < b for a, b in itertools.pairwise(edges)) else None


def _value_fits(v: Scalar, col: ColumnMeta) -> bool:
    if col.type == "boolean":
        return isinstance(v, bool)
    if col.type == "string":
        return isinstance(v, str)
    if col.type == "date":
        try:
            date.fromisoformat(str(v))
        except ValueError:
            return False
        return isinstance(v, str)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return math.isfinite(v) and (col.type == "float" or float(v).is_integer())


def problems(q: PrivateQuery, meta: DatasetMeta,
             policy_bounds: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """Every reason the query cannot run on this dataset (empty if it can)."""
    try:
        check_query(q, meta, policy_bounds)
    except InvalidInput as exc:
        return list(exc.detail or [exc.message])
    return []


def check_query(q: PrivateQuery, meta: DatasetMeta,
                policy_bounds: dict[str, tuple[float, float]] | None = None, *,
                max_rows_per_person: int | None = None) -> Plan:
    """Resolve the query against the metadata, or raise InvalidInput naming what is allowed.

    ``policy_bounds`` (column: (lo, hi)) replace the metadata's minimum/maximum as the limits
    query bounds must lie within; ``max_rows_per_person`` is the policy's default for the
    person-level bound (a query may choose its own; else metadata, else 5).
    """
    c = _Checker(q, meta, policy_bounds)
    if meta.tier == "controlled":
        raise InvalidInput(f"{meta.name} is controlled data: it is reached by reviewed jobs, "
                           "not by private queries")
    if not _dataset_matches(q.dataset, meta):
        c.problems.append(f"the query names dataset {q.dataset!r} but runs on {meta.name!r}")
    if len(set(q.group_by)) != len(q.group_by):
        c.problems.append("group_by: each column may appear once")
    groups = [g for g in (c.group(n) for n in q.group_by) if g is not None]
    n_groups = math.prod(len(g.values) for g in groups)
    if n_groups > MAX_GROUPS:
        c.problems.append(f"group_by: {n_groups} groups; at most {MAX_GROUPS}")
    for f in q.where:
        c.filter(f)
    aggs = [a for a in (c.aggregate(i, agg, n_groups) for i, agg in enumerate(q.aggregates))
            if a is not None]
    labels = [a.label for a in aggs] + q.group_by
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup is not None:
        c.problems.append(f"output column {dup!r} appears twice; give each aggregate a label")
    if c.problems:
        head = c.problems[0] if len(c.problems) == 1 else \
            f"{len(c.problems)} problems: " + "; ".join(c.problems)
        raise InvalidInput(f"{head}. Allowed: {ALLOWED}", detail=c.problems)
    pcol = person_column(meta)
    k = None
    if pcol is not None:
        extra = (meta.model_extra or {}).get("max_rows_per_person")
        if not (isinstance(extra, int) and 1 <= extra <= MAX_ROWS_PER_PERSON):
            extra = None
        k = q.max_rows_per_person or max_rows_per_person or extra \
            or DEFAULT_MAX_ROWS_PER_PERSON
    return Plan(q, groups, aggs, list(q.where), pcol, k)


def parse_query(data: Any) -> PrivateQuery:
    """Validate a query from JSON; errors name the field."""
    try:
        return PrivateQuery.model_validate(data)
    except ValidationError as exc:
        found = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                 for e in exc.errors()]
        first = found[0]
        raise InvalidInput(f"query field {first['field']}: {first['problem']}. "
                           f"Allowed: {ALLOWED}", detail=found) from exc

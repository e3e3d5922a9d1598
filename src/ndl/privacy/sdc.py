"""Statistical disclosure control (SDC): the one module that checks an output table.

The controlled tier's job runner, the safeguarded tier and the linkage enclave all call
:func:`check_table` (and :func:`check_model` for fitted models) before a human output checker
sees anything. Pure Python, no I/O: earlier releases come in as :class:`TableStats` (the
datasite keeps them in :class:`ndl.privacy.sdc_ledger.ReleaseLedger`).

The rules run in this order, always on the TRUE values:

1. input sanity: a NaN or infinite statistic is suppressed and sent to review;
2. primary suppression: threshold, (n, k) dominance, p-ratio and empty cells;
3. differencing against earlier releases of the same dataset (a cell differing from an
   earlier one by fewer than ``threshold`` people is suppressed and sent to review) — it runs
   before secondary suppression so that those cells are protected by it too;
4. secondary suppression, so no suppressed cell can be worked out from a line total;
5. a table-level differencing check on grand totals (review only);
6. rounding, last, of the cells that survived. Rounding before suppressing (as ACRO 1.0.2
   does) can release a count of 8 as 10; here a suppressed cell is ``None`` and never rounded.

Defaults follow common practice (ACRO's): threshold 10, dominance n=2 k=0.9, p-ratio 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from ndl.core.errors import InvalidInput

Key = tuple[str, ...]
Statistic = Literal["count", "sum", "mean"]
Rule = Literal["threshold", "dominance", "p_ratio", "zero", "secondary", "differencing",
               "residual_df", "negative", "not_finite"]
Action = Literal["suppressed", "review"]
Audience = Literal["checker", "researcher"]

_STATISTICS = ("count", "sum", "mean")
# Subset sums of floats can exceed the float total by rounding alone.
_REL_EPS = 1e-9


@dataclass(frozen=True)
class SdcPolicy:
    """The disclosure-control settings; recorded with every output (:meth:`to_json`).

    Building one checks every field (types and ranges) and raises :class:`InvalidInput`
    naming the field, so a policy that exists is a usable one.
    """

    threshold: int = 10            # minimum contributors per cell
    dominance_n: int = 2           # (n, k) rule: the n largest contributors ...
    dominance_k: float = 0.9       # ... must not exceed k of the cell total
    p_ratio: float = 0.1           # (total - largest - second) / largest must be >= p
    zeros_disclosive: bool = True  # a zero count cell is suppressed (it tells "none of X")
    rounding_base: int = 5         # counts and sums released rounded to this base (1 = none)
    min_residual_df: int = 10      # models: residual degrees of freedom at least this
    differencing: bool = True      # check each table against earlier releases

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = _POLICY_KINDS[f.name]
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = (isinstance(value, int | float) and not isinstance(value, bool)
                      and math.isfinite(value))
            if not ok:
                word = {bool: "true or false", int: "a whole number",
                        float: "a finite number"}[kind]
                raise InvalidInput(f"SDC policy field '{f.name}' is {value!r}; it must be {word}")
        _at_least("threshold", self.threshold, 1)
        _at_least("dominance_n", self.dominance_n, 1)
        _at_least("rounding_base", self.rounding_base, 1)
        _at_least("min_residual_df", self.min_residual_df, 0)
        _at_least("p_ratio", self.p_ratio, 0)
        if not 0 < self.dominance_k <= 1:
            raise InvalidInput(f"SDC policy field 'dominance_k' is {self.dominance_k!r}; it must "
                               "be above 0 and at most 1 (0.9 means 90% of the cell total)")

    def to_json(self) -> dict[str, int | float | bool]:
        """Every field by name: enough to rebuild the policy with :meth:`from_json`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, raw: object) -> SdcPolicy:
        """Parse a policy object; missing fields take their defaults.

        Raises :class:`InvalidInput` naming the field on unknown keys, wrong types (a boolean
        is not a number), NaN or infinity, and out-of-range values.
        """
        if not isinstance(raw, Mapping):
            raise InvalidInput(f"an SDC policy must be a JSON object, not {type(raw).__name__}")
        unknown = sorted(str(k) for k in raw if k not in _POLICY_KINDS)
        if unknown:
            raise InvalidInput(f"unknown SDC policy field(s) {', '.join(map(repr, unknown))}; "
                               f"known fields are {', '.join(_POLICY_KINDS)}")
        return cls(**{str(k): v for k, v in raw.items()})


_POLICY_KINDS: dict[str, type] = {
    "threshold": int, "dominance_n": int, "dominance_k": float, "p_ratio": float,
    "zeros_disclosive": bool, "rounding_base": int, "min_residual_df": int, "differencing": bool,
}


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise InvalidInput(f"SDC policy field '{name}' is {value!r}; it must be at least {low}")


@dataclass(frozen=True)
class CellStats:
    """One cell's true statistics, as the job computed them (never released as such)."""

    key: Key
    n: int                          # contributors (rows) in the cell
    value: float                    # the statistic as the job computed it (count, sum or mean)
    total: float | None = None      # sum of |contributions|; None for count tables
    top: tuple[float, ...] = ()     # the largest |contributions|, descending


@dataclass(frozen=True)
class TableStats:
    """An output table's true statistics: the input to :func:`check_table`."""

    name: str
    dataset: str                    # e.g. "dfe/pupils" (several joined: sorted, comma-joined)
    dimensions: tuple[str, ...]     # column names, e.g. ("sen_status", "fsm")
    statistic: Statistic
    cells: tuple[CellStats, ...]


@dataclass(frozen=True)
class Finding:
    """Why a cell (or the whole table, ``cell=None``) was suppressed or needs a human."""

    cell: Key | None
    rule: Rule
    action: Action
    detail: str                     # for the OUTPUT CHECKER (may state true values)
    researcher_detail: str          # for the RESEARCHER: never a suppressed cell's true value

    def to_json(self, audience: Audience = "checker") -> dict[str, Any]:
        """JSON-safe; the researcher's view leaves out ``detail`` and says "threshold" for
        an empty cell, since "zero" would itself tell that nobody is in the group."""
        body: dict[str, Any] = {
            "cell": None if self.cell is None else list(self.cell),
            "rule": self.rule, "action": self.action,
            "researcher_detail": self.researcher_detail,
        }
        if audience == "checker":
            body["detail"] = self.detail
        elif self.rule == "zero":
            body["rule"] = "threshold"
        return body


@dataclass(frozen=True)
class TableCheck:
    """The outcome of a check: what may be released, and every finding behind it."""

    name: str
    policy: SdcPolicy
    released: dict[Key, float | None]   # None = suppressed; others rounded
    findings: tuple[Finding, ...]

    @property
    def suppressed(self) -> int:
        """How many cells are withheld."""
        return sum(1 for v in self.released.values() if v is None)

    @property
    def needs_review(self) -> bool:
        """True when any finding asks a human to judge (action "review")."""
        return any(f.action == "review" for f in self.findings)

    def to_json(self, *, audience: Audience = "checker") -> dict[str, Any]:
        """JSON-safe: keys as lists, the policy included. ``audience="researcher"`` drops the
        checker's details (which may state true counts)."""
        return {
            "name": self.name,
            "policy": self.policy.to_json(),
            "cells": [{"key": list(k), "value": v} for k, v in self.released.items()],
            "findings": [f.to_json(audience) for f in self.findings],
            "suppressed": self.suppressed,
            "needs_review": self.needs_review,
        }


# ---------------------------------------------------------------- input validation


def _validate(table: TableStats) -> None:
    """Raise InvalidInput for a table no check could make sense of (a bug in the caller)."""
    where = f"table {table.name!r}"
    if table.statistic not in _STATISTICS:
        raise InvalidInput(f"{where}: statistic {table.statistic!r} is not one of "
                           f"{', '.join(_STATISTICS)}")
    dims = table.dimensions
    if not all(isinstance(d, str) for d in dims) or len(set(dims)) != len(dims):
        raise InvalidInput(f"{where}: dimensions {dims!r} must be distinct column names")
    seen: set[Key] = set()
    for cell in table.cells:
        key = cell.key
        if (not isinstance(key, tuple) or len(key) != len(dims)
                or not all(isinstance(part, str) for part in key)):
            raise InvalidInput(f"{where}: cell key {key!r} must be a tuple of {len(dims)} "
                               f"string(s), one per dimension {dims!r}")
        if key in seen:
            raise InvalidInput(f"{where}: cell {key!r} appears twice; give each cell once")
        seen.add(key)
        if not isinstance(cell.n, int) or isinstance(cell.n, bool) or cell.n < 0:
            raise InvalidInput(f"{where}: cell {key!r} has n={cell.n!r}; the number of "
                               "contributors must be a whole number, 0 or more")


def _finite(cell: CellStats) -> bool:
    numbers = [cell.value, *cell.top] + ([] if cell.total is None else [cell.total])
    return all(isinstance(x, int | float) and math.isfinite(x) for x in numbers)


# ---------------------------------------------------------------- primary suppression


def _primary(cell: CellStats, table: TableStats, policy: SdcPolicy) -> Finding | None:
    """The first rule (sanity, then primary) that withholds this cell, if any."""
    t = policy.threshold
    few = f"fewer than {t} contributors"

    def found(rule: Rule, detail: str, researcher: str, action: Action = "suppressed") -> Finding:
        return Finding(cell.key, rule, action, detail, researcher)

    if table.statistic == "count":
        if not _finite(cell):
            return found("not_finite", f"count is {cell.value!r}, not a finite number",
                         _NOT_FINITE, "review")
        if cell.value != cell.n:
            raise InvalidInput(f"table {table.name!r}: count cell {cell.key!r} has value "
                               f"{cell.value!r} but n={cell.n}; a count's value is its n")
        if cell.n == 0:
            if not policy.zeros_disclosive:
                return None
            return found("zero", "count is 0: it would tell that nobody in this group is in "
                         "the data", few)
        if cell.n < t:
            return found("threshold", f"count {cell.n} is below the threshold of {t}", few)
        return None
    if cell.n == 0:
        # An empty group has no sum or mean worth releasing, and its emptiness is the secret.
        return found("zero", f"no contributors: the {table.statistic} of an empty group", few)
    if not _finite(cell):
        return found("not_finite", f"{table.statistic} {cell.value!r}, total {cell.total!r} or "
                     f"largest contributions {cell.top!r} not finite", _NOT_FINITE, "review")
    total = cell.total
    if total is None:
        raise InvalidInput(f"table {table.name!r}, cell {cell.key!r}: a {table.statistic} cell "
                           "needs total, the sum of its contributions' absolute values, for "
                           "the dominance rules")
    if total < 0 or any(x < 0 for x in cell.top):
        return found("negative", f"total {total!r} or largest contributions {cell.top!r} are "
                     "negative, but they are absolute values: the job's statistics are wrong",
                     "the job's statistics for this cell are inconsistent; an output checker "
                     "will look at it", "review")
    top = sorted(cell.top, reverse=True)
    _check_magnitudes(cell, table, policy, top, total)
    if cell.n < t:
        return found("threshold", f"{cell.n} contributors, below the threshold of {t}", few)
    n, k = policy.dominance_n, policy.dominance_k
    largest = sum(top[:n])
    if largest > k * total:
        return found("dominance", f"the {n} largest contributions ({largest:g}) are "
                     f"{largest / total:.1%} of the total {total:g}, above {k:g}",
                     f"its {n} largest contributor(s) make up more than {k * 100:g}% of "
                     "the cell's total")
    x1, x2 = top[0], (top[1] if len(top) > 1 else 0.0)
    if x1 > 0 and (total - x1 - x2) / x1 < policy.p_ratio:
        rest = (total - x1 - x2) / x1
        return found("p_ratio", f"the rest after the two largest ({x1:g}, {x2:g}) is "
                     f"{rest:.1%} of the largest, below p={policy.p_ratio:g}",
                     "a contributor could estimate another's value to within "
                     f"{policy.p_ratio * 100:g}%")
    return None


_NOT_FINITE = ("the statistic is not a finite number (NaN or infinity); an output checker "
               "will look at it")


def _check_magnitudes(cell: CellStats, table: TableStats, policy: SdcPolicy,
                      top: list[float], total: float) -> None:
    """Refuse a sum/mean cell whose total and largest contributions cannot be right."""
    where = f"table {table.name!r}, cell {cell.key!r}"
    need = min(cell.n, max(2, policy.dominance_n))
    if not need <= len(top) <= cell.n:
        raise InvalidInput(f"{where}: top holds {len(top)} contribution(s); give the {need} "
                           f"largest absolute contributions (at most n={cell.n})")
    if sum(top) > total + _REL_EPS * max(1.0, abs(total)):
        raise InvalidInput(f"{where}: the largest contributions add up to more than total "
                           f"({sum(top):g} > {total:g}); total must be the sum of all "
                           "absolute contributions")


# ---------------------------------------------------------------- differencing


def _reorder(mine: tuple[str, ...], theirs: tuple[str, ...]) -> list[int] | None:
    """Positions in ``theirs`` of each of ``mine``'s dimensions, or None if they differ."""
    if sorted(mine) != sorted(theirs):
        return None
    return [theirs.index(d) for d in mine]


def _cell_differencing(table: TableStats, earlier: Sequence[TableStats], policy: SdcPolicy,
                       suppressed: set[Key]) -> list[Finding]:
    """Suppress cells whose true count differs from the same cell of an earlier release by a
    few people: subtracting the two would describe those few."""
    t = policy.threshold
    mine = {c.key: c.n for c in table.cells}
    findings: list[Finding] = []
    for old in earlier:
        order = _reorder(table.dimensions, old.dimensions)
        if order is None:
            continue
        for old_cell in old.cells:
            key = tuple(old_cell.key[i] for i in order)
            if key not in mine or key in suppressed:
                continue
            d = abs(mine[key] - old_cell.n)
            if 0 < d < t:
                suppressed.add(key)
                findings.append(Finding(
                    key, "differencing", "review",
                    f"true count {mine[key]} differs by {d} from {old_cell.n} in the same cell "
                    f"of earlier table {old.name!r}: subtracting would describe {d} people",
                    "suppressed: too close to the same cell of an earlier release from this "
                    "dataset; an output checker will look at it"))
    return findings


def _table_differencing(table: TableStats, earlier: Sequence[TableStats],
                        policy: SdcPolicy) -> Finding | None:
    """A review finding when the table's population is a few people off an earlier one's."""
    t = policy.threshold
    total = sum(c.n for c in table.cells)
    close = []
    for old in earlier:
        old_total = sum(c.n for c in old.cells)
        if 0 < abs(total - old_total) < t:
            close.append(f"{old.name!r} (total {old_total})")
    if not close:
        return None
    return Finding(None, "differencing", "review",
                   f"grand total {total} is within {t} of earlier table(s) "
                   f"{'; '.join(close)}: the populations differ by a few people",
                   f"this table's population differs by fewer than {t} people from an earlier "
                   "release from this dataset; an output checker will look at it")


# ---------------------------------------------------------------- secondary suppression


def _secondary(table: TableStats, suppressed: set[Key]) -> list[Finding]:
    """Protect each suppressed cell from subtraction out of a known line total.

    A "line" is the cells that share every key part but one dimension's (a row, a column);
    a 1-dimensional table is one line, since its grand total can be known. Margins are
    assumed published or derivable, so a line holding exactly one suppressed cell (and 2 or
    more cells) gives it away: its smallest open cell is suppressed too, and the sweep over
    every dimension repeats until nothing changes.

    Limits, on purpose: this is a greedy heuristic, not an optimal (hypercube or linear
    programming) cell suppression. It may suppress more than needed, and two suppressed
    cells in a line are only safe from exact recovery: intervals from several lines
    together can still narrow a cell. Cells absent from the table are not seen at all, so
    a job should report empty groups as cells with n=0.
    """
    size = _size_of(table.statistic)
    dims = table.dimensions
    findings: list[Finding] = []
    changed = True
    while changed:
        changed = False
        for j in range(len(dims)):
            lines: dict[Key, list[CellStats]] = {}
            for cell in table.cells:
                lines.setdefault(cell.key[:j] + cell.key[j + 1:], []).append(cell)
            for line in lines.values():
                hidden = [c for c in line if c.key in suppressed]
                if len(line) < 2 or len(hidden) != 1:
                    continue
                pick = min((c for c in line if c.key not in suppressed),
                           key=lambda c: (size(c), c.key))
                suppressed.add(pick.key)
                changed = True
                findings.append(Finding(
                    pick.key, "secondary", "suppressed",
                    f"suppressed (true n {pick.n}) to protect cell {hidden[0].key!r}: with the "
                    f"total along {dims[j]!r} known, that cell could be worked out",
                    "suppressed so that another suppressed cell cannot be worked out from a "
                    "row or column total"))
    return findings


def _size_of(statistic: str) -> Callable[[CellStats], float]:
    # The cell to give up is the one losing least: the smallest count, or smallest |sum|.
    if statistic == "sum":
        return lambda c: abs(c.value)
    return lambda c: c.n


# ---------------------------------------------------------------- rounding


def round_count(n: int, base: int) -> int:
    """A count rounded half up to ``base``, for a cell that already passed suppression (every
    tier rounds through here: the controlled tier's tables and the safeguarded tier's noisy
    counts). Integer arithmetic: exact, and monotone, so n >= threshold never rounds below the
    threshold's own rounding."""
    return (n + base // 2) // base * base


def _rounded(cell: CellStats, statistic: str, base: int) -> float:
    """The released value of a cell that passed every rule: rounded half up to ``base``."""
    if statistic == "count":
        return round_count(cell.n, base)
    if statistic == "sum":
        if base == 1:
            return float(cell.value)
        return math.floor(cell.value / base + 0.5) * base + 0.0  # + 0.0: no "-0.0"
    return round(float(cell.value), 4)


# ---------------------------------------------------------------- the checks


def check_table(table: TableStats, policy: SdcPolicy,
                earlier: Sequence[TableStats] = ()) -> TableCheck:
    """Check one output table and say what may be released.

    ``earlier`` holds tables already released (true counts, e.g. from the release ledger);
    only count tables of the same dataset are compared (sum and mean tables' differences
    are not checked). Each cell's n is compared, whatever this table's statistic.

    Raises :class:`InvalidInput` only for a malformed table (keys that do not match the
    dimensions, a negative n, a count whose value is not its n, a sum/mean cell without
    total or top); any well-formed table with finite or non-finite numbers gets a result.
    """
    _validate(table)
    findings: list[Finding] = []
    suppressed: set[Key] = set()
    for cell in table.cells:
        finding = _primary(cell, table, policy)
        if finding is not None:
            findings.append(finding)
            suppressed.add(cell.key)
    comparable = [old for old in earlier
                  if old.dataset == table.dataset and old.statistic == "count"]
    if policy.differencing:
        findings.extend(_cell_differencing(table, comparable, policy, suppressed))
    findings.extend(_secondary(table, suppressed))
    if policy.differencing:
        overall = _table_differencing(table, comparable, policy)
        if overall is not None:
            findings.append(overall)
    released: dict[Key, float | None] = {
        cell.key: None if cell.key in suppressed
        else _rounded(cell, table.statistic, policy.rounding_base)
        for cell in table.cells
    }
    return TableCheck(table.name, policy, released, tuple(findings))


def check_model(name: str, residual_df: int, nobs: int, policy: SdcPolicy) -> TableCheck:
    """Check a fitted model's output: too few residual degrees of freedom lets coefficients
    describe individuals, so it goes to review (nothing is suppressed automatically)."""
    for label, value in (("residual_df", residual_df), ("nobs", nobs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"model {name!r}: {label}={value!r} must be a whole number, "
                               "0 or more")
    if residual_df > nobs:
        raise InvalidInput(f"model {name!r}: residual_df={residual_df} exceeds nobs={nobs}; "
                           "residual degrees of freedom are observations minus parameters")
    findings: tuple[Finding, ...] = ()
    if residual_df < policy.min_residual_df:
        findings = (Finding(
            None, "residual_df", "review",
            f"{residual_df} residual degrees of freedom ({nobs} observations), below the "
            f"minimum of {policy.min_residual_df}",
            f"the model has fewer than {policy.min_residual_df} residual degrees of freedom; "
            "an output checker will look at it"),)
    return TableCheck(name, policy, {}, findings)

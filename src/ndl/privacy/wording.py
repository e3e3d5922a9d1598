"""How every face words a differentially private answer's uncertainty.

A DP number without its error bar reads as exact. The MCP tool's text, ``ndl dp-query``, the
SDK and the web page all say each released number the same way, from this module:
"about 1,230, give or take 40 (95%)". The half-width comes from the answer's own aggregate
reports (:class:`ndl.privacy.spec.AggregateReport`), so what is said is what was computed.

Works on the JSON the hub returns (a mapping), so faces need not rebuild the models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WITHHELD = "withheld (too few to show)"


def _decimals(half: float) -> int:
    """Digits worth showing when the noise is ``half`` wide: whole units when it is a unit
    or more, else two significant digits of it."""
    if half >= 1 or half <= 0 or not math.isfinite(half):
        return 0
    return max(0, min(6, 1 - math.floor(math.log10(half))))


def _num(v: float, decimals: int) -> str:
    return f"{v:,.{decimals}f}"


def _plain(v: float) -> str:
    """A number with no error bar to size it: integers whole, others to 3 significant."""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.3g}"


def give_or_take(value: Any, half_width: Any, *, confidence: float = 0.95,
                 rank_error: Any = None) -> str:
    """One released number and its uncertainty, in words.

    ``half_width``: the 95% half-width in the number's units (None when not stated);
    ``rank_error``: for a quantile, how many rows from the true one it may be.

    >>> give_or_take(1234, 40.3)
    'about 1,234, give or take 40 (95%)'
    >>> give_or_take(None, 3.0)
    'withheld (too few to show)'
    """
    if value is None:
        return WITHHELD
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    pct = f"{round(confidence * 100):d}%"
    if isinstance(half_width, int | float) and not isinstance(half_width, bool) \
            and math.isfinite(half_width):
        d = _decimals(float(half_width))
        return (f"about {_num(float(value), d)}, give or take "
                f"{_num(float(half_width), d)} ({pct})")
    if isinstance(rank_error, int | float) and math.isfinite(rank_error):
        return (f"about {_plain(float(value))}, from a row within {math.ceil(rank_error):,} "
                f"rows of the true one ({pct}); noisy by design")
    return f"about {_plain(float(value))} (noisy by design; its error is not stated)"


def expected_error(report: Mapping[str, Any], *, confidence: float = 0.95) -> str:
    """An aggregate's expected error before it is asked (a preview), in words."""
    half, pct = report.get("half_width_95"), f"{round(confidence * 100):d}%"
    if isinstance(half, int | float) and not isinstance(half, bool) and math.isfinite(half):
        return f"give or take {_num(float(half), _decimals(float(half)))} ({pct})"
    if isinstance(half, list):
        known = [float(h) for h in half if isinstance(h, int | float) and math.isfinite(h)]
        if known:
            lo, hi = min(known), max(known)
            d = _decimals(lo)
            return (f"give or take {_num(lo, d)} ({pct})" if lo == hi else
                    f"give or take {_num(lo, d)} to {_num(hi, d)} by group ({pct})")
    rank = report.get("rank_error_95")
    if isinstance(rank, int | float) and math.isfinite(rank):
        return f"within {math.ceil(rank):,} rows of the true one ({pct})"
    if report.get("op") == "mean":
        return "depends on each group's size: stated with the answer"
    return "not stated"


@dataclass(frozen=True)
class Cell:
    """One cell of a DP answer: a group key's value, or a released number in words."""

    column: str
    value: Any
    key: bool
    text: str

    @property
    def withheld(self) -> bool:
        return not self.key and self.value is None


def _cells_of(report: Mapping[str, Any]) -> list[str]:
    cells = report.get("cells")
    return [str(c) for c in cells] if isinstance(cells, list) and cells \
        else [str(report.get("label", ""))]


def worded_rows(answer: Mapping[str, Any]) -> list[list[Cell]]:
    """Every row of a DP answer (the hub's JSON), each number worded with its uncertainty."""
    columns = [str(c) for c in answer.get("columns") or []]
    reports: Sequence[Mapping[str, Any]] = list(answer.get("aggregates") or [])
    confidence = float(answer.get("confidence") or 0.95)
    # Output columns are the group keys, then each aggregate's cells in order.
    owner: list[Mapping[str, Any]] = [r for r in reports for _ in _cells_of(r)]
    n_keys = max(0, len(columns) - len(owner))
    out: list[list[Cell]] = []
    for g, row in enumerate(answer.get("rows") or []):
        cells: list[Cell] = []
        for i, v in enumerate(row):
            name = columns[i] if i < len(columns) else ""
            if i < n_keys or i - n_keys >= len(owner):
                cells.append(Cell(name, v, True, "" if v is None else str(v)))
                continue
            rep = owner[i - n_keys]
            half = rep.get("half_width_95")
            if isinstance(half, list):  # per group (a mean's, after the run)
                half = half[g] if g < len(half) else None
            cells.append(Cell(name, v, False, give_or_take(
                v, half, confidence=confidence, rank_error=rep.get("rank_error_95"))))
        out.append(cells)
    return out


def answer_lines(answer: Mapping[str, Any]) -> list[str]:
    """The answer as sentences, one per row: its group, then each number in words."""
    lines = []
    for row in worded_rows(answer):
        keys = ", ".join(f"{c.column} = {c.text or 'none'}" for c in row if c.key)
        values = "; ".join(f"{c.column}: {c.text}" for c in row if not c.key)
        lines.append(f"{keys}: {values}" if keys else values)
    return lines


__all__ = ["WITHHELD", "Cell", "answer_lines", "expected_error", "give_or_take",
           "worded_rows"]


def privacy_unit(unit: Any, max_rows: Any) -> str:
    """What the noise protects, in words: a person (with their rows capped) or a row.

    The engine words the unit as ``"person (identified by nhs_number; at most 5 rows each)"``
    or ``"row (the dataset has no person identifier)"``, so read its first word: an exact
    match on ``"person"`` once made pages say "a row" where each person was protected. The
    web page and ``ndl dp-query`` both say it with this function, so they cannot disagree.
    """
    first = str(unit or "").split(" ", 1)[0].strip().lower()
    if first == "person":
        cap = f"at most {max_rows} rows per person are used, so " \
            if isinstance(max_rows, int) and max_rows > 0 else ""
        return f"A person: {cap}the noise hides whether any one person is in the data"
    return "A row: the noise hides whether any one row is in the data"

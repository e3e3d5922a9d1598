"""Invariants of disclosure control on random tables (hypothesis)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ndl.privacy.sdc import CellStats, SdcPolicy, TableCheck, TableStats, check_table

policies = st.builds(
    SdcPolicy,
    threshold=st.integers(1, 15),
    dominance_n=st.integers(1, 3),
    dominance_k=st.floats(0.05, 1.0),
    p_ratio=st.floats(0.0, 2.0),
    zeros_disclosive=st.booleans(),
    rounding_base=st.integers(1, 10),
    differencing=st.booleans(),
)


@st.composite
def count_tables(draw: st.DrawFn, dataset: str = "d") -> TableStats:
    """A full grid of 1 to 3 dimensions, each with 1 to 4 categories, or a ragged subset."""
    ndims = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 4)) for _ in range(ndims)]
    keys = [tuple(f"v{i}" for i in combo)
            for combo in itertools.product(*(range(s) for s in sizes))]
    if draw(st.booleans()):  # some jobs leave empty groups out of the table
        keys = draw(st.lists(st.sampled_from(keys), unique=True, min_size=1))
    ns = draw(st.lists(st.integers(0, 40), min_size=len(keys), max_size=len(keys)))
    return TableStats("t", dataset, tuple(f"d{i}" for i in range(ndims)), "count",
                      tuple(CellStats(k, n, float(n)) for k, n in zip(keys, ns, strict=True)))


def lines(table: TableStats) -> list[list[tuple[str, ...]]]:
    out: list[list[tuple[str, ...]]] = []
    for j in range(len(table.dimensions)):
        groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for cell in table.cells:
            groups.setdefault(cell.key[:j] + cell.key[j + 1:], []).append(cell.key)
        out.extend(groups.values())
    return out


def assert_safe(table: TableStats, check: TableCheck, policy: SdcPolicy) -> None:
    true_n = {c.key: c.n for c in table.cells}
    assert set(check.released) == set(true_n)
    for key, value in check.released.items():
        if value is None:
            continue
        n = true_n[key]
        # Nothing under the threshold goes out, except a zero the policy allows.
        assert n >= policy.threshold or (n == 0 and not policy.zeros_disclosive)
        assert value % policy.rounding_base == 0
        # Rounding is monotone: a count at or above threshold never drops below its rounding.
        base = policy.rounding_base
        assert value >= (policy.threshold + base // 2) // base * base or n == 0
    for line in lines(table):
        hidden = sum(1 for k in line if check.released[k] is None)
        assert len(line) < 2 or hidden != 1


@settings(max_examples=300, deadline=None)
@given(count_tables(), policies)
def test_released_counts_are_safe(table: TableStats, policy: SdcPolicy) -> None:
    check = check_table(table, policy)
    assert_safe(table, check, policy)
    assert check.suppressed == sum(1 for v in check.released.values() if v is None)


@settings(max_examples=200, deadline=None)
@given(count_tables(), st.lists(count_tables(), max_size=3), policies)
def test_safe_against_earlier_releases_too(table: TableStats, earlier: list[TableStats],
                                           policy: SdcPolicy) -> None:
    check = check_table(table, policy, earlier)
    assert_safe(table, check, policy)
    # A cell held back only for differencing is always a review, never silent.
    if any(f.rule == "differencing" for f in check.findings):
        assert check.needs_review


finite = st.floats(-1e6, 1e6, allow_nan=False)


@st.composite
def sum_tables(draw: st.DrawFn) -> TableStats:
    statistic = draw(st.sampled_from(["sum", "mean"]))
    cells = []
    for i in range(draw(st.integers(1, 6))):
        contributions = draw(st.lists(finite, max_size=25))
        mags = sorted((abs(x) for x in contributions), reverse=True)
        total = sum(contributions)
        value = total if statistic == "sum" or not contributions else total / len(contributions)
        cells.append(CellStats((f"c{i}",), len(contributions), value, sum(mags), tuple(mags[:3])))
    return TableStats("s", "d", ("c",), statistic, tuple(cells))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(sum_tables(), policies)
def test_sum_and_mean_checks_never_raise_and_hold_back_small_cells(
        table: TableStats, policy: SdcPolicy) -> None:
    check = check_table(table, policy)
    for cell in table.cells:
        if cell.n < policy.threshold or cell.n == 0:
            assert check.released[cell.key] is None
    for line in lines(table):
        assert len(line) < 2 or sum(1 for k in line if check.released[k] is None) != 1

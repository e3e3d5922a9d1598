"""The trusted recomputation of a helper's table lists every combination of its groups, so an
empty group is a cell of nobody (suppressed by the zeros rule), never a telling absence."""

from __future__ import annotations

import pandas as pd
import pytest

from ndl.jobs.evidence import MAX_CELLS, Problem, table_stats
from ndl.jobs.runner import _Stats
from ndl.privacy import sdc


def _frame() -> pd.DataFrame:
    # No row has a = "y" and b = "q": that group is empty.
    return pd.DataFrame({"a": ["x"] * 20 + ["y"] * 15 + ["x"] * 12,
                         "b": ["p"] * 20 + ["p"] * 15 + ["q"] * 12, "v": range(47)})


@pytest.mark.parametrize("value,agg", [(None, "count"), ("v", "sum"), ("v", "mean")])
def test_a_missing_combination_is_a_cell_of_nobody(value: str | None, agg: str) -> None:
    t = table_stats("t", _frame(), ["a", "b"], value, agg)
    cells = {tuple(c["key"]): c for c in t["cells"]}
    assert set(cells) == {("x", "p"), ("x", "q"), ("y", "p"), ("y", "q")}
    assert cells[("y", "q")]["n"] == 0
    check = sdc.check_table(_Stats.table("t", "d", t), sdc.SdcPolicy())
    # The empty cell is suppressed (and, with it, cells that would reveal it from totals).
    assert check.released[("y", "q")] is None
    assert ("y", "q") in {f.cell for f in check.findings if f.rule == "zero"}


def test_every_combination_counts_towards_the_cell_cap() -> None:
    n = 200  # 200 x 200 combinations, though only 200 occur
    frame = pd.DataFrame({"a": [f"a{i}" for i in range(n)], "b": [f"b{i}" for i in range(n)]})
    assert n * n > MAX_CELLS
    with pytest.raises(Problem, match="every combination"):
        table_stats("t", frame, ["a", "b"], None, "count")

"""Disclosure control of output tables: each rule on small hand-built tables."""

from __future__ import annotations

import json
import math

import pytest

from ndl.core.errors import InvalidInput
from ndl.privacy.sdc import (
    CellStats,
    SdcPolicy,
    TableCheck,
    TableStats,
    check_model,
    check_table,
)

POLICY = SdcPolicy()


def count_table(counts: dict[tuple[str, ...], int], *, dims: tuple[str, ...] = ("a",),
                name: str = "t", dataset: str = "dfe/pupils") -> TableStats:
    return TableStats(name, dataset, dims, "count",
                      tuple(CellStats(k, n, float(n)) for k, n in counts.items()))


def sum_cell(key: str, contributions: list[float]) -> CellStats:
    mags = sorted((abs(x) for x in contributions), reverse=True)
    return CellStats((key,), len(contributions), sum(contributions), sum(mags), tuple(mags[:2]))


def sum_table(*cells: CellStats, statistic: str = "sum") -> TableStats:
    return TableStats("s", "dfe/pupils", ("a",), statistic, cells)  # type: ignore[arg-type]


def rules(check: TableCheck) -> dict[tuple[str, ...] | None, str]:
    return {f.cell: f.rule for f in check.findings}


# ---------------------------------------------------------------- the policy


def test_policy_round_trips_and_defaults_are_acros() -> None:
    raw = POLICY.to_json()
    assert raw["threshold"] == 10 and raw["dominance_n"] == 2 and raw["dominance_k"] == 0.9
    assert raw["p_ratio"] == 0.1
    assert SdcPolicy.from_json(json.loads(json.dumps(raw))) == POLICY
    assert SdcPolicy.from_json({"threshold": 5}) == SdcPolicy(threshold=5)
    assert SdcPolicy.from_json({"dominance_k": 1}).dominance_k == 1


@pytest.mark.parametrize(("raw", "field"), [
    ({"threshhold": 5}, "threshhold"),
    ({"threshold": "10"}, "threshold"),
    ({"threshold": 10.0}, "threshold"),
    ({"threshold": True}, "threshold"),
    ({"threshold": 0}, "threshold"),
    ({"dominance_k": float("nan")}, "dominance_k"),
    ({"dominance_k": 0}, "dominance_k"),
    ({"dominance_k": 1.5}, "dominance_k"),
    ({"p_ratio": float("inf")}, "p_ratio"),
    ({"p_ratio": -0.1}, "p_ratio"),
    ({"rounding_base": 0}, "rounding_base"),
    ({"zeros_disclosive": 1}, "zeros_disclosive"),
    ({"differencing": "yes"}, "differencing"),
    ({"dominance_n": 0}, "dominance_n"),
    ({"min_residual_df": -1}, "min_residual_df"),
])
def test_policy_parsing_names_the_bad_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        SdcPolicy.from_json(raw)


def test_policy_must_be_an_object() -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        SdcPolicy.from_json([("threshold", 10)])


# ---------------------------------------------------------------- primary rules


def test_threshold_suppresses_below_and_releases_at_threshold() -> None:
    check = check_table(count_table({("x",): 9, ("y",): 10, ("z",): 40}), POLICY)
    assert check.released[("x",)] is None
    assert rules(check)[("x",)] == "threshold"
    assert check.released[("z",)] == 40


def test_acro_rounding_bug_a_count_of_8_is_never_released_as_10() -> None:
    # ACRO 1.0.2 rounds before suppressing, so 8 -> 10 passes a threshold of 10.
    check = check_table(count_table({("x",): 8, ("y",): 30, ("z",): 50}), POLICY)
    assert check.released[("x",)] is None
    assert 10 not in [v for k, v in check.released.items() if k == ("x",)]


def test_rounding_after_suppression_half_up_to_base() -> None:
    check = check_table(count_table({("a",): 12, ("b",): 13, ("c",): 10, ("d",): 15}),
                        POLICY)
    assert check.released == {("a",): 10, ("b",): 15, ("c",): 10, ("d",): 15}
    unrounded = check_table(count_table({("a",): 12, ("b",): 13}),
                            SdcPolicy(rounding_base=1))
    assert unrounded.released == {("a",): 12, ("b",): 13}


def test_zero_cells_follow_the_policy() -> None:
    table = count_table({("a",): 0, ("b",): 20, ("c",): 30})
    strict = check_table(table, POLICY)
    assert strict.released[("a",)] is None and rules(strict)[("a",)] == "zero"
    lenient = check_table(table, SdcPolicy(zeros_disclosive=False))
    assert lenient.released == {("a",): 0, ("b",): 20, ("c",): 30}
    assert lenient.findings == ()


def test_zero_shows_as_threshold_to_the_researcher() -> None:
    check = check_table(count_table({("a",): 0, ("b",): 20, ("c",): 30}), POLICY)
    researcher = check.to_json(audience="researcher")
    assert {f["rule"] for f in researcher["findings"]} == {"threshold", "secondary"}
    assert all("detail" not in f for f in researcher["findings"])
    assert "zero" in {f["rule"] for f in check.to_json()["findings"]}


def test_dominance_boundary() -> None:
    # Two largest exactly 90% of the total: allowed; a hair over: suppressed.
    at = sum_cell("at", [45, 45, *[1.0] * 10])
    over = sum_cell("over", [45, 45.5, *[1.0] * 10])
    check = check_table(sum_table(at, over, sum_cell("c", [5.0] * 12)), POLICY)
    assert rules(check).get(("at",)) != "dominance"
    assert rules(check)[("over",)] == "dominance"


def test_dominance_uses_absolute_contributions() -> None:
    # Sum near zero but two large opposite contributions dominate the magnitudes.
    cell = sum_cell("x", [100, -100, *[1.0] * 10])
    check = check_table(sum_table(cell, sum_cell("y", [5.0] * 12)), POLICY)
    assert rules(check)[("x",)] == "dominance"


def test_p_ratio_boundary() -> None:
    policy = SdcPolicy(dominance_k=1.0)  # dominance off: p-ratio alone
    # rest / largest: exactly 0.1 is allowed, below 0.1 is not.
    at = CellStats(("at",), 12, 120.0, 120.0, (100.0, 10.0))
    below = CellStats(("below",), 12, 119.0, 119.0, (100.0, 10.0))
    check = check_table(sum_table(at, below, sum_cell("c", [5.0] * 12)), policy)
    assert ("at",) not in rules(check) or rules(check)[("at",)] == "secondary"
    assert rules(check)[("below",)] == "p_ratio"


def test_p_ratio_skipped_when_all_contributions_are_zero() -> None:
    zeros = CellStats(("z",), 12, 0.0, 0.0, (0.0, 0.0))
    check = check_table(sum_table(zeros, sum_cell("c", [5.0] * 12)), POLICY)
    assert check.findings == ()
    assert check.released[("z",)] == 0.0


def test_sum_threshold_empty_cell_and_rounding() -> None:
    few = sum_cell("few", [5.0] * 7)
    empty = CellStats(("empty",), 0, 0.0, 0.0, ())
    ok = sum_cell("ok", [5.2] * 12)
    check = check_table(sum_table(few, empty, ok, sum_cell("ok2", [3.0] * 20)),
                        SdcPolicy(zeros_disclosive=False))
    assert rules(check)[("few",)] == "threshold"
    assert rules(check)[("empty",)] == "zero"  # an empty sum is never released
    assert check.released[("ok",)] == 60.0  # 62.4 to base 5
    assert check.released[("ok2",)] == 60.0


def test_mean_kept_to_four_decimals_and_empty_mean_is_not_a_finding_of_nan() -> None:
    cells = tuple(CellStats((k,), 12, v, 120.0, (10.0, 10.0))
                  for k, v in (("a", 3.14159265), ("b", 2.0)))
    check = check_table(TableStats("m", "d", ("a",), "mean", cells), POLICY)
    assert check.released == {("a",): 3.1416, ("b",): 2.0}
    empty = CellStats(("c",), 0, math.nan, None, ())  # the mean of nobody: NaN
    with_empty = check_table(TableStats("m", "d", ("a",), "mean", (*cells, empty)), POLICY)
    assert rules(with_empty) == {("c",): "zero", ("a",): "secondary"}
    assert not with_empty.needs_review


# ---------------------------------------------------------------- input sanity


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_suppressed_for_review(bad: float) -> None:
    cell = CellStats(("x",), 12, bad, 50.0, (5.0, 5.0))
    check = check_table(sum_table(cell, sum_cell("y", [5.0] * 12), sum_cell("z", [4.0] * 12)),
                        POLICY)
    assert check.released[("x",)] is None
    assert rules(check)[("x",)] == "not_finite"
    assert check.needs_review
    json.dumps(check.to_json(), allow_nan=False)  # nothing non-finite leaks into the output


def test_non_finite_total_or_top_and_count() -> None:
    cell = CellStats(("x",), 12, 10.0, math.inf, (5.0, 5.0))
    assert rules(check_table(sum_table(cell), POLICY))[("x",)] == "not_finite"
    counts = TableStats("c", "d", ("a",), "count", (CellStats(("x",), 12, math.nan),))
    assert check_table(counts, POLICY).needs_review


def test_negative_magnitudes_go_to_review() -> None:
    cell = CellStats(("x",), 12, -10.0, -10.0, (-1.0, -1.0))
    check = check_table(sum_table(cell), POLICY)
    assert rules(check)[("x",)] == "negative" and check.needs_review
    assert check.released[("x",)] is None


@pytest.mark.parametrize(("table", "words"), [
    (count_table({("x",): -1}), "n=-1"),
    (count_table({("x", "y"): 12}), "2 string|1 string"),
    (TableStats("t", "d", ("a",), "count", (CellStats(("x",), 12, 11.0),)), "value"),
    (TableStats("t", "d", ("a",), "count", (CellStats(("x",), 12, 12.0),) * 2), "twice"),
    (TableStats("t", "d", ("a",), "sum", (CellStats(("x",), 12, 12.0),)), "total"),
    (TableStats("t", "d", ("a",), "sum", (CellStats(("x",), 12, 12.0, 12.0, (1.0,)),)), "top"),
    (TableStats("t", "d", ("a",), "sum", (CellStats(("x",), 12, 12.0, 5.0, (4.0, 3.0)),)),
     "more than total"),
    (TableStats("t", "d", ("a",), "median", ()), "statistic"),  # type: ignore[arg-type]
])
def test_malformed_tables_are_refused(table: TableStats, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        check_table(table, POLICY)


# ---------------------------------------------------------------- secondary suppression


def test_secondary_in_one_dimension_protects_against_the_grand_total() -> None:
    check = check_table(count_table({("a",): 3, ("b",): 40, ("c",): 25, ("d",): 60}), POLICY)
    assert check.released[("a",)] is None
    assert check.released[("c",)] is None  # the smallest other cell
    assert rules(check)[("c",)] == "secondary"
    assert check.released[("b",)] == 40 and check.released[("d",)] == 60
    assert check.suppressed == 2


def test_no_secondary_when_two_cells_already_hidden() -> None:
    check = check_table(count_table({("a",): 3, ("b",): 4, ("c",): 25}), POLICY)
    assert [f.rule for f in check.findings] == ["threshold", "threshold"]
    assert check.released[("c",)] == 25


def test_secondary_in_two_dimensions_cascades_until_every_line_is_safe() -> None:
    counts: dict[tuple[str, ...], int] = {
        ("s", "y"): 5, ("s", "n"): 30, ("s", "u"): 50,
        ("t", "y"): 40, ("t", "n"): 20, ("t", "u"): 60,
        ("u", "y"): 70, ("u", "n"): 80, ("u", "u"): 90}
    check = check_table(count_table(counts, dims=("sen", "fsm")), POLICY)
    hidden = {k for k, v in check.released.items() if v is None}
    # Row s: hide 30 with 5; column y: hide 40 with 5; column n then row t close the rectangle.
    assert hidden == {("s", "y"), ("s", "n"), ("t", "y"), ("t", "n")}
    for j in range(2):
        lines: dict[tuple[str, ...], int] = {}
        for k in counts:
            line = k[:j] + k[j + 1:]
            lines[line] = lines.get(line, 0) + (k in hidden)
        assert 1 not in lines.values()


def test_secondary_picks_smallest_sum_by_magnitude() -> None:
    check = check_table(sum_table(sum_cell("a", [5.0] * 3), sum_cell("b", [9.0] * 12),
                                  sum_cell("c", [-1.0] * 12), sum_cell("d", [20.0] * 12)),
                        POLICY)
    assert rules(check)[("c",)] == "secondary"


# ---------------------------------------------------------------- differencing


def test_differencing_same_cells_suppressed_for_review() -> None:
    earlier = count_table({("a",): 40, ("b",): 50, ("c",): 60}, name="first")
    now = count_table({("a",): 43, ("b",): 50, ("c",): 60}, name="second")
    check = check_table(now, POLICY, [earlier])
    assert rules(check)[("a",)] == "differencing"
    assert check.released[("a",)] is None
    assert check.needs_review
    # The differenced cell is protected from its line total like any suppressed cell.
    assert check.suppressed == 2


def test_differencing_matches_dimensions_in_any_order_and_ignores_other_datasets() -> None:
    earlier = count_table({("y", "s"): 40, ("n", "s"): 50}, dims=("fsm", "sen"))
    now = count_table({("s", "y"): 45, ("s", "n"): 50}, dims=("sen", "fsm"))
    assert rules(check_table(now, POLICY, [earlier]))[("s", "y")] == "differencing"
    other = count_table({("y", "s"): 40, ("n", "s"): 50}, dims=("fsm", "sen"), dataset="ons/x")
    assert check_table(now, POLICY, [other]).findings == ()


def test_differencing_table_totals_and_switch_off() -> None:
    earlier = count_table({("x",): 500}, name="all")
    now = count_table({("a",): 200, ("b",): 297}, name="split")
    check = check_table(now, POLICY, [earlier])
    overall = [f for f in check.findings if f.cell is None]
    assert [f.rule for f in overall] == ["differencing"] and check.needs_review
    assert "'all'" in overall[0].detail and "'all'" not in overall[0].researcher_detail
    assert check.released == {("a",): 200, ("b",): 295}  # review only, nothing suppressed
    assert check_table(now, SdcPolicy(differencing=False), [earlier]).findings == ()
    same = count_table({("a",): 200, ("b",): 300})
    assert check_table(same, POLICY, [earlier]).findings == ()


def test_differencing_ignores_earlier_sum_tables() -> None:
    earlier = sum_table(sum_cell("a", [1.0] * 43))
    now = count_table({("a",): 40})
    assert check_table(now, POLICY, [earlier]).findings == ()


# ---------------------------------------------------------------- wording and output


def test_researcher_detail_never_states_a_suppressed_true_value() -> None:
    check = check_table(count_table({("a",): 7, ("b",): 38, ("c",): 64, ("d",): 0}),
                        SdcPolicy(), [count_table({("b",): 36}, name="e")])
    hidden = {k for k, v in check.released.items() if v is None}
    assert hidden == {("a",), ("b",), ("d",)}
    for finding in check.findings:
        assert "7" not in finding.researcher_detail and "38" not in finding.researcher_detail
        assert "36" not in finding.researcher_detail
    detail = " ".join(f.detail for f in check.findings)
    assert "7" in detail and "38" in detail  # the output checker does see them


def test_to_json_is_json_safe_with_list_keys_and_policy() -> None:
    check = check_table(count_table({("a", "b"): 12, ("a", "c"): 30}, dims=("x", "y")),
                        POLICY)
    body = json.loads(json.dumps(check.to_json(), allow_nan=False))
    assert body["cells"] == [{"key": ["a", "b"], "value": 10}, {"key": ["a", "c"], "value": 30}]
    assert SdcPolicy.from_json(body["policy"]) == POLICY
    assert body["suppressed"] == 0 and body["needs_review"] is False


# ---------------------------------------------------------------- models


def test_model_residual_df() -> None:
    low = check_model("ols", 4, 10, POLICY)
    assert low.needs_review and [f.rule for f in low.findings] == ["residual_df"]
    assert low.released == {}
    assert not check_model("ols", 10, 20, POLICY).needs_review
    with pytest.raises(InvalidInput, match="exceeds"):
        check_model("ols", 30, 20, POLICY)
    with pytest.raises(InvalidInput, match="residual_df"):
        check_model("ols", -1, 20, POLICY)

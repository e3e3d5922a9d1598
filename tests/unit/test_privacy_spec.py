"""The private query spec: what is checked against metadata before anything is spent."""

from __future__ import annotations

from typing import Any

import pytest

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InvalidInput
from ndl.privacy import PrivateQuery, check_query, parse_query, problems

META = DatasetMeta.model_validate({
    "name": "ae-visits", "title": "A&E visits", "publisher": "Test Trust",
    "tier": "safeguarded", "max_rows_per_person": 3,
    "columns": [
        {"name": "nhs_number", "type": "string", "join_key": "nhs_number",
         "sensitivity": "direct_identifier"},
        {"name": "patient_name", "type": "string", "sensitivity": "direct_identifier"},
        {"name": "region", "type": "string",
         "code_list": [{"code": "North"}, {"code": "South"}, {"code": "Wales"}]},
        {"name": "sex", "type": "string", "public_key": True, "categories": ["F", "M"]},
        {"name": "site_code", "type": "string", "public_key": True},
        {"name": "admitted", "type": "boolean"},
        {"name": "ward", "type": "string"},
        {"name": "acuity", "type": "integer", "code_list": [{"code": "1"}, {"code": "2"}]},
        {"name": "age", "type": "integer", "minimum": 0, "maximum": 110},
        {"name": "cost", "type": "float"},
        {"name": "arrived", "type": "date"},
    ],
})


def q(**kw: Any) -> PrivateQuery:
    base: dict[str, Any] = {"dataset": "ae-visits", "aggregates": [{"op": "count"}], "rho": 0.5}
    return parse_query({**base, **kw})


def refused(query: PrivateQuery) -> str:
    with pytest.raises(InvalidInput) as e:
        check_query(query, META)
    assert "Allowed:" in e.value.message
    return e.value.message


def test_a_valid_query_resolves_groups_bounds_and_the_person_unit() -> None:
    plan = check_query(q(aggregates=[{"op": "count"}, {"op": "sum", "column": "age"},
                                     {"op": "quantile", "column": "age", "q": 0.9}],
                         group_by=["region", "sex"],
                         where=[{"column": "ward", "op": "=", "value": "A1"},
                                {"column": "arrived", "op": ">=", "value": "2024-01-01"}]),
                       META)
    assert [g.values for g in plan.groups] == [["North", "South", "Wales"], ["F", "M"]]
    assert plan.n_groups == 6
    assert plan.aggregates[1].bounds == (0.0, 110.0) and plan.aggregates[1].integer
    assert plan.aggregates[2].label == "quantile(age, 0.9)"
    # The metadata's own bound on rows per person applies when the query gives none.
    assert plan.person_column == "nhs_number" and plan.k == 3
    assert "person" in plan.privacy_unit
    assert check_query(q(max_rows_per_person=1), META).k == 1


def test_policy_default_rows_per_person_and_row_level_without_an_identifier() -> None:
    meta = META.model_copy(update={"columns": [c for c in META.columns
                                               if c.name != "nhs_number"]})
    plan = check_query(q(), meta)
    assert plan.person_column is None and plan.k == 1 and plan.privacy_unit.startswith("row")
    plain = DatasetMeta.model_validate({**META.model_dump(), "max_rows_per_person": None})
    assert check_query(q(), plain, max_rows_per_person=7).k == 7
    assert check_query(q(), plain).k == 5


def test_unknown_column_names_the_columns_it_has() -> None:
    msg = refused(q(aggregates=[{"op": "sum", "column": "salary", "bounds": [0, 1]}]))
    assert "'salary' is not in ae-visits" in msg and "region" in msg


def test_group_keys_must_be_public() -> None:
    assert "not a public key" in refused(q(group_by=["ward"]))
    # public_key without its list of values cannot release every group.
    assert "not a public key" in refused(q(group_by=["site_code"]))
    assert check_query(q(group_by=["admitted", "acuity"]), META).groups[1].values == [1, 2]


def test_missing_bounds_say_give_bounds_and_user_bounds_stay_within_policy() -> None:
    assert "give bounds" in refused(q(aggregates=[{"op": "mean", "column": "cost"}]))
    plan = check_query(q(aggregates=[{"op": "mean", "column": "cost", "bounds": [0, 500]}]),
                       META)
    assert plan.aggregates[0].bounds == (0.0, 500.0)
    msg = refused(q(aggregates=[{"op": "sum", "column": "age", "bounds": [0, 200]}]))
    assert "within the published [0, 110]" in msg
    inner = check_query(q(aggregates=[{"op": "sum", "column": "age", "bounds": [18.5, 65]}]),
                        META)
    assert inner.aggregates[0].bounds == (19.0, 65.0)  # integers: rounded inwards
    assert "lo < hi" in refused(q(aggregates=[{"op": "sum", "column": "age",
                                               "bounds": [5, 5]}]))
    # A policy may publish its own limits instead of the metadata's.
    with pytest.raises(InvalidInput, match=r"within the published \[0, 50\]"):
        check_query(q(aggregates=[{"op": "sum", "column": "age", "bounds": [0, 60]}]), META,
                    {"age": (0, 50)})


@pytest.mark.parametrize("rho", [0, -1, float("nan")])
def test_rho_must_be_positive(rho: float) -> None:
    with pytest.raises(InvalidInput, match="rho") as e:
        q(rho=rho)
    assert "Allowed:" in e.value.message


def test_identifiers_are_never_aggregated_grouped_or_filtered() -> None:
    for query in (q(aggregates=[{"op": "histogram", "column": "nhs_number"}]),
                  q(aggregates=[{"op": "count"}], group_by=["patient_name"]),
                  q(where=[{"column": "nhs_number", "op": "=", "value": "9434765919"}])):
        assert "identifies people" in refused(query)


def test_aggregate_shapes() -> None:
    assert "integer or float" in refused(q(aggregates=[{"op": "sum", "column": "ward",
                                                        "bounds": [0, 1]}]))
    assert "give q" in refused(q(aggregates=[{"op": "quantile", "column": "age"}]))
    assert "count takes no column" in refused(q(aggregates=[{"op": "count",
                                                             "column": "age"}]))
    assert "only for histograms" in refused(q(aggregates=[{"op": "sum", "column": "age",
                                                           "bins": 3}]))
    assert "appears twice" in refused(q(aggregates=[{"op": "count"}, {"op": "count"}]))
    labelled = q(aggregates=[{"op": "count"}, {"op": "count", "label": "n2"}])
    assert [a.label for a in check_query(labelled, META).aggregates] == ["count", "n2"]


def test_histograms() -> None:
    plan = check_query(q(aggregates=[{"op": "histogram", "column": "region"},
                                     {"op": "histogram", "column": "age", "bins": 2},
                                     {"op": "histogram", "column": "cost",
                                      "bins": [0, 10, 100]},
                                     {"op": "histogram", "column": "acuity", "bins": [2]}]),
                       META)
    assert plan.aggregates[0].cell_labels == ["region=North", "region=South", "region=Wales"]
    assert plan.aggregates[1].cell_labels == ["age < 0", "age in [0, 55)", "age in [55, 110]",
                                              "age > 110"]
    assert plan.aggregates[2].edges == [0.0, 10.0, 100.0]
    assert plan.aggregates[3].categories == [2]
    assert "give bounds" in refused(q(aggregates=[{"op": "histogram", "column": "cost",
                                                   "bins": 4}]))
    assert "strictly increasing" in refused(q(aggregates=[{"op": "histogram",
                                                           "column": "cost",
                                                           "bins": [5, 1]}]))
    assert "without published values" in refused(q(aggregates=[{"op": "histogram",
                                                                "column": "ward"}]))
    assert "public values" in refused(q(aggregates=[{"op": "histogram", "column": "region",
                                                     "bins": ["Mars"]}]))


def test_filters_check_types_and_operators() -> None:
    assert "not a integer value" in refused(q(where=[{"column": "age", "op": ">",
                                                      "value": "old"}]))
    assert "not a date value" in refused(q(where=[{"column": "arrived", "op": ">",
                                                   "value": "yesterday"}]))
    assert "non-empty list" in refused(q(where=[{"column": "ward", "op": "in",
                                                 "value": "A1"}]))
    assert "take = != or in" in refused(q(where=[{"column": "ward", "op": "<",
                                                  "value": "A1"}]))
    ok = q(where=[{"column": "ward", "op": "in", "value": ["A1", "B2"]},
                  {"column": "admitted", "op": "=", "value": True},
                  {"column": "cost", "op": "<", "value": 2.5}])
    assert len(check_query(ok, META).filters) == 3


def test_every_problem_is_listed_at_once() -> None:
    found = problems(q(aggregates=[{"op": "sum", "column": "nope"}],
                       group_by=["ward"]), META)
    assert len(found) == 2 and any("nope" in p for p in found)
    assert problems(q(), META) == []


def test_shape_errors_from_json_name_the_field() -> None:
    with pytest.raises(InvalidInput, match="group_by"):
        q(group_by=["region", "sex", "admitted"])  # at most two keys
    with pytest.raises(InvalidInput, match="sql"):
        q(sql="SELECT 1")  # unknown fields are refused, not ignored
    with pytest.raises(InvalidInput, match="aggregates"):
        q(aggregates=[])


def test_wrong_dataset_and_controlled_tier_are_refused() -> None:
    assert "runs on 'ae-visits'" in refused(q(dataset="other"))
    assert check_query(q(dataset="trust-site/ae-visits"), META).query.dataset
    controlled = META.model_copy(update={"tier": "controlled"})
    with pytest.raises(InvalidInput, match="controlled data"):
        check_query(q(), controlled)


def test_the_package_exports_a_sorted_deliberate_surface() -> None:
    import ndl.privacy as privacy

    assert privacy.__all__ == sorted(privacy.__all__)
    assert privacy.__all__ == ["ALLOWED_SQL", "Aggregate", "AggregateReport", "DpResult",
                               "Filter", "Plan", "PrivateQuery", "SdcRules", "check_query",
                               "from_sql", "parse_query", "preview", "problems", "run"]
    for name in privacy.__all__:
        assert getattr(privacy, name) is not None
    with pytest.raises(AttributeError):
        _ = privacy.nothing_here

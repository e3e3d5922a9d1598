"""Restricted SQL becomes a private query spec; every other shape is refused, never run."""

from __future__ import annotations

import pytest

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InvalidInput
from ndl.privacy import ALLOWED_SQL, Aggregate, Filter, from_sql, parse_query

META = DatasetMeta.model_validate({
    "name": "ae-visits", "title": "A&E visits", "publisher": "Test Trust",
    "tier": "safeguarded",
    "columns": [
        {"name": "nhs_number", "type": "string", "join_key": "nhs_number"},
        {"name": "region", "type": "string",
         "code_list": [{"code": "North"}, {"code": "South"}]},
        {"name": "sex", "type": "string", "code_list": [{"code": "F"}, {"code": "M"}]},
        {"name": "admitted", "type": "boolean"},
        {"name": "ward", "type": "string"},
        {"name": "age", "type": "integer", "minimum": 0, "maximum": 110},
        {"name": "cost", "type": "float"},
        {"name": "arrived", "type": "date"},
    ],
})


def test_all_aggregates_keys_filters_translate_exactly() -> None:
    got = from_sql(
        "SELECT region, COUNT(*) AS n, SUM(age), AVG(LEAST(GREATEST(cost, 0), 250.5)) AS m, "
        "MEDIAN(age), QUANTILE_CONT(age, 0.9), sex FROM data "
        "WHERE age >= 18 AND ward IN ('A1', 'B2') AND (admitted = TRUE AND cost <> -1.5) "
        "AND arrived < '2024-04-01' GROUP BY region, sex",
        META, rho=0.25, project="p-1", max_rows_per_person=2)
    assert got == parse_query({
        "dataset": "ae-visits", "rho": 0.25, "project": "p-1", "max_rows_per_person": 2,
        "group_by": ["region", "sex"],
        "aggregates": [
            {"op": "count", "label": "n"},
            {"op": "sum", "column": "age"},
            {"op": "mean", "column": "cost", "bounds": [0, 250.5], "label": "m"},
            {"op": "quantile", "column": "age", "q": 0.5},
            {"op": "quantile", "column": "age", "q": 0.9},
        ],
        "where": [
            {"column": "age", "op": ">=", "value": 18},
            {"column": "ward", "op": "in", "value": ["A1", "B2"]},
            {"column": "admitted", "op": "=", "value": True},
            {"column": "cost", "op": "!=", "value": -1.5},
            {"column": "arrived", "op": "<", "value": "2024-04-01"},
        ],
    })


def test_simplest_forms_and_spellings() -> None:
    one = from_sql("select count(*) from data;", META, rho=1.0)
    assert one.aggregates == [Aggregate(op="count")] and one.group_by == [] and one.where == []
    approx = from_sql("SELECT APPROX_QUANTILE(age, 0.25) FROM data", META, rho=1.0)
    assert approx.aggregates == [Aggregate(op="quantile", column="age", q=0.25)]
    quoted = from_sql('SELECT SUM("age") FROM "data" GROUP BY "region"', META, rho=1.0)
    assert quoted.group_by == ["region"] and quoted.aggregates[0].column == "age"


def test_text_in_a_string_literal_stays_a_value() -> None:
    got = from_sql("SELECT COUNT(*) FROM data WHERE ward = 'x''; DROP TABLE data; --'",
                   META, rho=1.0)
    assert got.where == [Filter(column="ward", op="=", value="x'; DROP TABLE data; --")]


@pytest.mark.parametrize("text,why", [
    ("SELECT COUNT(*) FROM data JOIN other ON data.a = other.a", "JOIN"),
    ("SELECT COUNT(*) FROM data, other", "JOIN"),
    ("SELECT COUNT(*) FROM (SELECT * FROM data)", "FROM data"),
    ("SELECT COUNT(*) FROM data WHERE age IN (SELECT age FROM data)", "parts"),
    ("SELECT COUNT(*) FROM data UNION SELECT COUNT(*) FROM data", "UNION"),
    ("SELECT COUNT(*) FROM data; DROP TABLE data", "one statement"),
    ("SELECT COUNT(*) FROM data;DROP TABLE data;", "one statement"),
    ("SELECT COUNT(*) FROM data -- WHERE age > 1", "comments"),
    ("SELECT COUNT(*) FROM data /* hidden */ WHERE age > 1", "comments"),
    ("SELECT SUM(ABS(age)) FROM data", "plain column"),
    ("SELECT COUNT(*) FROM data WHERE LOWER(ward) = 'a'", "plain column"),
    ("SELECT MAX(age) FROM data", "not one of the allowed aggregates"),
    ("SELECT COUNT(*) FROM data ORDER BY 1", "ORDER BY"),
    ("SELECT COUNT(*) FROM data LIMIT 5", "LIMIT"),
    ("SELECT * FROM data", "SELECT *"),
    ("SELECT COUNT(*) FROM data GROUP BY region HAVING COUNT(*) > 10", "HAVING"),
    ("SELECT DISTINCT region FROM data", "DISTINCT"),
    ("SELECT COUNT(DISTINCT age) FROM data", "COUNT(*)"),
    ("SELECT COUNT(age) FROM data", "COUNT(*)"),
    ("SELECT SUM(age) OVER () FROM data", "not one of the allowed aggregates"),
    ("WITH t AS (SELECT 1) SELECT COUNT(*) FROM data", "WITH"),
    ("SELECT COUNT(*) FROM read_parquet('/etc/passwd')", "FROM data"),
    ("SELECT COUNT(*) FROM main.data", "FROM data"),
    ("SELECT COUNT(*) FROM data AS d", "FROM data"),
    ("SELECT COUNT(*) FROM data WHERE age > 1 OR 1 = 1", "joined by AND"),
    ("SELECT COUNT(*) FROM data WHERE NOT age > 1", "joined by AND"),
    ("SELECT COUNT(*) FROM data WHERE age > cost", "expected a number"),
    ("SELECT COUNT(*) FROM data WHERE age IS NULL", "joined by AND"),
    ("SELECT COUNT(*), ward FROM data", "not a GROUP BY key"),
    ("SELECT COUNT(*) FROM data GROUP BY ROLLUP (region)", "plain column"),
    ("SELECT SUM(LEAST(age, 10)) FROM data", "LEAST(GREATEST"),
    ("SELECT QUANTILE_CONT(age, 1.5) FROM data", "between 0 and 1"),
    ("SELECT region FROM data GROUP BY region", "at least one aggregate"),
    ("DROP TABLE data", "DROP"),
    ("DELETE FROM data", "DELETE"),
    ("INSERT INTO data VALUES (1)", "INSERT"),
    ("SELECT COUNT(*) INTO t FROM data", "INTO"),
    ("SELECT COUNT(* FROM data", "does not parse"),
    ("", "empty"),
])
def test_refused_forms_say_what_is_allowed(text: str, why: str) -> None:
    with pytest.raises(InvalidInput) as e:
        from_sql(text, META, rho=1.0)
    assert why in e.value.message
    assert ALLOWED_SQL in e.value.message


def test_spec_errors_come_through_sql_too() -> None:
    with pytest.raises(InvalidInput, match="'salary' is not in ae-visits"):
        from_sql("SELECT SUM(salary) FROM data", META, rho=1.0)
    with pytest.raises(InvalidInput, match="not a public key"):
        from_sql("SELECT COUNT(*), ward FROM data GROUP BY ward", META, rho=1.0)
    with pytest.raises(InvalidInput, match="give bounds"):
        from_sql("SELECT AVG(cost) FROM data", META, rho=1.0)
    with pytest.raises(InvalidInput, match="identifies people"):
        from_sql("SELECT COUNT(*) FROM data WHERE nhs_number = '943'", META, rho=1.0)
    with pytest.raises(InvalidInput, match="rho"):
        from_sql("SELECT COUNT(*) FROM data", META, rho=0.0)


def test_long_sql_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidInput, match="longer than"):
        from_sql("SELECT COUNT(*) FROM data WHERE " + " AND ".join(["age > 1"] * 2000), META,
                 rho=1.0)

"""Bands in one query and one spend (HISTOGRAM over public edges), and every DP answer's
uncertainty worded the same way (ndl.privacy.wording)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import InvalidInput
from ndl.privacy import ALLOWED_SQL, from_sql, run
from ndl.privacy.spec import ALLOWED
from ndl.privacy.sql import BANDS_EXAMPLE
from ndl.privacy.wording import answer_lines, expected_error, give_or_take, worded_rows

META = DatasetMeta.model_validate({
    "name": "ae", "title": "A&E attendances", "publisher": "Test Trust", "tier": "safeguarded",
    "columns": [
        {"name": "region", "type": "string",
         "code_list": [{"code": "North"}, {"code": "South"}]},
        # A quasi-identifier: never released or grouped on as such, but counted in public bands.
        {"name": "age", "type": "integer", "sensitivity": "quasi_identifier",
         "minimum": 0, "maximum": 120},
        {"name": "wait", "type": "float", "minimum": 0, "maximum": 600,
         "bands": [0, 60, 240, 600]},
        {"name": "admitted", "type": "boolean"},
    ],
})


def _table(n: int = 20_000) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table({
        "region": rng.choice(["North", "South"], n),
        "age": rng.integers(0, 100, n),
        "wait": rng.uniform(0, 600, n),
        "admitted": rng.random(n) < 0.3,
    })


def test_every_sql_form_the_help_text_advertises_is_accepted() -> None:
    assert BANDS_EXAMPLE in ALLOWED_SQL
    examples = [BANDS_EXAMPLE, *re.findall(r"SELECT [A-Z].*? FROM data(?: GROUP BY \w+)?",
                                           ALLOWED_SQL)]
    # Each aggregate the text names, written as it says, over a column it fits.
    forms = re.findall(r"(?:COUNT|SUM|AVG|MEDIAN|QUANTILE_CONT|HISTOGRAM)\([^()]*\)",
                       ALLOWED_SQL)
    assert {f.split("(")[0] for f in forms} == {"COUNT", "SUM", "AVG", "MEDIAN",
                                                "QUANTILE_CONT", "HISTOGRAM"}
    for form in forms:
        sql = (form.replace("col", "age").replace(", q)", ", 0.9)").replace(", n)", ", 6)")
               .replace("[e0, e1, ...]", "[0, 18, 65]"))
        if sql == "HISTOGRAM(age)":
            sql = "HISTOGRAM(wait)"  # published bands
        examples.append(f"SELECT {sql} FROM data")
    examples.append("SELECT COUNT(*) FROM data WHERE wait >= 18 AND region IN ('North', "
                    "'South') AND admitted = TRUE")
    examples.append("SELECT SUM(LEAST(GREATEST(age, 0), 100)) FROM data")
    for sql in examples:
        assert from_sql(sql, META, rho=0.5).aggregates, sql


def test_age_bands_by_region_are_one_query_with_one_spend() -> None:
    q = from_sql("SELECT region, HISTOGRAM(age, [0, 18, 65, 120]) AS bands FROM data "
                 "GROUP BY region", META, rho=0.5)
    result = run(q, _table(), META)
    assert result.rho_spent == pytest.approx(0.5) and len(result.aggregates) == 1
    assert result.columns == ["region", "age < 0", "age in [0, 18)", "age in [18, 65)",
                              "age in [65, 120]", "age > 120"]
    assert result.aggregates[0].cells == result.columns[1:]
    north = next(r for r in result.rows if r[0] == "North")
    half = result.aggregates[0].half_width_95
    assert isinstance(half, float)
    truth = _table().filter(pa.compute.equal(_table()["region"], "North"))["age"].to_numpy()
    assert abs(north[2] - int(((truth >= 0) & (truth < 18)).sum())) < 3 * half
    assert abs(north[4] - int((truth >= 65).sum())) < 3 * half


def test_bands_can_come_from_the_metadata() -> None:
    q = from_sql("SELECT HISTOGRAM(wait) FROM data", META, rho=0.2)
    result = run(q, _table(), META)
    assert result.columns == ["wait < 0", "wait in [0, 60)", "wait in [60, 240)",
                              "wait in [240, 600]", "wait > 600"]
    assert result.rho_spent == pytest.approx(0.2)


@pytest.mark.parametrize("sql,hint", [
    ("SELECT CASE WHEN age < 18 THEN 1 ELSE 0 END FROM data", "HISTOGRAM(col, [e0"),
    ("SELECT COUNT(*) FROM data GROUP BY CASE WHEN age < 18 THEN 'child' END",
     "HISTOGRAM(col, [e0"),
    ("SELECT HISTOGRAM(age, 2.5) FROM data", "whole number"),
    ("SELECT HISTOGRAM(age, [0, 'x']) FROM data", "band edge"),
    ("SELECT HISTOGRAM(age, [18, 0]) FROM data", "strictly increasing"),
    ("SELECT HISTOGRAM(age) FROM data", "publishes no bands"),
    ("SELECT COUNT(*) FROM data GROUP BY age", "published"),
])
def test_bad_bands_are_refused_in_sql_terms(sql: str, hint: str) -> None:
    with pytest.raises(InvalidInput) as e:
        from_sql(sql, META, rho=0.5)
    assert hint in e.value.message
    # Someone who wrote SQL is told the SQL form, not the JSON one.
    assert ALLOWED_SQL in e.value.message and ALLOWED not in e.value.message


def test_uncertainty_is_worded_once_for_every_face() -> None:
    assert give_or_take(1234, 40.3) == "about 1,234, give or take 40 (95%)"
    assert give_or_take(41.687, 0.77) == "about 41.69, give or take 0.77 (95%)"
    assert give_or_take(None, 3.0) == "withheld (too few to show)"
    assert "within 12 rows" in give_or_take(42, None, rank_error=11.2)
    assert "not stated" in give_or_take(3.5, None)
    assert expected_error({"half_width_95": 12.345}) == "give or take 12 (95%)"
    assert expected_error({"half_width_95": [2.0, None, 5.5]}) == \
        "give or take 2 to 6 by group (95%)"


def test_a_grouped_banded_answer_is_worded_cell_by_cell() -> None:
    q = from_sql("SELECT region, COUNT(*) AS n, AVG(age) AS mean_age, HISTOGRAM(age, "
                 "[0, 18, 120]) FROM data GROUP BY region", META, rho=1.0)
    answer = run(q, _table(), META).model_dump(mode="json")
    rows = worded_rows(answer)
    assert [c.column for c in rows[0] if c.key] == ["region"]
    texts = [c.text for c in rows[0] if not c.key]
    assert len(texts) == 6 and all(re.fullmatch(
        r"about [\d.,]+, give or take [\d.,]+ \(95%\)", t) for t in texts), texts
    lines = answer_lines(answer)
    assert lines[0].startswith("region = North: n: about ")
    assert "age in [0, 18): about " in lines[0]

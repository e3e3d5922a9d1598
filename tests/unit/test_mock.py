"""Mock data (ndl.catalogue.mock): the real schema, fabricated identifiers, DP marginals, and
never a real row. The DP noise is unseeded by design, so statistical checks use tolerances
whose failure probability is negligible (far below 1e-9 per test)."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import Counter
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.mock import DEFAULT_DELTA, MockResult, synthesise_mock
from ndl.core.errors import InvalidInput
from ndl.demo.synth import generate_demo_data
from ndl.linkage.nhs_number import is_valid

ARROW_TYPES = {
    "string": pa.string(), "integer": pa.int64(), "float": pa.float64(),
    "boolean": pa.bool_(), "date": pa.date32(),
}
ROWS = 1000
Demo = dict[str, tuple[pa.Table, DatasetMeta, MockResult]]
_UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """Every demo dataset with one mock of it (1,000 rows, seed 11)."""
    root = tmp_path_factory.mktemp("demo")
    generate_demo_data(root, people=300, seed=7)
    out: Demo = {}
    for d in sorted(root.glob("*/datasets/*")):
        table = pq.read_table(d / "data.parquet")
        meta = DatasetMeta.model_validate(json.loads((d / "metadata.json").read_text()))
        out[d.name] = (table, meta, synthesise_mock(table, meta, rows=ROWS, seed=11))
    return out


def _meta(name: str = "mock-test", **columns: dict[str, Any]) -> DatasetMeta:
    return DatasetMeta.model_validate({
        "name": name, "title": "Mock test", "publisher": "Test Trust", "tier": "safeguarded",
        "columns": [{"name": n, **spec} for n, spec in columns.items()],
    })


def _with_ids(columns: dict[str, Any], **specs: dict[str, Any]) -> tuple[pa.Table, DatasetMeta]:
    """A table with a record id first: every real row is then unique, as in most datasets, and
    the mock's fabricated ids keep its rows apart from the real ones."""
    n = len(next(iter(columns.values())))
    table = pa.table({"record_id": [f"R{i:07d}" for i in range(n)], **columns})
    return table, _meta(record_id={"type": "string"}, **specs)


def _rows(table: pa.Table) -> set[tuple[Any, ...]]:
    return set(zip(*(c.to_pylist() for c in table.columns), strict=True))


def _column_values(table: pa.Table, name: str) -> set[Any]:
    return {v for v in table.column(name).to_pylist() if v is not None}


# --- the demo datasets ------------------------------------------------------------------


def test_schema_and_row_count_match_every_demo_dataset(demo: Demo) -> None:
    assert set(demo) == {"patients", "ae-attendances", "pupils", "attainment",
                         "childrens-social-care", "ward-population"}
    for name, (table, meta, result) in demo.items():
        expected = pa.schema([(c, ARROW_TYPES[meta.column(c).type])  # type: ignore[union-attr]
                              for c in table.column_names])
        assert result.table.schema.equals(expected), name
        assert result.table.schema.names == table.schema.names, name
        assert result.table.num_rows == ROWS, name
        assert 0 < result.rho <= 0.5 * (1 + 1e-9), name
        assert 0 <= result.delta <= DEFAULT_DELTA * (1 + 1e-9), name
        assert "differential privacy" in result.method and "no real row" in result.method


def test_nhs_numbers_are_valid_test_range_and_never_real(demo: Demo) -> None:
    checked = 0
    for name, (table, _, result) in demo.items():
        if "nhs_number" not in table.column_names:
            continue
        mock = [v for v in result.table.column("nhs_number").to_pylist() if v is not None]
        assert mock, f"{name}: every mock NHS number is null"
        assert all(is_valid(v) and v.startswith("999") for v in mock), name
        assert len(set(mock)) == len(mock), f"{name}: a fabricated NHS number repeats"
        assert not set(mock) & _column_values(table, "nhs_number"), name
        checked += 1
    assert checked == 3


def test_no_real_identifier_value_is_reused(demo: Demo) -> None:
    for name, (table, meta, result) in demo.items():
        for col in ("nhs_number", "upn", "child_id", "attendance_id"):
            if col in table.column_names:
                mock = _column_values(result.table, col)
                assert mock and not mock & _column_values(table, col), (name, col)
        if "given_name" in table.column_names:
            pairs = ("given_name", "family_name")
            real = set(zip(*(table.column(c).to_pylist() for c in pairs), strict=True))
            mock_pairs = set(zip(*(result.table.column(c).to_pylist() for c in pairs),
                                 strict=True))
            reused = {p for p in mock_pairs & real if p != (None, None)}  # no name is no name
            assert not reused, f"{name}: a real full name was reused"
        for col in meta.columns:
            if col.join_key == "upn":
                for upn in _column_values(result.table, col.name):
                    assert re.fullmatch(r"[A-Z]999[0-9]{9}", upn), upn
                    total = sum(int(d) * p for p, d in enumerate(upn[1:], start=2))
                    assert upn[0] == _UPN_LETTERS[total % 23], f"bad check letter in {upn}"


def test_no_real_row_is_reproduced_in_any_demo_mock(demo: Demo) -> None:
    for name, (table, _, result) in demo.items():
        assert not _rows(result.table) & _rows(table), name


def test_single_occurrence_values_never_reach_the_mock(demo: Demo) -> None:
    checked = 0
    for name, (table, meta, result) in demo.items():
        for col in meta.columns:
            learned = col.type == "string" and col.join_key is None \
                and col.sensitivity != "direct_identifier" and not col.code_list \
                and not col.name.endswith("_id")
            if not learned:
                continue
            counts = Counter(table.column(col.name).to_pylist())
            singles = {v for v, c in counts.items() if c == 1 and v is not None}
            assert not singles & _column_values(result.table, col.name), (name, col.name)
            checked += len(singles)
    assert checked > 0, "the demo data should hold some one-off values to test with"


def test_mocking_the_largest_demo_dataset_prints_its_time(demo: Demo) -> None:
    name, (table, meta, _) = max(demo.items(), key=lambda kv: kv[1][0].num_rows)
    started = time.perf_counter()
    # A new rho misses the model cache, so the time includes learning the marginals.
    result = synthesise_mock(table, meta, rows=ROWS, rho=0.4999, seed=3)
    elapsed = time.perf_counter() - started
    print(f"\nmock of {name} ({table.num_rows} real rows -> {ROWS} mock rows): {elapsed:.3f}s")
    assert result.table.num_rows == ROWS


# --- privacy and utility on constructed tables -------------------------------------------


def test_a_rare_category_never_appears_but_a_common_one_does() -> None:
    values = ["common"] * 400 + ["rare"] + [f"unique-{i}" for i in range(30)]
    table, meta = _with_ids({"diagnosis": values},
                            diagnosis={"type": "string", "sensitivity": "sensitive"})
    for seed in range(3):
        mock = synthesise_mock(table, meta, rows=2000, seed=seed).table
        assert set(mock.column("diagnosis").to_pylist()) == {"common"}


def test_a_public_code_list_spares_a_category_from_the_threshold() -> None:
    # A code list makes the category set public, so a category held by one row may appear;
    # without it, the same category never clears the stability threshold. rho=60 makes the
    # discrete noise (sigma ~0.13) zero with overwhelming probability, isolating the rule.
    values = {"flag": ["Y"] * 60 + ["N"]}
    coded = {"type": "string", "code_list": [{"code": "Y"}, {"code": "N"}]}
    table, meta = _with_ids(values, flag=coded)
    mock = synthesise_mock(table, meta, rows=3000, rho=60.0, seed=1).table
    assert set(mock.column("flag").to_pylist()) == {"Y", "N"}
    table, meta = _with_ids(values, flag={"type": "string"})
    mock = synthesise_mock(table, meta, rows=3000, rho=60.0, seed=1).table
    assert set(mock.column("flag").to_pylist()) == {"Y"}


def test_a_common_category_keeps_its_share() -> None:
    n = 5000
    table, meta = _with_ids(
        {"category": (["A"] * 3000 + ["B"] * 1500 + ["C"] * 500),
         "urgent": [i % 4 == 0 for i in range(n)],
         "age": [20 + i % 40 for i in range(n)]},
        category={"type": "string"}, urgent={"type": "boolean"},
        age={"type": "integer", "unit": "years"},
    )
    mock = synthesise_mock(table, meta, rows=n, rho=1.0, seed=5).table
    cats = Counter(mock.column("category").to_pylist())
    assert abs(cats["A"] / n - 0.6) < 0.05 and abs(cats["B"] / n - 0.3) < 0.05
    urgent = sum(v is True for v in mock.column("urgent").to_pylist()) / n
    assert abs(urgent - 0.25) < 0.05
    ages = mock.column("age").to_pylist()
    assert all(10 <= a <= 99 for a in ages)  # never beyond the decade the data lie in
    assert sum(20 <= a <= 59 for a in ages) / n > 0.95
    assert abs(sorted(ages)[n // 2] - 40) <= 3


def test_an_outlier_is_never_reproduced_and_dates_stay_in_range() -> None:
    n = 4000
    ages = [30 + i % 20 for i in range(n - 1)] + [107]
    days = [date(2021, 1, 1 + i % 28) for i in range(n)]
    table, meta = _with_ids({"age": ages, "seen": pa.array(days, pa.date32())},
                            age={"type": "integer"}, seen={"type": "date"})
    mock = synthesise_mock(table, meta, rows=3000, rho=1.0, seed=2).table
    assert max(mock.column("age").to_pylist()) < 100
    seen = mock.column("seen").to_pylist()
    assert all(date(2020, 1, 1) <= d <= date(2029, 12, 31) for d in seen)
    assert sum(d.year == 2021 and d.month == 1 for d in seen) / len(seen) > 0.95


def test_public_bounds_in_the_metadata_clamp_numbers() -> None:
    table, meta = _with_ids({"score": [float(i % 50) for i in range(3000)]},
                            score={"type": "float", "minimum": 5, "maximum": 40})
    scores = synthesise_mock(table, meta, rows=2000, rho=1.0, seed=4).table
    assert all(5 <= s <= 40 for s in scores.column("score").to_pylist())


def test_identifier_null_rate_is_learned_but_values_are_fabricated() -> None:
    n = 4000
    real_ids = [f"LA-{i:06d}" if i % 2 else None for i in range(n)]
    table, meta = _with_ids({"ref": real_ids, "band": ["x"] * n},
                            ref={"type": "string", "join_key": "local_id",
                                 "sensitivity": "direct_identifier"},
                            band={"type": "string"})
    mock = synthesise_mock(table, meta, rows=n, rho=1.0, seed=9).table
    refs = mock.column("ref").to_pylist()
    assert abs(sum(r is None for r in refs) / n - 0.5) < 0.05
    present = [r for r in refs if r is not None]
    assert all(re.fullmatch(r"MOCK-\d{6}", r) for r in present)
    assert len(set(present)) == len(present)


# --- the no-real-row guarantee ------------------------------------------------------------


# These use rho=1000: the discrete Gaussian noise (sigma ~0.03) is then zero with overwhelming
# probability, so the marginals are exactly the data's and collisions are as likely as can be.
def _booleans(rows: list[tuple[bool, bool]]) -> tuple[pa.Table, DatasetMeta]:
    table = pa.table({"a": [r[0] for r in rows], "b": [r[1] for r in rows]})
    return table, _meta(a={"type": "boolean"}, b={"type": "boolean"})


def test_when_collisions_are_likely_only_unseen_combinations_are_drawn() -> None:
    table, meta = _booleans([(True, True)] * 50 + [(True, False)] * 50 + [(False, True)] * 50)
    mock = synthesise_mock(table, meta, rows=500, rho=1000.0, seed=1).table
    assert mock.num_rows == 500
    assert _rows(mock) == {(False, False)}


def test_when_every_combination_is_real_the_mock_is_refused() -> None:
    table, meta = _booleans([(a, b) for a in (True, False) for b in (True, False)] * 40)
    with pytest.raises(InvalidInput, match="every combination"):
        synthesise_mock(table, meta, rows=10, rho=1000.0, seed=1)


def test_rows_beyond_the_learning_sample_are_also_never_reproduced() -> None:
    sample, meta = _booleans([(True, True), (True, False), (False, True)] * 40)
    rest, _ = _booleans([(False, False)] * 3)
    assert _rows(synthesise_mock(sample, meta, rows=20, rho=1000.0, seed=1).table) == {
        (False, False)}
    with pytest.raises(InvalidInput, match="every combination"):
        synthesise_mock(sample, meta, rows=20, rho=1000.0, seed=1,
                        more_real_rows=rest.to_batches())


def test_fabricated_ids_avoid_real_ids_beyond_the_learning_sample() -> None:
    # Fabricated local ids count up from MOCK-000001, so real ones of that form must be skipped.
    taken = [f"MOCK-{i:06d}" for i in range(1, 51)]
    sample = pa.table({"ref": [f"LA-{i}" for i in range(200)], "kind": ["a"] * 200})
    meta = _meta(ref={"type": "string", "join_key": "local_id"}, kind={"type": "string"})
    rest = pa.table({"ref": taken, "kind": ["a"] * 50})
    mock = synthesise_mock(sample, meta, rows=100, rho=1000.0, seed=3,
                           more_real_rows=[rest]).table
    ids = _column_values(mock, "ref")
    assert len(ids) == 100 and not ids & set(taken)


_CELL = {
    "boolean": st.one_of(st.none(), st.booleans()),
    "code": st.one_of(st.none(), st.sampled_from(["a", "b"])),
    "int": st.one_of(st.none(), st.sampled_from([1, 2])),
}
_SPEC: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "code": {"type": "string", "code_list": [{"code": "a"}, {"code": "b"}]},
    "int": {"type": "integer", "code_list": [{"code": "1"}, {"code": "2"}]},
}


@st.composite
def _small_tables(draw: st.DrawFn) -> tuple[pa.Table, DatasetMeta]:
    kinds = draw(st.lists(st.sampled_from(sorted(_CELL)), min_size=1, max_size=3))
    n = draw(st.integers(1, 25))
    columns = {f"c{i}": draw(st.lists(_CELL[k], min_size=n, max_size=n))
               for i, k in enumerate(kinds)}
    types = {"boolean": pa.bool_(), "code": pa.string(), "int": pa.int64()}
    table = pa.table({c: pa.array(v, types[k]) for (c, v), k in
                      zip(columns.items(), kinds, strict=True)})
    return table, _meta(**{c: _SPEC[k] for c, k in zip(columns, kinds, strict=True)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_small_tables())
def test_property_no_mock_row_is_a_real_row(case: tuple[pa.Table, DatasetMeta]) -> None:
    table, meta = case
    real = _rows(table)
    try:
        # A large rho makes the marginals match the data closely, so collisions are likely.
        mock = synthesise_mock(table, meta, rows=30, rho=200.0, seed=0).table
    except InvalidInput as exc:
        assert "every combination" in exc.message
        # Refusing is right only if the real rows cover every combination of real values.
        per_column = [set(c.to_pylist()) for c in table.columns]
        assert set(itertools.product(*per_column)) <= real
        return
    assert mock.num_rows == 30
    assert not _rows(mock) & real


# --- determinism and bad input ----------------------------------------------------------


def test_same_seed_same_mock_and_another_seed_differs(demo: Demo) -> None:
    table, meta, _ = demo["patients"]
    first = synthesise_mock(table, meta, rows=ROWS, seed=21)
    again = synthesise_mock(table, meta, rows=ROWS, seed=21)
    assert again.table.equals(first.table)
    # Same content in a fresh table object: the cached marginals are found by content.
    copy = pa.Table.from_pylist(table.to_pylist(), schema=table.schema)
    assert synthesise_mock(copy, meta, rows=ROWS, seed=21).table.equals(first.table)
    assert not synthesise_mock(table, meta, rows=ROWS, seed=22).table.equals(first.table)


def test_zero_rows_gives_an_empty_table_with_the_schema(demo: Demo) -> None:
    table, meta, first = demo["pupils"]
    empty = synthesise_mock(table, meta, rows=0, seed=1).table
    assert empty.num_rows == 0 and empty.schema.equals(first.table.schema)


def test_an_empty_table_is_refused_with_a_clear_error() -> None:
    meta = _meta(a={"type": "string"})
    with pytest.raises(InvalidInput, match="has no rows"):
        synthesise_mock(pa.table({"a": pa.array([], pa.string())}), meta)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rows": -1}, "rows must be"),
    ({"rows": 10_000_001}, "rows must be"),
    ({"rho": 0.0}, "rho must be"),
    ({"rho": float("nan")}, "rho must be"),
    ({"delta": 0.0}, "delta must be"),
])
def test_out_of_range_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    table = pa.table({"a": ["x"] * 5})
    with pytest.raises(InvalidInput, match=match):
        synthesise_mock(table, _meta(a={"type": "string"}), **kwargs)


def test_data_and_metadata_that_disagree_are_refused() -> None:
    table = pa.table({"a": ["x"], "b": [1]})
    with pytest.raises(InvalidInput, match="columns not described: b"):
        synthesise_mock(table, _meta(a={"type": "string"}))
    with pytest.raises(InvalidInput, match="declared integer"):
        synthesise_mock(pa.table({"a": ["x"]}), _meta(a={"type": "integer"}))


"""Tests for the synthetic demo data generator (ndl.demo.synth)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ndl.demo._people import upn_check_letter
from ndl.demo.synth import ORGS, DemoData, NoiseRates, generate_demo_data
from ndl.linkage.nhs_number import is_valid

ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
}
SENSITIVITIES = {"direct_identifier", "quasi_identifier", "sensitive", "none"}
JOIN_KEYS = {"nhs_number", "upn", "postcode", "date_of_birth", "name", "local_id", None}
METADATA_KEYS = {
    "name", "title", "description", "publisher", "tier", "keywords", "row_count", "columns",
}  # fmt: skip
EXPECTED = {
    "nhs-trust": {"patients": "controlled", "ae-attendances": "safeguarded"},
    "dfe": {"pupils": "controlled", "attainment": "safeguarded"},
    "local-authority": {"childrens-social-care": "controlled", "ward-population": "open"},
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    root = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    data = generate_demo_data(root, people=2000, seed=7)
    print(f"\ngenerate_demo_data(people=2000) took {time.perf_counter() - start:.2f}s")
    return data


@pytest.fixture(scope="module")
def truth(demo: DemoData) -> pa.Table:
    return pq.read_table(demo.truth_path)


def _read(demo: DemoData, org: str, dataset: str) -> tuple[pa.Table, dict[str, Any]]:
    ds_dir = demo.root / org / "datasets" / dataset
    meta = json.loads((ds_dir / "metadata.json").read_text(encoding="utf-8"))
    return pq.read_table(ds_dir / "data.parquet"), meta


def _keyed_rows(demo: DemoData, truth: pa.Table, org: str, dataset: str, key: str) -> dict:
    """person_id -> list of row dicts for one dataset, joined through the ground truth."""
    table, _ = _read(demo, org, dataset)
    t = truth.filter(pc.and_(pc.equal(truth["org"], org), pc.equal(truth["dataset"], dataset)))
    owner = dict(zip(t["key_value"].to_pylist(), t["person_id"].to_pylist(), strict=True))
    out: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        out.setdefault(owner[row[key]], []).append(row)
    return out


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_and_orgs(demo: DemoData) -> None:
    assert [o.slug for o in demo.orgs] == ["nhs-trust", "dfe", "local-authority"]
    assert [o.kind for o in ORGS] == ["nhs", "education", "local_authority"]
    assert {o.slug: o.name for o in ORGS}["local-authority"] == "Northshire County Council"
    for org, datasets in EXPECTED.items():
        assert [p.name for p in demo.datasets[org]] == list(datasets)
        for ds_dir in demo.datasets[org]:
            assert ds_dir == demo.root / org / "datasets" / ds_dir.name
            assert (ds_dir / "data.parquet").is_file()
            assert (ds_dir / "metadata.json").is_file()
    assert demo.truth_path == demo.root / "ground-truth" / "truth.parquet"


def test_determinism(tmp_path: Path, demo: DemoData) -> None:
    again = generate_demo_data(tmp_path / "same", people=2000, seed=7)
    assert _all_files(again.root) == _all_files(demo.root)
    other = generate_demo_data(tmp_path / "other", people=2000, seed=8)
    first, second = _all_files(demo.root), _all_files(other.root)
    assert first.keys() == second.keys()
    for name in first:
        if name.endswith(".parquet") and "ward-population" not in name:
            assert first[name] != second[name], name


def test_metadata_matches_parquet(demo: DemoData) -> None:
    for org, datasets in EXPECTED.items():
        publisher = {o.slug: o.name for o in ORGS}[org]
        for name, tier in datasets.items():
            table, meta = _read(demo, org, name)
            raw = (demo.root / org / "datasets" / name / "metadata.json").read_text("utf-8")
            assert raw.startswith('{\n  "name": ')
            assert METADATA_KEYS <= meta.keys()
            assert meta["name"] == name and meta["tier"] == tier
            assert meta["publisher"] == publisher
            assert "synthetic" in meta["description"].lower()
            assert meta["keywords"] and all(isinstance(k, str) for k in meta["keywords"])
            assert meta["row_count"] == table.num_rows > 0
            assert [c["name"] for c in meta["columns"]] == table.schema.names
            for col in meta["columns"]:
                assert {"name", "type", "description", "sensitivity", "join_key"} <= set(col)
                assert set(col) <= {"name", "type", "description", "sensitivity", "join_key",
                                    "code_list", "minimum", "maximum", "unit"}
                assert table.schema.field(col["name"]).type == ARROW_TYPES[col["type"]]
                assert col["sensitivity"] in SENSITIVITIES
                assert col["join_key"] in JOIN_KEYS
                assert col["description"]


def test_ae_dataset_is_findable_by_a_and_e(demo: DemoData) -> None:
    _, meta = _read(demo, "nhs-trust", "ae-attendances")
    assert "A&E" in meta["title"] and "A&E" in meta["description"]
    assert "A&E" in meta["keywords"]


def test_nhs_numbers_valid(demo: DemoData) -> None:
    for org, dataset in [
        ("nhs-trust", "patients"),
        ("nhs-trust", "ae-attendances"),
        ("local-authority", "childrens-social-care"),
    ]:
        table, _ = _read(demo, org, dataset)
        values = [v for v in table["nhs_number"].to_pylist() if v is not None]
        assert values and all(is_valid(v) for v in values), dataset
    patients, _ = _read(demo, "nhs-trust", "patients")
    nhs = patients["nhs_number"].to_pylist()
    assert None not in nhs and len(set(nhs)) == len(nhs)


def test_upns_well_formed(demo: DemoData) -> None:
    assert upn_check_letter("801200005001") == "B"  # published valid example B801200005001
    pupils, _ = _read(demo, "dfe", "pupils")
    upns = pupils["upn"].to_pylist()
    assert len(set(upns)) == len(upns)
    for upn in upns:
        assert re.fullmatch(r"[A-Z][0-9]{12}", upn)
        assert upn[0] == upn_check_letter(upn[1:])
    attainment, _ = _read(demo, "dfe", "attainment")
    assert set(attainment["upn"].to_pylist()) <= set(upns)


def test_no_ground_truth_leaks(demo: DemoData, truth: pa.Table) -> None:
    for org in EXPECTED:
        org_dir = demo.root / org
        assert not any("truth" in p.name for p in org_dir.rglob("*"))
        assert not demo.truth_path.is_relative_to(org_dir)
    person_ids = set(truth["person_id"].to_pylist())
    assert all(re.fullmatch(r"P[0-9]{7}", p) for p in person_ids)
    for org, datasets in EXPECTED.items():
        for name in datasets:
            table, _ = _read(demo, org, name)
            for col in table.schema.names:
                assert "person" not in col and "truth" not in col, (name, col)
                if table.schema.field(col).type == pa.string():
                    values = set(table[col].to_pylist())
                    assert not values & person_ids, (name, col)


def test_ground_truth_covers_every_person_record(demo: DemoData, truth: pa.Table) -> None:
    assert truth.schema.names == ["org", "dataset", "key_column", "key_value", "person_id"]
    rows = truth.to_pylist()
    keys = {(r["org"], r["dataset"], r["key_value"]) for r in rows}
    assert len(keys) == len(rows)  # each record key maps to exactly one person
    for org, dataset, key in [
        ("nhs-trust", "patients", "nhs_number"),
        ("nhs-trust", "ae-attendances", "attendance_id"),
        ("dfe", "pupils", "upn"),
        ("dfe", "attainment", "upn"),
        ("local-authority", "childrens-social-care", "child_id"),
    ]:
        table, _ = _read(demo, org, dataset)
        in_truth = {r["key_value"] for r in rows if r["org"] == org and r["dataset"] == dataset}
        assert in_truth == set(table[key].to_pylist()), dataset
        assert {r["key_column"] for r in rows if r["dataset"] == dataset} == {key}
    assert not any(r["dataset"] == "ward-population" for r in rows)


def test_three_way_overlap(truth: pa.Table) -> None:
    people: dict[str, set[str]] = {}
    for r in truth.to_pylist():
        people.setdefault(r["org"], set()).add(r["person_id"])
    assert len(people["nhs-trust"]) == 2000
    three_way = people["nhs-trust"] & people["dfe"] & people["local-authority"]
    print(
        f"\norgs: nhs={len(people['nhs-trust'])} dfe={len(people['dfe'])} "
        f"la={len(people['local-authority'])} three-way={len(three_way)}"
    )
    assert 100 <= len(three_way) <= 600
    assert 300 <= len(people["dfe"]) <= 1200


def test_noise_present_but_most_records_agree(demo: DemoData, truth: pa.Table) -> None:
    nhs = _keyed_rows(demo, truth, "nhs-trust", "patients", "nhs_number")
    dfe = _keyed_rows(demo, truth, "dfe", "pupils", "upn")
    la = _keyed_rows(demo, truth, "local-authority", "childrens-social-care", "child_id")
    # Children registered twice at the council are deliberate duplicates.
    assert any(len(rows) > 1 for rows in la.values())
    for other in (dfe, la):
        pairs = [(nhs[p][0], rows[0]) for p, rows in other.items()]
        for field in ("given_name", "family_name", "date_of_birth", "postcode"):
            both = [(a[field], b[field]) for a, b in pairs if a[field] and b[field]]
            agree = sum(x == y for x, y in both) / len(both)
            assert 0.6 < agree < 1.0, (field, agree)
        missing = sum(b["given_name"] is None for _, b in pairs) / len(pairs)
        assert 0 < missing < 0.15

    la_rows = [r for rows in la.values() for r in rows]
    nhs_missing = sum(r["nhs_number"] is None for r in la_rows) / len(la_rows)
    assert 0.15 < nhs_missing < 0.45
    # Where the council holds an NHS number, it is the person's real one.
    for person, rows in la.items():
        for r in rows:
            assert r["nhs_number"] in (None, nhs[person][0]["nhs_number"])


def test_true_people_file(demo: DemoData, truth: pa.Table) -> None:
    people = pq.read_table(demo.truth_path.parent / "people.parquet").to_pylist()
    assert len(people) == 2000
    by_id = {p["person_id"]: p for p in people}
    assert set(truth["person_id"].to_pylist()) <= by_id.keys()
    # Members of a household share the home postcode.
    homes: dict[int, set[str]] = {}
    for p in people:
        homes.setdefault(p["household_id"], set()).add(p["postcode"])
    assert all(len(h) == 1 for h in homes.values())
    assert sum(len(h) for h in homes.values()) < 2000  # households really group people
    # Most trust records carry the true home postcode; some show a move.
    nhs = _keyed_rows(demo, truth, "nhs-trust", "patients", "nhs_number")
    same = sum(rows[0]["postcode"] == by_id[p]["postcode"] for p, rows in nhs.items())
    assert 0.75 * 2000 < same < 2000


def test_zero_noise_gives_identical_identities(tmp_path: Path) -> None:
    quiet = NoiseRates(**{k: 0.0 for k in vars(NoiseRates())})
    data = generate_demo_data(tmp_path, people=300, seed=3, noise=quiet)
    truth = pq.read_table(data.truth_path)
    nhs = _keyed_rows(data, truth, "nhs-trust", "patients", "nhs_number")
    la = _keyed_rows(data, truth, "local-authority", "childrens-social-care", "child_id")
    assert la
    fields = ("given_name", "family_name", "date_of_birth", "sex", "postcode", "nhs_number")
    for person, rows in la.items():
        assert len(rows) == 1
        assert {f: rows[0][f] for f in fields} == {f: nhs[person][0][f] for f in fields}


def test_noise_rates_do_not_change_the_people(tmp_path: Path) -> None:
    a = generate_demo_data(tmp_path / "a", people=300, seed=5)
    b = generate_demo_data(tmp_path / "b", people=300, seed=5, noise=NoiseRates(typo=0.5))
    nhs_a, _ = _read(a, "nhs-trust", "patients")
    nhs_b, _ = _read(b, "nhs-trust", "patients")
    assert nhs_a["nhs_number"].equals(nhs_b["nhs_number"])
    assert not nhs_a["given_name"].equals(nhs_b["given_name"])


def test_open_dataset_has_no_person_level_columns(demo: DemoData) -> None:
    table, meta = _read(demo, "local-authority", "ward-population")
    assert meta["tier"] == "open"
    assert all(c["sensitivity"] == "none" and c["join_key"] is None for c in meta["columns"])
    assert all(v % 5 == 0 for v in table["population"].to_pylist())


def test_value_domains(demo: DemoData) -> None:
    ae, _ = _read(demo, "nhs-trust", "ae-attendances")
    assert set(ae["acuity"].to_pylist()) <= {1, 2, 3, 4, 5}
    assert min(ae["age_at_arrival"].to_pylist()) >= 0
    patients, _ = _read(demo, "nhs-trust", "patients")
    assert "White British" in patients["ethnicity"].to_pylist()
    assert all(re.fullmatch(r"[A-Z][0-9]{5}", g) for g in patients["gp_practice_code"].to_pylist())
    pupils, _ = _read(demo, "dfe", "pupils")
    assert set(pupils["sen_status"].to_pylist()) == {"None", "SEN support", "EHC plan"}
    att, _ = _read(demo, "dfe", "attainment")
    assert set(att["key_stage"].to_pylist()) == {"KS2", "KS4"}
    assert all(re.fullmatch(r"20[0-9]{2}/[0-9]{2}", y) for y in att["academic_year"].to_pylist())
    csc, _ = _read(demo, "local-authority", "childrens-social-care")
    assert all(re.fullmatch(r"LA-[0-9]{6}", c) for c in csc["child_id"].to_pylist())
    assert set(csc["category"].to_pylist()) == {
        "Child in need", "Child protection plan", "Looked after",
    }  # fmt: skip


def test_tiny_population_and_bad_rates(tmp_path: Path) -> None:
    data = generate_demo_data(tmp_path, people=3, seed=1)
    table, meta = _read(data, "nhs-trust", "patients")
    assert table.num_rows == meta["row_count"] == 3
    with pytest.raises(ValueError):
        NoiseRates(typo=1.5)
    with pytest.raises(ValueError):
        generate_demo_data(tmp_path, people=0)

"""Publishing files at a datasite: types, validation, bad input, versions, never half-publishing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.catalogue.metadata import DatasetMeta
from ndl.core.errors import Conflict, InvalidInput
from ndl.datasite.metadata_edit import (
    apply_metadata_changes,
    dataset_lock,
    parse_assignments,
    read_metadata,
    staging_root,
)
from ndl.datasite.publish import inspect_file, publish_file
from ndl.datasite.store import DatasiteStore

GOOD = (
    "id,nhs_number,dob,postcode,score,flag,seen\n"
    "1,9434765919,1980-01-02,NE1 4AB,1.5,true,31/03/2024\n"
    "2,4010232137,1975-12-31,SW1A 1AA,2,false,01/01/2024\n"
    "3,9999999999,1990-06-15,LS6 2XZ,,yes,15/02/2023\n"
)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        path.write_text(text, "utf-8")
    else:
        path.write_bytes(text)
    return path


def publish(site: Path, src: Path, name: str = "beds", **kw: Any) -> Any:
    kw.setdefault("publisher", "Test Trust")
    return publish_file(site, src, dataset=name, **kw)


def folder_digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` and a hash of its bytes: the whole on-disk state."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and ".staging" not in p.parts}


def rows(site: Path, name: str = "beds") -> list[dict[str, Any]]:
    return pq.read_table(site / "datasets" / name / "data.parquet").to_pylist()


# -- the happy path --------------------------------------------------------------------------
def test_csv_publishes_with_inferred_types_and_valid_metadata(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", GOOD)
    report = publish(tmp_path / "site", src, accept_suggestions=True, title="Beds",
                     meta={"licence": "OGL-UK-3.0", "themes": ["health"]})
    assert report.rows == 3 and report.version == 1 and report.rows_quarantined == 0
    types = {c.name: c.type for c in report.columns}
    assert types == {"id": "integer", "nhs_number": "string", "dob": "date",
                     "postcode": "string", "score": "float", "flag": "boolean", "seen": "date"}
    data = rows(tmp_path / "site")
    assert data[0] == {"id": 1, "nhs_number": "9434765919", "dob": dt.date(1980, 1, 2),
                       "postcode": "NE1 4AB", "score": 1.5, "flag": True,
                       "seen": dt.date(2024, 3, 31)}
    assert data[2]["score"] is None and data[2]["flag"] is True
    # The datasite's own loader accepts what was written.
    store = DatasiteStore(tmp_path / "site")
    try:
        [local] = store.datasets()
    finally:
        store.close()
    meta = local.meta
    assert (meta.name, meta.title, meta.row_count, meta.licence) == ("beds", "Beds", 3,
                                                                     "OGL-UK-3.0")
    assert meta.model_extra is not None and meta.model_extra["version"] == 1
    tags = {c.name: (c.sensitivity, c.join_key) for c in meta.columns}
    assert tags["nhs_number"] == ("direct_identifier", "nhs_number")
    assert tags["postcode"] == ("quasi_identifier", "postcode")
    assert tags["dob"] == ("quasi_identifier", "date_of_birth")
    assert tags["score"] == ("none", None)


def test_suggestions_are_only_applied_when_accepted_and_overrides_win(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", GOOD)
    r = publish(tmp_path / "a", src)
    assert all(c.sensitivity == "none" and c.join_key is None for c in r.columns)
    assert {s.column for s in r.suggestions} >= {"nhs_number", "postcode", "dob"}
    r = publish(tmp_path / "b", src, accept_suggestions=True,
                sensitivity={"postcode": "sensitive"}, join_keys={"postcode": "none"})
    tags = {c.name: (c.sensitivity, c.join_key) for c in r.columns}
    assert tags["postcode"] == ("sensitive", None)
    assert tags["nhs_number"] == ("direct_identifier", "nhs_number")


def test_type_overrides(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", GOOD)
    r = publish(tmp_path / "site", src, types={"id": "string", "score": "float",
                                               "seen": "date"})
    assert {c.name: c.type for c in r.columns}["id"] == "string"
    assert rows(tmp_path / "site")[0]["id"] == "1"
    with pytest.raises(InvalidInput, match="'nope', which the file does not have"):
        publish(tmp_path / "x", src, types={"nope": "integer"})
    with pytest.raises(InvalidInput, match="'decimal' is not one of"):
        publish(tmp_path / "x", src, types={"id": "decimal"})


def test_inspect_reads_types_and_suggestions_without_publishing(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", GOOD)
    preview = inspect_file(src)
    assert preview.types["dob"].type == "date" and preview.sample_rows == 3
    assert {s.column: s.kind for s in preview.suggestions}["nhs_number"] == "nhs_number"
    assert not (tmp_path / "datasets").exists()


def test_leading_zeros_and_uk_dates_and_delimiters(tmp_path: Path) -> None:
    src = write(tmp_path / "in.tsv", "code\twhen\tn\n007\t5/1/2024\t1\n010\t31/12/2023\t2\n")
    r = publish(tmp_path / "site", src)
    assert {c.name: c.type for c in r.columns} == {"code": "string", "when": "date",
                                                   "n": "integer"}
    assert any("leading zeros" in n for n in r.notes)
    assert rows(tmp_path / "site")[0] == {"code": "007", "when": dt.date(2024, 1, 5), "n": 1}


def test_windows_line_endings_and_blank_lines_before_the_header(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", b"\r\n\r\nward,n\r\nA,1\r\nB,2\r\n")
    r = publish(tmp_path / "site", src)
    assert rows(tmp_path / "site") == [{"ward": "A", "n": 1}, {"ward": "B", "n": 2}]
    assert r.rows == 2


# -- bad rows --------------------------------------------------------------------------------
BAD = (
    "id,age,when\n"              # row 1
    "1,34,2024-01-01\n"          # row 2
    "2,x,2024-01-02\n"           # row 3: age
    "3,40\n"                     # row 4: too few fields
    "\n"                         # blank line: not a row
    "4,41,2024-02-30\n"          # row 5: no such date
    '5,"4\n2",2024-01-03\n'      # row 6: quoted newline, bad age
    "6,50,2024-01-04\n"          # row 7
)


def test_reject_lists_every_bad_row_by_number_and_publishes_nothing(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", BAD)
    with pytest.raises(InvalidInput) as exc:
        publish(tmp_path / "site", src, types={"age": "integer", "when": "date"})
    err = exc.value
    assert [b["row"] for b in err.detail["bad_rows"]] == [3, 4, 5, 6]
    assert "row 3: column 'age' value 'x' is not a whole number" in err.message
    assert "row 4: has 2 fields, expected 3" in err.message
    assert "row 5: column 'when' value '2024-02-30' is not a date like 2024-03-31" \
        in err.message
    assert "--on-error quarantine" in err.message
    assert not (tmp_path / "site" / "datasets" / "beds").exists()
    assert list(staging_root(tmp_path / "site").glob("beds.build-*")) == []


def test_quarantine_publishes_good_rows_and_keeps_bad_ones_with_reasons(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", BAD)
    r = publish(tmp_path / "site", src, types={"age": "integer", "when": "date"},
                on_error="quarantine")
    assert (r.rows, r.rows_quarantined) == (2, 4)
    assert [d["id"] for d in rows(tmp_path / "site")] == [1, 6]
    assert r.quarantine_path == tmp_path / "site" / "datasets" / "beds" / "quarantine.csv"
    lines = r.quarantine_path.read_text("utf-8").splitlines()
    assert lines[0] == "source_row,reason,id,age,when"
    body = "\n".join(lines[1:])
    assert "4,\"has 2 fields, expected 3" in body and ",3,40," in body
    assert "3,column 'age' value 'x' is not a whole number,2,x,2024-01-02" in body
    assert DatasetMeta.model_validate_json(
        (r.path / "metadata.json").read_text()).row_count == 2


def test_row_numbers_stay_right_across_many_blocks(tmp_path: Path) -> None:
    lines = ["n,v"] + [f"{i},{i}" for i in range(1, 5001)]
    lines[1234] = "1234,oops"          # row 1,235 (header is row 1)
    lines[2500] = "2500"               # row 2,501: one field
    lines[4999] = "4999,nope"          # row 5,000
    src = write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as exc:
        publish(tmp_path / "site", src, types={"v": "integer"}, block_size=4096)
    assert sorted(b["row"] for b in exc.value.detail["bad_rows"]) == [1235, 2501, 5000]
    r = publish(tmp_path / "site", src, types={"v": "integer"}, block_size=4096,
                on_error="quarantine")
    assert r.rows == 4997
    got = pq.read_table(r.path / "data.parquet").column("n").to_pylist()
    assert got == [i for i in range(1, 5001) if i not in (1234, 2500, 4999)]


def test_mixed_type_column_is_text_with_a_note_until_the_steward_says_otherwise(
        tmp_path: Path) -> None:
    body = "age\n" + "".join(f"{i}\n" for i in range(95)) + "unknown\n" * 5
    src = write(tmp_path / "in.csv", body)
    r = publish(tmp_path / "site", src)
    assert r.columns[0].type == "string"
    assert any("mostly integer" in n and "'unknown'" in n and "--type" in n for n in r.notes)
    with pytest.raises(InvalidInput, match="5 rows failed"):
        publish(tmp_path / "other", src, types={"age": "integer"})


def test_truncated_csv_says_it_may_be_truncated(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", "a,b,c\n1,2,3\n4,5,6\n7,8")
    with pytest.raises(InvalidInput, match=r"row 4 is the last row.*may be truncated"):
        publish(tmp_path / "site", src)
    src = write(tmp_path / "q.csv", 'a,b\n1,2\n"3,4\n')  # unclosed quote at the end
    with pytest.raises(InvalidInput, match="row 3: has 1 field, expected 2"):
        publish(tmp_path / "site", src)


# -- bad files -------------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"\n\n\n", "only blank lines"),
    (b"a,b,c\n", "header row but no data rows"),
    (b"a,b,a\n1,2,3\n", "'a' appears more than once"),
    (b"a,,c\n1,2,3\n", "column 2 has no name"),
    (b"1,2,3\n4,5,6\n", "looks like data, not column names"),
    (b"\x1f\x8b\x08\x00gz", "gzip-compressed"),
    (b"a,b\x00,c\n", "NUL bytes"),
])
def test_bad_csv_files_give_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    src = write(tmp_path / "in.csv", content)
    with pytest.raises(InvalidInput, match=message):
        publish(tmp_path / "site", src)
    assert not (tmp_path / "site" / "datasets" / "beds").exists()


def test_invalid_utf8_names_the_byte_and_suggests_an_encoding(tmp_path: Path) -> None:
    good = "".join(f"{i},plain\n" for i in range(3000))
    src = write(tmp_path / "in.csv", ("id,ward\n" + good + "3000,Caf").encode() + b"\xe9\n")
    with pytest.raises(InvalidInput) as exc:
        publish(tmp_path / "site", src)
    assert "not valid utf-8: byte 0xE9" in exc.value.message
    assert "--encoding cp1252" in exc.value.message
    assert exc.value.detail["line"] == 3002
    r = publish(tmp_path / "site", src, encoding="cp1252")
    assert rows(tmp_path / "site")[-1] == {"id": 3000, "ward": "Café"} and r.rows == 3001
    with pytest.raises(InvalidInput, match="unknown encoding 'klingon'"):
        publish(tmp_path / "x", src, encoding="klingon")


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", b"\xef\xbb\xbfward,n\nA,1\n")
    r = publish(tmp_path / "site", src)
    assert [c.name for c in r.columns] == ["ward", "n"]


def test_parquet_input_keeps_its_types(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({
        "n": pa.array([1, 2, None], pa.int32()),
        "ward": pa.array(["A", "B", "A"]).dictionary_encode(),
        "when": pa.array([dt.date(2024, 1, 1)] * 3),
        "at": pa.array([dt.datetime(2024, 1, 1, 9, 30)] * 3),
        "code": ["1", "x", "3"],
    }), src)
    r = publish(tmp_path / "site", src, types={"code": "integer"}, on_error="quarantine")
    assert {c.name: c.type for c in r.columns} == {"n": "integer", "ward": "string",
                                                   "when": "date", "at": "string",
                                                   "code": "integer"}
    assert (r.rows, r.rows_quarantined, r.bad_rows[0].row) == (2, 1, 2)
    assert rows(tmp_path / "site")[1]["n"] is None
    assert rows(tmp_path / "site")[0]["at"].startswith("2024-01-01 09:30")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_corrupt_and_truncated_parquet(tmp_path: Path, cut: float) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"n": list(range(1000))}), good)
    data = good.read_bytes()
    src = write(tmp_path / "bad.parquet", data[: int(len(data) * cut)])
    with pytest.raises(InvalidInput, match=r"not a readable Parquet file.*corrupt or truncated"):
        publish(tmp_path / "site", src)
    junk = write(tmp_path / "junk.parquet", b"this is not parquet at all")
    with pytest.raises(InvalidInput, match="does not start with PAR1"):
        publish(tmp_path / "site", junk)


def _workbook(path: Path, rows_: list[list[Any]], sheet: str = "Data") -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = sheet
    for row in rows_:
        ws.append(row)
    wb.save(path)
    return path


def test_excel_input_with_row_numbers_from_the_sheet(tmp_path: Path) -> None:
    src = _workbook(tmp_path / "in.xlsx", [
        ["ward", "beds", "opened"],
        ["A", 10, dt.datetime(2020, 1, 1)],
        [None, None, None],                  # row 3: blank, skipped
        ["B", "lots", dt.datetime(2021, 5, 6)],  # row 4: bad integer
        ["C", 12.0, dt.datetime(2022, 7, 8)],
    ])
    with pytest.raises(InvalidInput, match="row 4: column 'beds' value 'lots'"):
        publish(tmp_path / "site", src, types={"beds": "integer"})
    r = publish(tmp_path / "site", src, types={"beds": "integer"}, on_error="quarantine")
    assert {c.name: c.type for c in r.columns} == {"ward": "string", "beds": "integer",
                                                   "opened": "date"}
    assert rows(tmp_path / "site") == [
        {"ward": "A", "beds": 10, "opened": dt.date(2020, 1, 1)},
        {"ward": "C", "beds": 12, "opened": dt.date(2022, 7, 8)}]
    with pytest.raises(InvalidInput, match="no sheet 'Other'; its sheets are 'Data'"):
        publish(tmp_path / "x", src, sheet="Other")


def test_corrupt_xlsx(tmp_path: Path) -> None:
    good = _workbook(tmp_path / "good.xlsx", [["a"], [1]])
    src = write(tmp_path / "bad.xlsx", good.read_bytes()[:200])
    with pytest.raises(InvalidInput, match=r"not a readable .xlsx workbook"):
        publish(tmp_path / "site", src)
    src = write(tmp_path / "old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 old excel")
    with pytest.raises(InvalidInput, match=r"save it as .xlsx or CSV"):
        publish(tmp_path / "site", src)


# -- metadata --------------------------------------------------------------------------------
@pytest.mark.parametrize(("meta", "field"), [
    ({"issued": "2024-13-01"}, "issued"),
    ({"licence": "do what you like"}, "licence"),
    ({"issued": "2024-05-01", "modified": "2024-01-01"}, "modified must not be before"),
    ({"themes": ["astrology"]}, "unknown theme 'astrology'"),
    ({"contact": {"name": "Data team", "email": "not-an-email"}}, "contact.email"),
    ({"licence_": "OGL-UK-3.0"}, "'licence_' is not a metadata field"),
    ({"row_count": 5}, "row_count is set from the data"),
])
def test_invalid_metadata_is_refused_and_the_previous_version_kept(
        tmp_path: Path, meta: dict[str, Any], field: str) -> None:
    site, src = tmp_path / "site", write(tmp_path / "in.csv", GOOD)
    publish(site, src)
    before = folder_digest(site / "datasets")
    with pytest.raises(InvalidInput, match=field):
        publish(site, src, meta=meta, new_version=True)
    assert folder_digest(site / "datasets") == before


def test_open_tier_refuses_direct_identifiers(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", GOOD)
    with pytest.raises(InvalidInput, match="open datasets may not hold direct identifiers"):
        publish(tmp_path / "site", src, tier="open", accept_suggestions=True)


def test_publisher_defaults_to_the_datasite_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "datasite.json").write_text(json.dumps({"name": "Northshire Trust"}))
    r = publish_file(site, write(tmp_path / "in.csv", GOOD), dataset="beds")
    assert read_metadata(site, "beds")["publisher"] == "Northshire Trust" and r.rows == 3
    with pytest.raises(InvalidInput, match="give --publisher"):
        publish_file(tmp_path / "other", tmp_path / "in.csv", dataset="beds")


# -- versions and atomicity ------------------------------------------------------------------
def test_duplicate_dataset_needs_new_version(tmp_path: Path) -> None:
    site, src = tmp_path / "site", write(tmp_path / "in.csv", GOOD)
    publish(site, src)
    with pytest.raises(Conflict, match=r"already exists.*version 1.*--new-version.*version 2"):
        publish(site, src)
    with pytest.raises(InvalidInput, match="must be 2-63 lowercase"):
        publish(site, src, name="Beds!")


def test_republish_moves_the_previous_version_to_history(tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish(site, write(tmp_path / "v1.csv", "n\n1\n"), description="first")
    apply_metadata_changes(site, "beds", {"licence": "CC-BY-4.0"})
    r2 = publish(site, write(tmp_path / "v2.csv", "n\n1\n2\n"), new_version=True)
    r3 = publish(site, write(tmp_path / "v3.csv", "n\n1\n2\n3\n"), new_version=True)
    assert (r2.version, r3.version, r3.previous_version) == (2, 3, 2)
    d = site / "datasets" / "beds"
    assert r3.history_path == d / "history" / "v2"
    assert [len(pq.read_table(d / p / "data.parquet")) for p in
            ("history/v1", "history/v2", ".")] == [1, 2, 3]
    versions = [json.loads((d / p / "metadata.json").read_text())["version"]
                for p in ("history/v1", "history/v2", ".")]
    assert versions == [1, 2, 3]
    current = read_metadata(site, "beds")
    # What the steward curated carries over to the new version.
    assert (current["licence"], current["description"], current["row_count"]) == (
        "CC-BY-4.0", "first", 3)
    store = DatasiteStore(site)
    try:
        assert [x.meta.name for x in store.datasets()] == ["beds"]  # history is not a dataset
    finally:
        store.close()


def test_bad_new_version_leaves_the_previous_version_byte_for_byte(tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish(site, write(tmp_path / "v1.csv", GOOD))
    before = folder_digest(site / "datasets")
    with pytest.raises(InvalidInput, match="row 3"):
        publish(site, write(tmp_path / "v2.csv", "id\n1\nx\n"), types={"id": "integer"},
                new_version=True)
    assert folder_digest(site / "datasets") == before
    assert list(staging_root(site).glob("beds.*-*")) == []


@pytest.mark.parametrize("fail_at_call", [1, 3])
def test_a_failure_midway_leaves_the_previous_version_intact(tmp_path: Path,
                                                             fail_at_call: int) -> None:
    site = tmp_path / "site"
    publish(site, write(tmp_path / "v1.csv", GOOD))
    before = folder_digest(site / "datasets")
    big = write(tmp_path / "v2.csv", "n\n" + "".join(f"{i}\n" for i in range(20_000)))
    calls = []

    def boom(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == fail_at_call:  # 1: mid-stream; 3: after all data, before the swap
            raise RuntimeError("disk unplugged")

    with pytest.raises(RuntimeError, match="disk unplugged"):
        publish(site, big, new_version=True, progress=boom, block_size=64 << 10)
    assert folder_digest(site / "datasets") == before
    assert list(staging_root(site).glob("beds.build-*")) == []
    assert rows(site)[0]["id"] == 1


def test_leftovers_of_a_crashed_publish_are_recovered(tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish(site, write(tmp_path / "v1.csv", GOOD))
    d, root = site / "datasets" / "beds", staging_root(site)
    # A crash between "move the old version aside" and "move the new one in":
    os.rename(d, root / "beds.old-12345678")
    (root / "beds.build-abcdef12").mkdir()
    with pytest.raises(Conflict):  # the old version is back, so it is a duplicate again
        publish(site, write(tmp_path / "v2.csv", "n\n1\n"))
    assert rows(site)[0]["id"] == 1
    assert sorted(p.name for p in root.iterdir()) == ["beds.lock"]


def test_a_publish_in_progress_blocks_another(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with dataset_lock(site, "beds"), pytest.raises(Conflict, match="being published or edited"):
        publish(site, write(tmp_path / "v1.csv", GOOD))


# -- metadata edits --------------------------------------------------------------------------
def test_metadata_changes_are_validated_and_written_atomically(tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish(site, write(tmp_path / "in.csv", GOOD))
    meta = apply_metadata_changes(site, "beds", parse_assignments([
        "licence=OGL-UK-3.0", "themes=health,housing", "contact.name=Data team",
        "contact.email=data@example.nhs.uk", "access.lead_time_days=30",
        "columns.score.unit=points", "columns.score.description=Triage score",
    ]))
    assert meta.licence == "OGL-UK-3.0" and meta.themes == ["health", "housing"]
    assert meta.access.lead_time_days == 30 and meta.contact is not None
    col = meta.column("score")
    assert col is not None and (col.unit, col.description) == ("points", "Triage score")
    on_disk = read_metadata(site, "beds")
    assert on_disk["access"]["lead_time_days"] == 30 and on_disk["version"] == 1
    assert [p.name for p in (site / "datasets" / "beds").iterdir() if p.name.startswith(".")
            ] == []


@pytest.mark.parametrize(("changes", "message"), [
    ({"issued": "2024-02-30"}, "issued"),
    ({"licence": "whatever"}, "licence: must be one of"),
    ({"name": "other"}, "name cannot be edited"),
    ({"version": 7}, "version cannot be edited"),
    ({"columns.score.type": "string"}, "columns.score.type cannot be edited"),
    ({"columns.score.name": "points"}, "columns.score.name cannot be edited"),
    ({"columns": [{"name": "score", "type": "integer"}]}, "columns.score.type cannot"),
    ({"columns.nope.unit": "x"}, "there is no column 'nope'"),
    ({"columns.score.sensitivity": "secret"}, "columns.score.sensitivity: Input should be"),
    ({"colour": "blue"}, "'colour' is not a metadata field"),
    ({}, "no changes given"),
])
def test_bad_metadata_changes_change_nothing(tmp_path: Path, changes: dict[str, Any],
                                             message: str) -> None:
    site = tmp_path / "site"
    publish(site, write(tmp_path / "in.csv", GOOD))
    before = folder_digest(site / "datasets")
    with pytest.raises(InvalidInput, match=message):
        apply_metadata_changes(site, "beds", changes)
    assert folder_digest(site / "datasets") == before


def test_metadata_changes_accept_whole_objects_and_column_lists(tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish(site, write(tmp_path / "in.csv", GOOD))
    meta = apply_metadata_changes(site, "beds", {
        "contact": {"name": "Data team", "email": "data@example.org"},
        "columns": [{"name": "score", "type": "float", "description": "Points"}],
        "temporal": {"start": "2023-01-01", "end": "2023-12-31"},
    })
    assert meta.temporal is not None and meta.temporal.end == dt.date(2023, 12, 31)
    assert meta.column("score").description == "Points"  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="end must not be before start"):
        apply_metadata_changes(site, "beds", {"temporal.end": "2022-01-01"})
    with pytest.raises(Exception, match="not published"):
        apply_metadata_changes(site, "nothing-here", {"title": "x"})


def test_reading_stays_a_few_blocks_ahead_of_the_work(tmp_path: Path) -> None:
    # Arrow's CSV reader would read ahead without limit; memory is bounded only if it waits.
    src = write(tmp_path / "in.csv", "n,text\n" + "".join(
        f"{i},{'x' * 40}\n" for i in range(120_000)))
    block = 64 << 10
    seen: list[int] = []

    def slow(done: int, total: int) -> None:
        seen.append(done)
        time.sleep(0.002)  # a consumer slower than the disk

    r = publish(tmp_path / "site", src, block_size=block, progress=slow)
    assert r.rows == 120_000 and len(seen) > 50
    ahead = max(done - (i + 1) * block for i, done in enumerate(seen[:-1]))
    assert ahead <= 6 * block, f"read {ahead / block:.1f} blocks ahead"

"""``ndl publish`` and ``ndl metadata`` as a steward runs them: real processes, real files.

The last test runs them beside a real datasite and hub, which pick the new versions up.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from netfixture import Network

from ndl.core.errors import NotFound
from ndl.linkage.nhs_number import is_valid

ROWS = 1_000_000


def ndl(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ndl", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"})


def digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and ".staging" not in p.parts}


def make_big_csv(path: Path) -> None:
    """A million rows with an NHS-number column, written in one vectorised pass."""
    rng = np.random.default_rng(3)
    digits = rng.integers(0, 10, (ROWS, 9))
    digits[:, :3] = 9
    check = 11 - (digits @ np.arange(10, 1, -1)) % 11
    check[check == 11] = 0
    keep = check != 10  # nine digits that no valid number starts with: drop those rows
    nhs = (digits[keep] @ (10 ** np.arange(9, 0, -1)) + check[keep]).astype(str)
    nhs = np.resize(nhs, ROWS)
    pacsv.write_csv(pa.table({
        "id": np.arange(ROWS),
        "nhs_number": nhs,
        "region": np.array(["North East", "London", "Wales"])[rng.integers(0, 3, ROWS)],
        "attended": (np.datetime64("2023-01-01") + rng.integers(0, 365, ROWS)).astype(str),
        "wait_minutes": np.round(rng.gamma(2.0, 60.0, ROWS), 1),
    }), path)


def test_a_million_row_csv_publishes_with_a_progress_bar(tmp_path: Path) -> None:
    src, site = tmp_path / "attendances.csv", tmp_path / "site"
    make_big_csv(src)
    res = ndl("publish", src, "--dir", site, "--dataset", "ae-attendances", "--publisher",
              "Northshire NHS Trust", "--title", "A&E attendances", "--licence", "OGL-UK-3.0",
              "--theme", "health", "--yes")
    assert res.returncode == 0, res.stderr
    assert "publishing attendances.csv" in res.stderr and "100%" in res.stderr  # the bar
    assert "published ae-attendances version 1: 1,000,000 rows" in res.stdout
    data = site / "datasets" / "ae-attendances"
    assert pq.ParquetFile(data / "data.parquet").metadata.num_rows == ROWS
    meta = json.loads((data / "metadata.json").read_text())
    assert (meta["row_count"], meta["version"], meta["licence"], meta["themes"]) == (
        ROWS, 1, "OGL-UK-3.0", ["health"])
    cols = {c["name"]: c for c in meta["columns"]}
    assert {n: c["type"] for n, c in cols.items()} == {
        "id": "integer", "nhs_number": "string", "region": "string", "attended": "date",
        "wait_minutes": "float"}
    assert (cols["nhs_number"]["sensitivity"], cols["nhs_number"]["join_key"]) == (
        "direct_identifier", "nhs_number")
    first = pq.read_table(data / "data.parquet", columns=["nhs_number"]).slice(0, 100)
    assert all(is_valid(v) for v in first.column(0).to_pylist())


BAD = ("ward,beds,opened\nA,10,2020-01-01\nB,lots,2020-02-01\nC,12\nD,14,2020-02-30\n"
       "E,9,2021-01-01\n")


def test_reject_quarantine_and_versions_from_the_command_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    good = tmp_path / "beds.csv"
    good.write_text("ward,beds,opened\nA,10,2020-01-01\nB,11,2020-02-01\n")
    bad = tmp_path / "beds-bad.csv"
    bad.write_text(BAD)
    common = ["--dir", site, "--dataset", "beds", "--publisher", "Test Trust"]
    res = ndl("publish", good, *common, "--yes")
    assert res.returncode == 0, res.stderr
    before = digest(site / "datasets")

    # The same name again without --new-version: a conflict, nothing read or changed.
    res = ndl("publish", good, *common, "--yes")
    assert res.returncode == 6 and "--new-version" in res.stderr

    # Bad rows under reject (the default): exit 2, each bad row by number, nothing changed.
    res = ndl("publish", bad, *common, "--new-version", "--type", "beds=integer",
              "--type", "opened=date", "--yes")
    assert res.returncode == 2
    err = " ".join(res.stderr.split())
    for expected in ("3 rows failed validation", "row 3: column 'beds' value 'lots'",
                     "row 4: has 2 fields, expected 3", "row 5: column 'opened' value "
                     "'2020-02-30' is not a date"):
        assert expected in err, res.stderr
    assert digest(site / "datasets") == before

    # Under quarantine: version 2 holds the good rows, the bad ones are set aside.
    res = ndl("publish", bad, *common, "--new-version", "--type", "beds=integer",
              "--type", "opened=date", "--on-error", "quarantine", "--json", "--yes")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["version"], report["rows"], report["rows_quarantined"]) == (2, 2, 3)
    d = site / "datasets" / "beds"
    assert pq.read_table(d / "data.parquet").column("ward").to_pylist() == ["A", "E"]
    quarantined = (d / "quarantine.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in quarantined] == ["source_row", "3", "4", "5"]
    assert json.loads((d / "metadata.json").read_text())["version"] == 2
    assert json.loads((d / "history" / "v1" / "metadata.json").read_text())["version"] == 1
    assert pq.read_table(d / "history" / "v1" / "data.parquet").num_rows == 2
    assert report["history_path"] == str(d / "history" / "v1")


def test_suggestions_need_the_stewards_yes(tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    src.write_text("nhs_number,postcode,n\n9434765919,NE1 4AB,1\n4010232137,LS6 2XZ,2\n")
    common = ["publish", src, "--dir", tmp_path / "site", "--dataset", "people",
              "--publisher", "T"]
    res = ndl(*common, stdin="n\n")
    assert res.returncode == 1 and "nothing published" in res.stderr
    assert "direct_identifier" in res.stdout and "valid NHS numbers" in res.stdout
    assert not (tmp_path / "site" / "datasets" / "people").exists()
    res = ndl(*common, "--sensitivity", "postcode=sensitive", stdin="y\n")
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "site" / "datasets" / "people" / "metadata.json").read_text())
    tags = {c["name"]: (c["sensitivity"], c.get("join_key")) for c in meta["columns"]}
    assert tags == {"nhs_number": ("direct_identifier", "nhs_number"),
                    "postcode": ("sensitive", "postcode"), "n": ("none", None)}


def test_metadata_set_and_show(tmp_path: Path) -> None:
    src, site = tmp_path / "beds.csv", tmp_path / "site"
    src.write_text("ward,beds\nA,10\n")
    assert ndl("publish", src, "--dir", site, "--dataset", "beds", "--publisher", "T",
               "--yes").returncode == 0
    where = ["--dir", site, "--dataset", "beds"]
    res = ndl("metadata", "set", *where, "licence=CC-BY-4.0", "themes=health,housing",
              "contact.email=data@example.org", "contact.name=Data team",
              "columns.beds.unit=beds")
    assert res.returncode == 0, res.stderr
    res = ndl("metadata", "show", *where, "--json")
    meta = json.loads(res.stdout)
    assert (meta["licence"], meta["themes"], meta["contact"]["email"]) == (
        "CC-BY-4.0", ["health", "housing"], "data@example.org")
    before = digest(site / "datasets")
    res = ndl("metadata", "set", *where, "issued=2024-13-45", "licence=mine")
    assert res.returncode == 2
    assert "issued" in res.stderr and "licence" in res.stderr
    res = ndl("metadata", "set", *where, "columns.beds.type=string")
    assert res.returncode == 2 and "cannot be edited" in res.stderr
    assert digest(site / "datasets") == before
    assert "CC-BY-4.0" in ndl("metadata", "show", *where).stdout


def test_a_running_datasite_sends_what_ndl_publish_writes_to_the_hub(
        network: Network, tmp_path: Path) -> None:
    def detail_when(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        with network.client() as client:
            while True:
                try:
                    d = client.dataset("nhs-trust/bed-days")
                    if check(d):
                        return d
                except NotFound:
                    pass
                assert time.monotonic() < deadline, "the hub never saw the published dataset"
                time.sleep(0.2)

    src = tmp_path / "beds.csv"
    src.write_text("ward,beds\nA,10\nB,12\n")
    common = ["--dir", network.site.root, "--dataset", "bed-days", "--publisher",
              "Northshire NHS Foundation Trust", "--tier", "open", "--licence", "OGL-UK-3.0"]
    assert ndl("publish", src, *common, "--yes").returncode == 0
    d = detail_when(lambda d: d["row_count"] == 2)
    assert d["licence"] == "OGL-UK-3.0" and [c["name"] for c in d["columns"]] == ["ward", "beds"]
    src.write_text("ward,beds\nA,10\nB,12\nC,7\n")
    assert ndl("publish", src, *common, "--yes", "--new-version").returncode == 0
    d = detail_when(lambda d: d["row_count"] == 3)
    with network.client() as client:
        sql = client.sql("nhs-trust/bed-days", "SELECT sum(beds) AS n FROM data")
    assert sql.rows == [[29]]

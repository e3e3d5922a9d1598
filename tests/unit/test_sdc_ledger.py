"""The release ledger: true statistics of released tables, shared by every project on a
datasite, recorded once per job and table, and feeding the differencing checks."""

from __future__ import annotations

import math
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from ndl.core.errors import InvalidInput
from ndl.privacy.sdc import CellStats, SdcPolicy, TableStats, check_table
from ndl.privacy.sdc_ledger import ReleaseLedger


def counts(name: str, cells: dict[tuple[str, ...], int], *, dims: tuple[str, ...] = ("sen",),
           dataset: str = "dfe/pupils") -> TableStats:
    return TableStats(name, dataset, dims, "count",
                      tuple(CellStats(k, n, float(n)) for k, n in cells.items()))


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    ledger = ReleaseLedger(tmp_path / "releases.sqlite")
    table = counts("by_sen_fsm", {("a", "y"): 12, ("a", "n"): 30}, dims=("sen", "fsm"))
    sums = TableStats("spend", "dfe/pupils", ("sen",), "sum",
                      (CellStats(("a",), 12, -3.5, 40.25, (10.0, 9.5)),
                       CellStats(("b",), 3, math.nan, math.inf, (1.0, 1.0))))
    ledger.record(table, job_id="j1", project="p1")
    ledger.record(sums, job_id="j1", project="p1")
    got = ledger.earlier("dfe/pupils")
    assert got[0] == table
    assert got[1].cells[0] == sums.cells[0]
    assert math.isnan(got[1].cells[1].value) and got[1].cells[1].total == math.inf
    assert ledger.earlier("ons/other") == []
    assert stat.S_IMODE((tmp_path / "releases.sqlite").stat().st_mode) == 0o600


def test_record_is_idempotent_per_job_and_table(tmp_path: Path) -> None:
    ledger = ReleaseLedger(tmp_path / "r.sqlite")
    ledger.record(counts("t", {("a",): 20}), job_id="j1", project="p1")
    ledger.record(counts("t", {("a",): 20}), job_id="j1", project="p1")  # after a restart
    assert len(ledger.earlier("dfe/pupils")) == 1
    # A rerun that computed other numbers replaces the first: the ledger holds what went out.
    ledger.record(counts("t", {("a",): 21}), job_id="j1", project="p1")
    assert [c.n for t in ledger.earlier("dfe/pupils") for c in t.cells] == [21]
    ledger.record(counts("t", {("a",): 20}), job_id="j2", project="p1")
    assert len(ledger.earlier("dfe/pupils")) == 2


def test_forget_job_drops_only_that_job(tmp_path: Path) -> None:
    ledger = ReleaseLedger(tmp_path / "r.sqlite")
    ledger.record(counts("t1", {("a",): 20}), job_id="rejected", project="p1")
    ledger.record(counts("t2", {("a",): 20}), job_id="rejected", project="p1")
    ledger.record(counts("t3", {("a",): 20}), job_id="kept", project="p1")
    assert ledger.forget_job("rejected") == 2
    assert [t.name for t in ledger.earlier("dfe/pupils")] == ["t3"]
    assert ledger.forget_job("rejected") == 0


def test_survives_reopening_and_sees_other_projects(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ReleaseLedger(path).record(counts("theirs", {("a",): 20}), job_id="j1", project="p1")
    reopened = ReleaseLedger(path)  # a restarted datasite
    reopened.record(counts("mine", {("a",): 25}), job_id="j2", project="p2")
    assert [t.name for t in reopened.earlier("dfe/pupils")] == ["theirs", "mine"]
    rows = sqlite3.connect(path).execute("SELECT project FROM sdc_release ORDER BY id")
    assert [r[0] for r in rows] == ["p1", "p2"]


def test_all_pupils_then_all_but_three_is_a_differencing_finding(tmp_path: Path) -> None:
    ledger = ReleaseLedger(tmp_path / "r.sqlite")
    everyone = counts("all_pupils", {("none",): 400, ("support",): 150, ("ehcp",): 50})
    ledger.record(everyone, job_id="j1", project="p1")
    # Another project, the same dataset, everyone but 3 pupils (say, one school's SEN unit).
    but_three = counts("all_but_three", {("none",): 400, ("support",): 150, ("ehcp",): 47})
    check = check_table(but_three, SdcPolicy(), ledger.earlier("dfe/pupils"))
    assert check.needs_review
    assert {(f.cell, f.rule) for f in check.findings} >= {(("ehcp",), "differencing"),
                                                         (None, "differencing")}
    assert check.released[("ehcp",)] is None
    # Forgetting the first job (its outputs were rejected) removes the clash.
    ledger.forget_job("j1")
    assert not check_table(but_three, SdcPolicy(), ledger.earlier("dfe/pupils")).needs_review


def test_concurrent_records_from_threads(tmp_path: Path) -> None:
    ledger = ReleaseLedger(tmp_path / "r.sqlite")

    def work(i: int) -> None:
        for j in range(5):
            ledger.record(counts(f"t{j}", {("a",): 20 + i}), job_id=f"job{i}", project="p")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ledger.earlier("dfe/pupils")) == 20


@pytest.mark.parametrize(("job_id", "project"), [("", "p"), ("j", "")])
def test_record_refuses_blank_ids(tmp_path: Path, job_id: str, project: str) -> None:
    with pytest.raises(InvalidInput, match="non-empty"):
        ReleaseLedger(tmp_path / "r.sqlite").record(counts("t", {("a",): 20}), job_id=job_id,
                                                    project=project)

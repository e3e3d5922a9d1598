"""The job runner's outcomes, in the weaker sandbox (isolation is not the point here).

Missing outputs, crashes and their researcher-safe words, SQL jobs with and without a count
column, models with too few residual degrees of freedom, mock runs, and the release ledger.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.jobs.bundle import from_files
from ndl.jobs.runner import JobInput, JobOutcome, run_job
from ndl.jobs.sandbox import Limits, Sandbox, open_sandbox
from ndl.privacy.sdc_ledger import ReleaseLedger

LIMITS = Limits(cpu_seconds=30, wall_seconds=30.0, memory_bytes=1024**3)
DATASET = "dfe/pupils"
HIDDEN = ("(its message is not shown: it could hold a value from the data; run it with "
          "--mock to see it)")


def manifest(outputs: list[tuple[str, str]], *, language: str = "python",
             count_column: str | None = None) -> str:
    entry = "analysis.py" if language == "python" else "query.sql"
    extra = f'count_column = "{count_column}"\n' if count_column else ""
    decls = "".join(f'\n[[outputs]]\nname = "{n}"\nkind = "{k}"\ndescription = "{n}"\n{extra}'
                    for n, k in outputs)
    return (f'name = "unit"\nlanguage = "{language}"\nentry = "{entry}"\n'
            f'environment = "python-data"\ndatasets = ["{DATASET}"]\ncontext = "Tests."\n'
            + decls)


@pytest.fixture(scope="module")
def weaker() -> Sandbox:
    return open_sandbox("weaker")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "pupils.parquet"
    pq.write_table(pa.table({
        "region": ["North"] * 30 + ["South"] * 20 + ["Islands"] * 4,
        "score": [40 + (i * 7) % 31 for i in range(54)],
        "fsm": [i % 2 for i in range(54)],
    }), path)
    return path


def run(weaker: Sandbox, data: Path, tmp_path: Path, code: str,
        outputs: list[tuple[str, str]], *, language: str = "python",
        count_column: str | None = None, mock: bool = False,
        ledger: ReleaseLedger | None = None, job_id: str = "job-unit") -> JobOutcome:
    entry = "analysis.py" if language == "python" else "query.sql"
    bundle = from_files({"ndl-job.toml": manifest(outputs, language=language,
                                                  count_column=count_column), entry: code})
    job = JobInput(job_id=job_id, bundle=bundle, datasets={DATASET: data}, project="p1",
                   mock=mock, limits=LIMITS)
    return run_job(job, sandbox=weaker, ledger=ledger, workdir=tmp_path / "work")


def members(o: JobOutcome) -> dict[str, bytes]:
    assert o.archive is not None
    with zipfile.ZipFile(o.archive) as z:
        return {n: z.read(n) for n in z.namelist()}


READ = "from ndl import job\nd = job.dataset('dfe/pupils', as_='pandas')\n"


def test_declared_output_not_produced_is_withheld(weaker: Sandbox, data: Path,
                                                  tmp_path: Path) -> None:
    o = run(weaker, data, tmp_path, READ + "job.table('by_region', d, by='region')\n",
            [("by_region", "table"), ("notes", "text")])
    assert o.ok and o.report is not None
    notes = {r.name: r for r in o.report.outputs}["notes"]
    assert (notes.status, notes.file) == ("withheld", None)
    assert notes.problem == "declared output 'notes' was not produced (expected notes.txt)"
    assert "output notes: withheld: declared output 'notes' was not produced" in \
        "\n".join(o.safe_log)
    assert set(members(o)) == {"by_region.csv", "log.txt", "report.json"}


def test_crash_names_the_kind_and_line_never_the_message(weaker: Sandbox, data: Path,
                                                         tmp_path: Path) -> None:
    code = READ + "total = len(d)\nratio = total / 0\n"
    o = run(weaker, data, tmp_path, code, [("by_region", "table")])
    assert not o.ok and o.archive is None and o.report is None
    assert o.error == ("the job failed with ZeroDivisionError at analysis.py line 4: "
                       f"ratio = total / 0 {HIDDEN}")
    assert o.safe_log[-1] == o.error
    assert "division by zero" in o.full_log  # the traceback, for the output checker only


def test_mock_run_shows_the_message(weaker: Sandbox, data: Path, tmp_path: Path) -> None:
    code = READ + "ratio = len(d) / 0\n"
    o = run(weaker, data, tmp_path, code, [("by_region", "table")], mock=True)
    assert o.error == ("the job failed with ZeroDivisionError at analysis.py line 3: "
                       "ratio = len(d) / 0 (division by zero)")


def test_misused_helper_says_so_and_mock_shows_why(weaker: Sandbox, data: Path,
                                                   tmp_path: Path) -> None:
    code = READ + "job.table('nope', d, by='region')\n"
    o = run(weaker, data, tmp_path, code, [("by_region", "table")])
    assert o.error is not None and o.error.startswith(
        "the job failed with JobError at analysis.py line 3")
    assert o.error.endswith("(ndl.job was used wrongly; run it with --mock to see the message)")
    mocked = run(weaker, data, tmp_path, code, [("by_region", "table")], mock=True)
    assert mocked.error is not None and "output 'nope' is not declared" in mocked.error


def test_sql_with_count_column_is_checked(weaker: Sandbox, data: Path, tmp_path: Path) -> None:
    sql = "SELECT region, count(*) AS pupils FROM pupils GROUP BY region ORDER BY region"
    o = run(weaker, data, tmp_path, sql, [("by_region", "table")], language="sql",
            count_column="pupils")
    assert o.ok and o.report is not None
    (out,) = o.report.outputs
    assert (out.status, out.made_by, out.cells, out.suppressed) == ("checked", "helper", 3, 2)
    # Islands (4) is under the threshold; South goes with it so it cannot be worked out.
    assert [(f.cell, f.rule) for f in out.findings] == [(["Islands"], "threshold"),
                                                        (["South"], "secondary")]
    assert members(o)["by_region.csv"].decode().splitlines() == [
        "region,count", "Islands,[suppressed]", "North,30", "South,[suppressed]"]


def test_sql_without_count_column_goes_to_review(weaker: Sandbox, data: Path,
                                                 tmp_path: Path) -> None:
    sql = "SELECT region, count(*) AS pupils FROM pupils GROUP BY region ORDER BY region"
    o = run(weaker, data, tmp_path, sql, [("by_region", "table")], language="sql")
    assert o.ok and o.report is not None
    (out,) = o.report.outputs
    assert (out.status, out.made_by, out.file) == ("review", "helper", "by_region.csv")
    assert "no count_column is declared" in out.findings[0].detail
    assert members(o)["by_region.csv"].decode().splitlines() == [
        "region,pupils", "Islands,4", "North,30", "South,20"]


def test_sql_numbers_besides_the_count_are_not_named(weaker: Sandbox, data: Path,
                                                     tmp_path: Path) -> None:
    sql = ("SELECT * FROM (PIVOT (SELECT region, fsm FROM pupils) ON region "
           "USING count(*)) , (SELECT count(*) AS n FROM pupils)")
    o = run(weaker, data, tmp_path, sql, [("by_region", "table")], language="sql",
            count_column="n")
    assert o.ok and o.report is not None
    (out,) = o.report.outputs
    assert out.status == "review"
    said = "\n".join([*o.safe_log, o.report.model_dump_json()])
    assert "numeric column(s)" in said
    assert not any(v in said for v in ("North", "South", "Islands"))


def test_model_with_few_residual_df_needs_review(weaker: Sandbox, tmp_path: Path) -> None:
    small = tmp_path / "small.parquet"
    pq.write_table(pa.table({"score": [3.0, 5, 4, 8, 6, 9, 7, 10],
                             "fsm": [0, 1, 0, 1, 0, 1, 0, 1]}), small)
    code = READ + "job.model('fit', 'score ~ fsm', d)\n"
    o = run(weaker, small, tmp_path, code, [("fit", "model_summary")])
    assert o.ok and o.report is not None
    (out,) = o.report.outputs
    assert out.status == "review"
    assert [f.rule for f in out.findings] == ["residual_df"]
    text = members(o)["fit.txt"].decode()
    assert "residual degrees of freedom: 6" in text and "observations: 8" in text


def test_mock_run_records_nothing_in_the_ledger(weaker: Sandbox, data: Path,
                                                tmp_path: Path) -> None:
    ledger = ReleaseLedger(tmp_path / "releases.sqlite")
    code = READ + "job.table('by_region', d, by='region')\n"
    mocked = run(weaker, data, tmp_path, code, [("by_region", "table")], mock=True,
                 ledger=ledger)
    assert mocked.ok and mocked.report is not None and mocked.report.mock
    assert ledger.earlier(DATASET) == []
    assert mocked.safe_log[-1].startswith("mock run: nothing is released")
    real = run(weaker, data, tmp_path, code, [("by_region", "table")], ledger=ledger)
    assert real.ok
    assert [t.name for t in ledger.earlier(DATASET)] == ["by_region"]
    assert "(WEAKER: no bubblewrap)" in real.safe_log[0]


def test_identifier_group_keys_are_withheld_and_quasi_identifiers_judged() -> None:
    from dataclasses import dataclass as _dc

    from ndl.jobs.runner import _group_keys

    @_dc(frozen=True)
    class Col:
        name: str
        sensitivity: str = "none"
        join_key: str | None = None

    cols = (Col("upn", join_key="upn"), Col("postcode", "quasi_identifier"), Col("sen_status"))
    refused, _ = _group_keys(cols, ("sen_status", "upn"))
    assert refused is not None and "identifies people" in refused and "upn" not in refused
    refused, judge = _group_keys(cols, ("postcode", "sen_status"))
    assert refused is None and [f.rule for f in judge] == ["quasi_identifier"]
    assert _group_keys(cols, ("sen_status",)) == (None, [])

"""A granted dataset that arrives as a folder of Parquet part files (what the datasite's Spark
writes for a job: ``JobInput.spark_rows``) reads like a single file, in every reader.

No Spark here: the writer makes part files with pyarrow, as Spark lays them out (part files, a
``_SUCCESS`` marker and ``.crc`` files), and the weaker sandbox runs the job (the strict one
and a real cluster are in tests/integration/test_controlled_spark_jobs.py).
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

LIMITS = Limits(cpu_seconds=60, wall_seconds=60.0, memory_bytes=1024**3)
DATASET = "nhs/ae"
# West and East are under the threshold of 10: both suppressed (each the other's complement);
# North and South are rounded to base 5.
TABLE = pa.table({"region": ["North"] * 23 + ["South"] * 12 + ["West"] * 2 + ["East"] * 3})


def write_parts(folder: Path) -> None:
    folder.mkdir(parents=True)
    pq.write_table(TABLE.slice(0, 20), folder / "part-00000.snappy.parquet")
    pq.write_table(TABLE.slice(20), folder / "part-00001.snappy.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-00000.snappy.parquet.crc").write_bytes(b"not parquet")


@pytest.fixture(scope="module")
def weaker() -> Sandbox:
    return open_sandbox("weaker")


def run(weaker: Sandbox, tmp_path: Path, code: str, *, language: str = "python",
        count_column: str = "", sibling: Path | None = None) -> JobOutcome:
    entry = "analysis.py" if language == "python" else "query.sql"
    extra = f'count_column = "{count_column}"\n' if count_column else ""
    manifest = (f'name = "folders"\nlanguage = "{language}"\nentry = "{entry}"\n'
                f'environment = "python-data"\ndatasets = ["{DATASET}"]\ncontext = "Tests."\n'
                f'\n[[outputs]]\nname = "by_region"\nkind = "table"\ndescription = "x"\n{extra}')
    written: list[Path] = []

    def writer(folder: Path) -> None:
        written.append(folder)
        write_parts(folder)
        if sibling is not None:
            pq.write_table(TABLE, sibling)

    job = JobInput(job_id="folders", bundle=from_files({"ndl-job.toml": manifest, entry: code}),
                   datasets={DATASET: tmp_path / "absent" / "data.parquet"}, project="p",
                   limits=LIMITS, spark_rows={DATASET: writer})
    o = run_job(job, sandbox=weaker, ledger=None, workdir=tmp_path / "work")
    assert written == [tmp_path / "work" / "folders" / "data" / "0"]
    return o


def released(o: JobOutcome) -> dict[str, str]:
    assert o.ok and o.archive is not None, (o.error, o.full_log[-2000:])
    with zipfile.ZipFile(o.archive) as z:
        lines = z.read("by_region.csv").decode().splitlines()
    assert lines[0] == "region,count"
    return dict(line.split(",") for line in lines[1:])


EXPECTED = {"North": "25", "South": "10", "West": "[suppressed]", "East": "[suppressed]"}


def test_arrow_pandas_and_polars_read_the_folder(weaker: Sandbox, tmp_path: Path) -> None:
    code = ("from ndl import job\n"
            "a = job.dataset('ae')\np = job.dataset('ae', as_='pandas')\n"
            "pl = job.dataset('ae', as_='polars')\n"
            "print('rows', a.num_rows, len(p), pl.height)\n"
            "job.table('by_region', pl, by='region')\n")
    o = run(weaker, tmp_path, code)
    assert "rows 40 40 40" in o.full_log
    assert released(o) == EXPECTED


def test_a_sql_job_reads_the_folder_and_nothing_beside_it(weaker: Sandbox,
                                                          tmp_path: Path) -> None:
    o = run(weaker, tmp_path, "SELECT region, count(*) AS n FROM ae GROUP BY ALL",
            language="sql", count_column="n")
    assert released(o) == EXPECTED
    # A file beside the granted folder (and the folder's parent) is refused by DuckDB.
    sibling = tmp_path / "work" / "folders" / "data" / "sibling.parquet"
    for target in (sibling, sibling.parent / "0" / ".." / "sibling.parquet"):
        o = run(weaker, tmp_path, f"SELECT region, count(*) AS n FROM read_parquet('{target}') "
                "GROUP BY ALL", language="sql", count_column="n", sibling=sibling)
        assert not o.ok and "Permission" in o.full_log, o.full_log[-1500:]


def test_evidence_larger_than_the_folders_rows_is_withheld(weaker: Sandbox,
                                                            tmp_path: Path) -> None:
    # The row limit counts the part files' rows (40): 41 rows of evidence cannot be real.
    code = ("import pandas as pd\nfrom ndl import job\n"
            "job.table('by_region', pd.DataFrame({'region': ['North'] * 41}), by='region')\n")
    o = run(weaker, tmp_path, code)
    assert o.ok and o.report is not None
    assert o.report.outputs[0].status == "withheld"


def test_as_spark_needs_the_python_spark_environment(weaker: Sandbox, tmp_path: Path) -> None:
    o = run(weaker, tmp_path, "from ndl import job\njob.dataset('ae', as_='spark')\n")
    assert not o.ok and o.error is not None and "JobError" in o.error
    assert 'needs environment = "python-spark"' in o.full_log

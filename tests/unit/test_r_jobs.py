"""R jobs through run_job in the strict sandbox: checked tables, safe errors, isolation.

Skipped where R (Debian's r-base-core) is not installed, unless NDL_REQUIRE_R=1 (CI sets it)
makes that a failure, as the strict sandbox is required by NDL_REQUIRE_SANDBOX. The bundle and
evidence rules for R (entry, environment, CSV evidence) need no R and always run.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.core.errors import InvalidInput
from ndl.jobs import environments, evidence
from ndl.jobs.bundle import from_files
from ndl.jobs.runner import JobInput, JobOutcome, run_job
from ndl.jobs.sandbox import Limits, Sandbox

LIMITS = Limits(cpu_seconds=30, wall_seconds=30.0, memory_bytes=1024**3)
DATASET = "dfe/pupils"
HIDDEN = "(its message is not shown: it could hold a value from the data"
READ = 'd <- ndl_dataset("pupils")\n'


def manifest(outputs: list[tuple[str, str]], *, language: str = "r", entry: str = "analysis.R",
             environment: str = environments.R_BASE) -> str:
    decls = "".join(f'\n[[outputs]]\nname = "{n}"\nkind = "{k}"\ndescription = "{n}"\n'
                    for n, k in outputs)
    return (f'name = "unit-r"\nlanguage = "{language}"\nentry = "{entry}"\n'
            f'environment = "{environment}"\ndatasets = ["{DATASET}"]\ncontext = "Tests."\n'
            + decls)


@pytest.fixture(scope="module")
def r_sandbox(sandbox_strict: Sandbox) -> Sandbox:
    """The strict sandbox, once R is known to be offered here (else skip, or fail in CI)."""
    if environments.R_BASE not in environments.offered():
        if os.environ.get("NDL_REQUIRE_R", "").lower() in ("1", "true", "yes"):
            pytest.fail("NDL_REQUIRE_R is set but Rscript is not installed "
                        "(apt-get install r-base-core)")
        pytest.skip("R is not installed (apt-get install r-base-core)")
    return sandbox_strict


@pytest.fixture
def data(tmp_path: Path) -> pd.DataFrame:
    frame = pd.DataFrame({
        "region": ["North"] * 30 + ["South"] * 20 + ["Islands"] * 4,
        "score": [40 + (i * 7) % 31 for i in range(54)],
        "fsm": [i % 2 for i in range(54)],
    })
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "p.parquet")
    return frame


def run(sandbox: Sandbox, tmp_path: Path, code: str, outputs: list[tuple[str, str]], *,
        mock: bool = False, extra: dict[str, str] | None = None) -> JobOutcome:
    bundle = from_files({"ndl-job.toml": manifest(outputs), "analysis.R": code,
                         **(extra or {})})
    job = JobInput(job_id="job-r", bundle=bundle, datasets={DATASET: tmp_path / "p.parquet"},
                   project="p1", mock=mock, limits=LIMITS)
    return run_job(job, sandbox=sandbox, ledger=None, workdir=tmp_path / "work")


def members(o: JobOutcome) -> dict[str, bytes]:
    assert o.archive is not None
    with zipfile.ZipFile(o.archive) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_small_cell_is_suppressed_and_the_release_is_the_recomputation(
        r_sandbox: Sandbox, tmp_path: Path, data: pd.DataFrame) -> None:
    code = READ + (
        'ndl_table("by_region", d, by = "region")\n'
        'm <- ndl_table("mean_score", d, by = "region", value = "score", agg = "mean")\n'
        'stopifnot(nrow(m) == 3)\n'
        # The job's own file under the output's name, with made-up numbers: never released.
        'write.csv(data.frame(region = "North", count = 999), "by_region.csv", '
        'row.names = FALSE)\n')
    o = run(r_sandbox, tmp_path, code, [("by_region", "table"), ("mean_score", "table")])
    assert o.ok, o.error
    files = members(o)
    released = pd.read_csv(io.BytesIO(files["by_region.csv"]), dtype=str)
    by_region = dict(zip(released["region"], released["count"], strict=True))
    counts = data["region"].value_counts()
    assert counts["Islands"] < 10  # the policy's threshold: the cell must go
    assert by_region["Islands"] == "[suppressed]"
    assert by_region["North"] == str(counts["North"]) != "999"
    means = pd.read_csv(io.BytesIO(files["mean_score.csv"]), dtype=str)
    north = float(means.set_index("region").loc["North", "mean_score"])
    assert north == pytest.approx(data[data.region == "North"].score.mean(), abs=1e-3)
    assert means.set_index("region").loc["Islands", "mean_score"] == "[suppressed]"
    report = json.loads(files["report.json"])
    table = {r["name"]: r for r in report["outputs"]}["by_region"]
    assert table["made_by"] == "helper" and table["suppressed"] >= 1
    assert report["environment"] == environments.R_BASE
    assert report["undeclared"] == 0  # by_region.csv is the declared name: replaced, not kept


def test_syntax_error_names_file_and_line(r_sandbox: Sandbox, tmp_path: Path,
                                          data: pd.DataFrame) -> None:
    o = run(r_sandbox, tmp_path, READ + "x <- (1 +\ny y\n", [("by_region", "table")])
    assert not o.ok and o.error is not None
    assert o.error.startswith("the job failed with SyntaxError at analysis.R line 3: y y")
    helper = run(r_sandbox, tmp_path, READ + 'source("helpers.R")\n', [("by_region", "table")],
                 extra={"helpers.R": "f <- function( {\n"})
    assert helper.error is not None
    assert helper.error.startswith("the job failed with SyntaxError at helpers.R line ")


def test_runtime_error_message_is_not_shown(r_sandbox: Sandbox, tmp_path: Path,
                                            data: pd.DataFrame) -> None:
    code = READ + 'n <- 1\nstop(paste("no score for", d$region[[1]]))\n'
    o = run(r_sandbox, tmp_path, code, [("by_region", "table")])
    value = data["region"][0]
    assert not o.ok and o.error is not None and value not in o.error
    assert o.error.startswith("the job failed with simpleError at analysis.R line 3: "
                              'stop(paste("no score for", d$region[[1]]))')
    assert HIDDEN in o.error and value not in "\n".join(o.safe_log)
    assert f"no score for {value}" in o.full_log  # for the output checker only
    mocked = run(r_sandbox, tmp_path, code, [("by_region", "table")], mock=True)
    assert mocked.error is not None and f"(no score for {value})" in mocked.error


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on this host that accepts connections (outside the sandbox)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_cannot_read_etc_passwd_or_open_a_socket(r_sandbox: Sandbox, tmp_path: Path,
                                                 data: pd.DataFrame, listener: int) -> None:
    assert Path("/etc/passwd").is_file()
    with socket.create_connection(("127.0.0.1", listener), timeout=2):
        pass  # reachable from here, so a refusal inside is the sandbox's doing
    code = READ + (
        'try_it <- function(f) tryCatch({ f(); "ALLOWED" }, error = function(e) "refused",\n'
        '                               warning = function(w) "refused")\n'
        'passwd <- try_it(function() readLines("/etc/passwd"))\n'
        f'net <- try_it(function() close(socketConnection("127.0.0.1", port = {listener},\n'
        '  open = "r+", blocking = TRUE, timeout = 2)))\n'
        'ndl_text("notes", paste0("passwd=", passwd, " socket=", net))\n')
    o = run(r_sandbox, tmp_path, code, [("notes", "text")])
    assert o.ok, o.error
    assert members(o)["notes.txt"].decode() == "passwd=refused socket=refused"


def test_undeclared_output_is_refused(r_sandbox: Sandbox, tmp_path: Path,
                                      data: pd.DataFrame) -> None:
    code = READ + 'ndl_table("nope", d, by = "region")\n'
    o = run(r_sandbox, tmp_path, code, [("by_region", "table")])
    assert o.error is not None and o.error.startswith(
        'the job failed with JobError at analysis.R line 2: ndl_table("nope"')
    mocked = run(r_sandbox, tmp_path, code, [("by_region", "table")], mock=True)
    assert mocked.error is not None
    assert "output 'nope' is not declared: add it to ndl-job.toml" in mocked.error
    figure = run(r_sandbox, tmp_path, READ + 'ndl_figure("by_region")\n',
                 [("by_region", "figure")], mock=True)
    assert figure.error is not None and "figures are not offered for R jobs yet" in figure.error


# The rules below need no R.

def test_an_r_bundle_names_an_R_entry_and_an_r_environment() -> None:
    with pytest.raises(InvalidInput) as wrong_entry:
        from_files({"ndl-job.toml": manifest([("t", "table")], entry="analysis.py"),
                    "analysis.py": "x = 1\n"})
    assert wrong_entry.value.message == ("an R job's entry is a .R file, not 'analysis.py'")
    bundle = from_files({"ndl-job.toml": manifest([("t", "table")],
                                                  environment=environments.PYTHON_DATA),
                         "analysis.R": "x <- 1\n"})
    with pytest.raises(InvalidInput) as wrong_env:
        environments.require(bundle.manifest.environment, bundle.manifest.language)
    assert wrong_env.value.message == (f"environment {environments.PYTHON_DATA!r} runs python "
                                       "and sql, not r")


def _evidence_folder(root: Path) -> Path:
    src = root / "in"
    (src / ".ndl" / "evidence").mkdir(parents=True)
    (src / ".ndl" / "evidence" / "t.csv").write_text('"region"\n"North"\n"North"\n"01"\n')
    (src / ".ndl" / "records.jsonl").write_text(json.dumps(
        {"name": "t", "kind": "table", "by": ["region"], "value": None, "agg": "count",
         "evidence": ".ndl/evidence/t.csv"}) + "\n")
    return src


@pytest.mark.parametrize("language", ["python", "r"])
def test_csv_evidence_is_read_for_r_jobs_only(tmp_path: Path, language: str) -> None:
    src = _evidence_folder(tmp_path)
    answer = evidence.collect({"in": str(src), "out": str(tmp_path / "stats"),
                               "outputs": {"t": "table"}, "language": language,
                               "max_rows": 100, "count_columns": {}})
    item = answer["outputs"]["t"]
    if language == "python":
        assert item["problem"] == "output 't' has no evidence where ndl's helpers write it"
    else:
        cells = {tuple(c["key"]): c["n"] for c in item["table"]["cells"]}
        assert cells == {("01",): 1, ("North",): 2}  # keys kept as text: "01" is not 1

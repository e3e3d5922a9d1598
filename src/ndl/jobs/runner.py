"""Run one job bundle: the same runner at the datasite and for ``ndl run --mock``.

1. The job's code runs in the sandbox (:mod:`.inside`) with the granted datasets read-only and
   one private output folder.
2. A second sandboxed step runs ndl's code alone (:mod:`.evidence`): it recomputes every table
   and refits every model from the rows each :mod:`ndl.job` helper was given.
3. Here, the shared disclosure checks (:mod:`ndl.privacy.sdc`) judge the recomputed cells
   against the datasite's policy and the release ledger; suppression comes first and rounding
   after it; the released files are written by this module, never copied from the job.
4. Everything for the output checker goes into one ZIP (outputs, ``report.json``, the job's
   raw log for human review), with fixed timestamps so no file metadata leaves.

What the researcher sees before an output checker has released anything is the *safe log*:
ndl's own lines, and for a failure its kind and the line of their own code, never a message
the job printed or raised (it could hold a value read from the data). A mock run shows the
full log too: its data is synthetic.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ndl.core import tiers
from ndl.core.csvsafe import csv_text
from ndl.jobs import environments, r_jobs
from ndl.jobs.bundle import Bundle
from ndl.jobs.report import Finding, JobReport, OutputReport
from ndl.jobs.sandbox import Limits, Mount, Sandbox, SandboxResult, SandboxSpec, runtime_mounts
from ndl.privacy import sdc
from ndl.privacy.sdc_ledger import ReleaseLedger

if TYPE_CHECKING:
    from ndl.jobs.warm import WarmPool

Report = Callable[[float, str], None]
MAX_STATS_BYTES = 32 * 1024 * 1024
MAX_LOG_BYTES = 256 * 1024
ZIP_TIME = (2020, 1, 1, 0, 0, 0)
# Where the exception classes a job may honestly meet are defined: the builtins and the
# environment's libraries. Only their names are repeated to the researcher (see _known_kind).
_EXC_MODULES = ("builtins", "pandas.errors", "polars.exceptions", "duckdb", "pyarrow",
                "patsy", "statsmodels.tools.sm_exceptions")
SUPPRESSED = "[suppressed]"
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # a folder name, never a path
STOP_WORDS = {
    "wall_time": "it ran past its time limit ({wall:g} s)",
    "cpu_time": "it used more than its CPU time ({cpu} s)",
    "memory": "it used more memory than its limit ({mem} MiB)",
    "output_size": "it wrote more than its output limit ({out} MiB)",
    "cancelled": "it was cancelled",
}


@dataclass(frozen=True)
class JobInput:
    job_id: str
    bundle: Bundle
    datasets: dict[str, Path]        # dataset id → its Parquet file
    project: str
    policy: sdc.SdcPolicy = field(default_factory=sdc.SdcPolicy)
    mock: bool = False
    limits: Limits = field(default_factory=Limits)
    # The granted datasets' columns (with their sensitivity tags): an identifier is never a
    # group key of a released table, whatever the job does (core.tiers).
    columns: tuple[tiers.ColumnLike, ...] = ()
    # Datasets whose rows Spark reads where they live: dataset id → writes its granted rows as
    # Parquet part files into the (new) folder given, inside this run's folder; that folder
    # replaces the id's entry in ``datasets`` (spark_jobs.write_rows).
    spark_rows: dict[str, Callable[[Path], None]] = field(default_factory=dict)


@dataclass(frozen=True)
class JobOutcome:
    ok: bool
    error: str | None                # researcher-safe
    archive: Path | None             # the ZIP for output checking
    report: JobReport | None
    safe_log: list[str]
    full_log: str                    # the job's own output: shown only for mock runs


SANDBOX_TMP = "/tmp"  # noqa: S108 - inside bubblewrap: the run's own private tmpfs


def step_env(tmp: str) -> dict[str, str]:
    """The fixed environment of every step (a warm sandbox starts with it): nothing of the
    datasite's."""
    return {"HOME": tmp, "TMPDIR": tmp,
            "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": tmp, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "POLARS_MAX_THREADS": "2", "PYTHONDONTWRITEBYTECODE": "1"}


def _env(config_var: str, cfg: dict[str, Any], tmp: str) -> dict[str, str]:
    """The whole environment of a step: its configuration and the fixed variables."""
    return {config_var: json.dumps(cfg), **step_env(tmp)}


def _run_step(sandbox: Sandbox, warm: WarmPool | None, spec: SandboxSpec,
              cancel: threading.Event | None) -> SandboxResult:
    """Run one step in a warm sandbox when one can take it, else in a fresh one."""
    result = warm.run(spec, cancel=cancel) if warm is not None else None
    return result if result is not None else sandbox.run(spec, cancel=cancel)


def _stopped(res: SandboxResult, limits: Limits) -> str:
    return STOP_WORDS.get(str(res.stopped), "it was stopped").format(
        wall=limits.wall_seconds, cpu=limits.cpu_seconds, mem=limits.memory_bytes // 2**20,
        out=limits.output_bytes // 2**20)


def _safe_error(out: Path, bundle: Bundle, *, mock: bool) -> str:
    """The researcher's words for a failure, from the job-written error.json, trusting only
    what can be checked against the bundle (the file, the line, the code on it)."""
    raw: dict[str, Any] = {}
    path = out / ".ndl" / "error.json"
    # The job owns out/: neither the folder nor the file may be a link out of it.
    if not path.parent.is_symlink() and path.is_file() and not path.is_symlink() \
            and path.stat().st_size < 8192:
        try:
            loaded = json.loads(path.read_text("utf-8"))
            raw = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            raw = {}
    kind = raw.get("type")
    kind = kind if isinstance(kind, str) and _known_kind(kind) else "an error"
    where = ""
    file, line = raw.get("file"), raw.get("line")
    if isinstance(file, str) and file in bundle.files and isinstance(line, int) \
            and not isinstance(line, bool):
        lines = bundle.files[file].splitlines()
        if 1 <= line <= len(lines):
            where = f" at {file} line {line}: {lines[line - 1].strip()[:160]}"
    text = f"the job failed with {kind}{where}"
    message = raw.get("message")
    if mock and isinstance(message, str):
        return f"{text} ({message[:400]})"  # mock data: the message may be shown
    if kind == "JobError":
        return text + " (ndl.job was used wrongly; run it with --mock to see the message)"
    return text + (" (its message is not shown: it could hold a value from the data; "
                   "run it with --mock to see it)")


@cache
def _known_kinds() -> frozenset[str]:
    names = {"JobError", *r_jobs.R_CONDITIONS}
    for module in _EXC_MODULES:
        try:
            found = vars(importlib.import_module(module))
        except ImportError:  # pragma: no cover - all are dependencies
            continue
        names.update(n for n, v in found.items()
                     if isinstance(v, type) and issubclass(v, BaseException))
    return frozenset(names)


def _known_kind(kind: str) -> bool:
    """True for the name of an exception class ndl or the environment defines.

    The job writes error.json and can define classes, so a class named after a value read
    from the data (``type(surname + "Error", (Exception,), {})``) would otherwise carry it.
    """
    return kind in _known_kinds()


class _Stats:
    """Strict reading of stats.json (written in a sandbox: every field is checked)."""

    @staticmethod
    def table(name: str, datasets: str, raw: Any) -> sdc.TableStats:
        if not isinstance(raw, dict) or raw.get("statistic") not in ("count", "sum", "mean"):
            raise ValueError("bad table")
        dims = raw.get("dimensions")
        if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims):
            raise ValueError("bad dimensions")
        cells = []
        for c in raw.get("cells", []):
            key = c.get("key")
            if not isinstance(key, list) or len(key) != len(dims) \
                    or not all(isinstance(k, str) for k in key):
                raise ValueError("bad key")
            n = c.get("n")
            if not isinstance(n, int) or isinstance(n, bool):
                raise ValueError("bad n")
            value = c.get("value")
            top = tuple(float(t) for t in c.get("top", ()))
            total = c.get("total")
            cells.append(sdc.CellStats(
                key=tuple(key), n=n, value=float("nan") if value is None else float(value),
                total=None if total is None else float(total), top=top))
        return sdc.TableStats(name=name, dataset=datasets, dimensions=tuple(dims),
                              statistic=raw["statistic"], cells=tuple(cells))


def _findings(check: sdc.TableCheck) -> list[Finding]:
    # The researcher's wording of each finding (sdc's): "zero" reads as "threshold", since
    # naming it would tell that a group is empty.
    return [Finding(cell=f["cell"], rule=str(f["rule"]), action=f["action"],
                    detail=str(f["researcher_detail"]))
            for f in check.to_json(audience="researcher")["findings"]]


def _table_csv(table: sdc.TableStats, check: sdc.TableCheck, stat_name: str) -> str:
    rows = []
    for cell in table.cells:
        v = check.released.get(cell.key)
        rows.append([*cell.key, SUPPRESSED if v is None else
                     (int(v) if float(v).is_integer() else v)])
    return csv_text([*table.dimensions, stat_name], rows)


def run_job(job: JobInput, *, sandbox: Sandbox, ledger: ReleaseLedger | None, workdir: Path,
            cancel: threading.Event | None = None,
            report: Report = lambda f, m: None, warm: WarmPool | None = None) -> JobOutcome:
    """Run ``job`` to an outcome; never raises for anything the job does. ``warm``: the
    datasite's warm sandboxes, used for each step that one can take (never for mock runs)."""
    m = job.bundle.manifest
    env = environments.require(m.environment, m.language)
    log = [f"job {job.job_id}: code {job.bundle.code_sha256[:12]}, environment {env.name}, "
           f"sandbox {sandbox.mode}" + (" (WEAKER: no bubblewrap)" if sandbox.mode != "bubblewrap"
                                        else "")]
    if not JOB_ID.match(job.job_id):
        raise ValueError(f"not a job id: {job.job_id[:60]!r}")  # ours, never a researcher's
    root = workdir / job.job_id
    shutil.rmtree(root, ignore_errors=True)  # a re-run after a restart starts clean
    code, out, stats, release = (root / "code", root / "out", root / "stats", root / "release")
    for d in (code, out, stats, release):
        d.mkdir(parents=True)
    # The weaker mode has no private /tmp: it gets a folder of this run's instead.
    tmp = SANDBOX_TMP
    if sandbox.mode != "bubblewrap":
        tmp = str(root / "tmp")
        (root / "tmp").mkdir()
    for rel, text in job.bundle.files.items():
        (code / rel).parent.mkdir(parents=True, exist_ok=True)
        (code / rel).write_text(text, encoding="utf-8")
    code_mount = Mount(code, "/job/code")
    mounts = [*runtime_mounts(), code_mount]
    data_paths: dict[str, str] = {}
    r_classes: dict[str, tuple[str, ...]] = {}
    granted = dict(job.datasets)
    for i, ds_id in enumerate(sorted(job.spark_rows)):
        granted[ds_id] = root / "data" / str(i)
        report(0.02, "having Spark write the granted rows for the job")
        try:
            job.spark_rows[ds_id](granted[ds_id])
        except BaseException:
            shutil.rmtree(root / "data", ignore_errors=True)
            raise
    for i, (ds_id, path) in enumerate(sorted(granted.items())):
        mount = Mount(Path(path), f"/job/data/{i}.parquet")
        if m.language == "r":  # R has no Parquet reader here: it reads a CSV copy (r_jobs)
            mount, r_classes[ds_id] = r_jobs.data_mount(i, Path(path), root / "csv")
        mounts.append(mount)
        data_paths[ds_id] = sandbox.inside_path(mount)
    out_mount = Mount(out, "/job/out", writable=True)
    cfg: dict[str, Any] = {
        "language": m.language, "entry": m.entry, "code": sandbox.inside_path(code_mount),
        "out": sandbox.inside_path(out_mount), "datasets": data_paths,
        "outputs": {o.name: o.kind for o in m.outputs}, "mock": job.mock}
    first_limits, spark = job.limits, env.name == environments.PYTHON_SPARK
    if spark:  # what the JVM needs (spark_jobs): not a warm sandbox's settings
        from ndl.jobs import spark_jobs

        needs = spark_jobs.sandbox_needs(root, job.limits)
        mounts += needs.mounts
        first_limits, cfg["spark_memory"] = needs.limits, spark_jobs.driver_memory(job.limits)
    report(0.05, "running the job's code in the sandbox")
    log.append(f"running {m.entry} on {', '.join(sorted(job.datasets))}"
               + (" (mock data)" if job.mock else ""))
    first_argv = [sys.executable, "-I", "-m", "ndl.jobs.inside"]
    first_env = _env("NDL_JOB", cfg, tmp)
    if spark:
        first_env.update(needs.env)
    if m.language == "r":
        first_argv, first_env, r_mounts = r_jobs.first_step(cfg, r_classes, first_env)
        mounts += r_mounts
    started = time.monotonic()
    first = _run_step(sandbox, None if spark or job.spark_rows else warm, SandboxSpec(
        argv=first_argv, mounts=[*mounts, out_mount],
        workdir=cfg["out"], env=first_env, limits=first_limits, inet=spark), cancel)
    shutil.rmtree(root / "csv", ignore_errors=True)  # an R job's copies of the data
    # Evidence with more rows than the granted data holds cannot have come from it; counted
    # now, since the copy Spark wrote of the granted rows goes with the step that read it.
    max_rows = _rows(granted) if first.returncode == 0 and first.stopped is None else 0
    shutil.rmtree(root / "data", ignore_errors=True)
    full_log = (first.stdout + first.stderr)[:MAX_LOG_BYTES].decode("utf-8", "replace")
    if first.stopped is not None:
        error = f"the job was stopped: {_stopped(first, job.limits)}"
        return JobOutcome(False, error, None, None, [*log, error], full_log)
    if first.returncode != 0:
        error = _safe_error(out, job.bundle, mock=job.mock)
        return JobOutcome(False, error, None, None, [*log, error], full_log)
    log.append(f"the job finished in {time.monotonic() - started:.1f} s")

    report(0.6, "recomputing the outputs from their evidence")
    in_mount, stats_mount = Mount(out, "/job/in"), Mount(stats, "/job/stats", writable=True)
    count_columns = {o.name: o.count_column for o in m.outputs if o.count_column}
    ev_cfg: dict[str, Any] = {
        "in": sandbox.inside_path(in_mount), "out": sandbox.inside_path(stats_mount),
        "language": m.language, "outputs": cfg["outputs"], "max_rows": max_rows,
        "count_columns": count_columns}
    second = _run_step(sandbox, warm, SandboxSpec(
        argv=[sys.executable, "-I", "-m", "ndl.jobs.evidence"],
        mounts=[*runtime_mounts(), in_mount, stats_mount], workdir=ev_cfg["out"],
        env=_env("NDL_EVIDENCE", ev_cfg, tmp), limits=job.limits), cancel)
    stats_file = stats / "stats.json"
    if second.stopped == "cancelled":
        return JobOutcome(False, "the job was cancelled", None, None, log, full_log)
    if second.returncode != 0 or not stats_file.is_file() or stats_file.is_symlink() \
            or stats_file.stat().st_size > MAX_STATS_BYTES:
        error = ("the outputs could not be recomputed from their evidence "
                 f"({_stopped(second, job.limits) if second.stopped else 'the check failed'})")
        return JobOutcome(False, error, None, None, [*log, error], full_log)
    answer = json.loads(stats_file.read_text("utf-8"))
    report(0.85, "checking the outputs for disclosure")
    rep = _check(job, answer, stats / "files", release, ledger, sandbox.mode)
    for o in rep.outputs:
        log.append(f"output {o.name}: {o.summary}")
    if rep.undeclared:
        log.append("files written that are not declared outputs were left out (neither "
                   "their names nor their number are shown: either could carry data)")
    log.append("the outputs wait for an output checker" if not job.mock else
               "mock run: nothing is released; at the datasite an output checker would judge "
               "these outputs")
    rep = rep.model_copy(update={"safe_log": log})
    (release / "log.txt").write_text(full_log or "(the job printed nothing)\n", "utf-8")
    (release / "report.json").write_text(rep.model_dump_json(indent=2), "utf-8")
    archive = root / "outputs.zip"
    _zip(release, archive)
    report(0.95, "outputs ready for output checking")
    return JobOutcome(True, None, archive, rep, log, full_log)


def _check(job: JobInput, answer: dict[str, Any], files: Path, release: Path,
           ledger: ReleaseLedger | None, mode: str) -> JobReport:
    m = job.bundle.manifest
    key = ",".join(sorted(job.datasets))
    outputs: list[OutputReport] = []
    raw_outputs = answer.get("outputs", {}) if isinstance(answer, dict) else {}
    for decl in m.outputs:
        item = raw_outputs.get(decl.name) if isinstance(raw_outputs, dict) else None
        item = item if isinstance(item, dict) else {"problem": "no answer for this output"}
        made_by: Literal["helper", "job"] = "helper" if item.get("made_by") == "helper" \
            else "job"
        if isinstance(item.get("problem"), str):
            outputs.append(OutputReport(name=decl.name, kind=decl.kind, file=None,
                                        made_by=made_by, status="withheld",
                                        description=decl.description,
                                        problem=str(item["problem"])[:500]))
            continue
        if decl.kind == "table" and "table" in item:
            try:
                table = _Stats.table(decl.name, key, item["table"])
            except (ValueError, TypeError, AttributeError):
                outputs.append(OutputReport(name=decl.name, kind=decl.kind, file=None,
                                            made_by=made_by, status="withheld",
                                            description=decl.description,
                                            problem="its recomputed cells could not be read"))
                continue
            refused, keys_to_judge = _group_keys(job.columns, table.dimensions)
            if refused:
                outputs.append(OutputReport(name=decl.name, kind=decl.kind, file=None,
                                            made_by=made_by, status="withheld",
                                            description=decl.description, problem=refused))
                continue
            earlier = ledger.earlier(key) if ledger is not None else []
            check = sdc.check_table(table, job.policy, earlier)
            stat = table.statistic if table.statistic == "count" else \
                f"{table.statistic}_{_value_name(item['table'])}"
            (release / decl.filename).write_text(_table_csv(table, check, stat), "utf-8")
            if ledger is not None and not job.mock:
                ledger.record(table, job_id=job.job_id, project=job.project)
            outputs.append(OutputReport(
                name=decl.name, kind=decl.kind, file=decl.filename, made_by=made_by,
                status="review" if check.needs_review or keys_to_judge else "checked",
                description=decl.description, findings=_findings(check) + keys_to_judge,
                suppressed=check.suppressed, cells=len(table.cells)))
        elif decl.kind == "model_summary" and "residual_df" in item:
            check = sdc.check_model(decl.name, int(item["residual_df"]), int(item["nobs"]),
                                    job.policy)
            shutil.copyfile(files / f"{decl.name}.txt", release / decl.filename)
            outputs.append(OutputReport(
                name=decl.name, kind=decl.kind, file=decl.filename, made_by=made_by,
                status="review" if check.needs_review else "checked",
                description=decl.description, findings=_findings(check)))
        else:
            src = files / str(item.get("file", ""))
            if not item.get("file") or not src.is_file():
                outputs.append(OutputReport(name=decl.name, kind=decl.kind, file=None,
                                            made_by=made_by, status="withheld",
                                            description=decl.description,
                                            problem="the output was not produced"))
                continue
            shutil.copyfile(src, release / decl.filename)
            why = ("not made through the ndl.job helpers, so not checked automatically"
                   if made_by == "job" else str(item["review"])[:300]
                   if isinstance(item.get("review"), str)
                   else f"a {decl.kind.replace('_', ' ')} is judged by an output checker")
            outputs.append(OutputReport(
                name=decl.name, kind=decl.kind, file=decl.filename, made_by=made_by,
                status="review", description=decl.description,
                findings=[Finding(cell=None, rule="human_review", action="review",
                                  detail=why)]))
    problems = [str(p.get("message"))[:300] for p in answer.get("problems", [])
                if isinstance(p, dict)]
    # Said as 0 or 1 ("some"): the job chooses how many files it writes, so an exact number
    # would be a count of its choosing, released before any check.
    undeclared = answer.get("undeclared", 0)
    undeclared = 1 if isinstance(undeclared, int) and undeclared > 0 else 0
    return JobReport(job_id=job.job_id, code_sha256=job.bundle.code_sha256,
                     environment=m.environment, sandbox=mode, policy=job.policy.to_json(),
                     datasets=sorted(job.datasets), outputs=outputs, problems=problems,
                     undeclared=undeclared,
                     context=m.context, mock=job.mock)


def _group_keys(columns: tuple[tiers.ColumnLike, ...],
                dims: tuple[str, ...]) -> tuple[str | None, list[Finding]]:
    """A table grouped by an identifier is withheld; by a quasi-identifier, judged by a
    person (the tier rules: identifiers are never group keys outside open data)."""
    by_name = {c.name: c for c in columns}
    judge: list[Finding] = []
    for dim in dims:
        col = by_name.get(dim)
        if col is None:
            continue
        if tiers.is_identifier(col):
            return (f"it is grouped by a column that identifies people ({len(dims)} group "
                    "keys checked): identifiers are never group keys of controlled outputs"), []
        if tiers.is_quasi_identifier(col):
            judge.append(Finding(cell=None, rule="quasi_identifier", action="review",
                                 detail=f"grouped by the quasi-identifier {dim!r}: an output "
                                        "checker judges whether its groups are safe"))
    return None, judge


def _rows(datasets: dict[str, Path]) -> int:
    """The granted datasets' rows, from the Parquet footers. (pyarrow imported here: the CLI
    imports this module, and its other commands need no pyarrow.)"""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for p in datasets.values()
               for f in _parquet_files(Path(p)))


def _parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or a folder's part files (Spark's: its _SUCCESS and .crc files are not
    data)."""
    if not path.is_dir():
        return [path]
    return sorted(f for f in path.rglob("*.parquet") if not f.name.startswith(("_", ".")))


def _value_name(raw: dict[str, Any]) -> str:
    name = raw.get("value_column")
    return name if isinstance(name, str) and re.match(r"^[\w ]{1,63}$", name) else "value"


def _zip(folder: Path, archive: Path) -> None:
    tmp = archive.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.iterdir()):
            info = zipfile.ZipInfo(path.name, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
    tmp.replace(archive)

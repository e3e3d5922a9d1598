"""Controlled jobs from the terminal: ``ndl run --mock``, ``ndl submit`` and ``ndl job ...``.

A researcher starts from ``ndl job init``, develops against mock data with ``ndl run BUNDLE
--mock`` (the datasite's own runner, sandbox and disclosure checks, on synthetic or local
rows), then ``ndl submit``\\ s the bundle; stewards and output checkers work through ``ndl job
queue``, ``review`` and ``check``. Every hub step is the SDK's (:class:`ndl.Client`), so the
terminal and Python behave alike; a failed job exits with :class:`~ndl.JobFailed`'s code (9).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ndl.cli import config
from ndl.cli.app import app, console, environ, err_console, handle_errors
from ndl.cli.client_cmds import HubOpt, JsonOpt, TokenOpt, _client
from ndl.cli.words import moment, plural
from ndl.client import Client, JobView
from ndl.core.errors import InvalidInput, JobFailed, PermissionDenied
from ndl.hubclient import extract_outputs
from ndl.jobs import example
from ndl.jobs.bundle import MANIFEST
from ndl.jobs.report import JobReport
from ndl.jobs.runner import JobOutcome

job_app = typer.Typer(
    help="Controlled jobs: follow, cancel and fetch yours; review code and check outputs.",
    no_args_is_help=True)
app.add_typer(job_app, name="job")

INTERRUPTED = 130
JobId = Annotated[str, typer.Argument(
    help="The job's id (job-...), as 'ndl submit' or 'ndl job list' printed it.")]
BundleArg = Annotated[Path, typer.Argument(
    help=f"The bundle: a folder holding {MANIFEST} and the code it names.")]
NoProgressOpt = Annotated[bool, typer.Option(
    "--no-progress", help="Print no progress bar (for scripts and logs).")]

def _say(text: str) -> None:
    err_console.print(escape(text), highlight=False)


def _print(text: str) -> None:
    console.print(text, highlight=False, markup=False)


def next_step(view: JobView) -> str:
    """What happens next to a job, and the command to use, in the researcher's words."""
    jid = view.id
    steps = {
        "awaiting_review": f"a data steward of {view.org} reviews the code; follow it with "
                           f"'ndl job status {jid}'",
        "approved": f"it runs at the datasite; follow it with 'ndl job status {jid}'",
        "queued": f"it runs at the datasite; follow it with 'ndl job status {jid}'",
        "running": f"it is running; follow it with 'ndl job status {jid}'",
        "awaiting_output_check": "an output checker judges the outputs; follow it with "
                                 f"'ndl job status {jid}'",
        "released": f"download the outputs with 'ndl job outputs {jid}'",
        "returned": f"read the checker's comments ('ndl job status {jid}'), change the bundle "
                    "and submit it again",
        "rejected": f"read the checker's reasons with 'ndl job status {jid}'",
        "review_rejected": f"read the steward's reasons with 'ndl job status {jid}', change "
                           "the code and submit it again",
        "failed": f"see 'ndl job logs {jid}'; run the bundle with 'ndl run BUNDLE --mock' to "
                  "see the whole error",
        "cancelled": "nothing more happens to it",
    }
    return steps.get(view.state, f"follow it with 'ndl job status {jid}'")


def _interrupted() -> typer.Exit:
    return typer.Exit(INTERRUPTED)


def _dump(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


# -- the report -------------------------------------------------------------------------------

def report_table(report: JobReport) -> Table:
    """Each output with its status, then one line per finding (the cell, the rule, what was
    done), in the researcher-safe words of the disclosure checks."""
    table = Table(title="outputs and disclosure checks")
    for col in ("output", "status", "cell", "finding"):
        table.add_column(col)
    for o in report.outputs:
        detail = o.problem or (f"{o.cells} cells, {o.suppressed} suppressed" if o.cells
                               else o.kind.replace("_", " "))
        table.add_row(escape(o.name), o.status, "", escape(detail))
        for f in o.findings:
            cell = " / ".join(f.cell) if f.cell is not None else "(whole output)"
            table.add_row("", "", escape(cell), escape(f"{f.action} ({f.rule}): {f.detail}"))
    return table


def _show_outcome(outcome: JobOutcome, out: Path | None) -> None:
    console.rule("safe log (what the datasite would show you)")
    for line in outcome.safe_log:
        _print(line)
    console.rule("full log (mock data: the job's own output may be shown)")
    _print(outcome.full_log.rstrip() or "(the job printed nothing)")
    if outcome.report is not None:
        console.print(report_table(outcome.report))
    if out is not None:
        names = sorted(p.name for p in out.iterdir() if p.is_file())
        _print(f"outputs written to {out}: {', '.join(names)}")


def _cache_dir(env: dict[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ndl" / "mock-runs"


@app.command()
@handle_errors
def run(
    ctx: typer.Context, bundle: BundleArg,
    mock: Annotated[bool, typer.Option(
        "--mock", help="Run here, on mock data (required: real data runs only at the "
                       "datasite).")] = False,
    data: Annotated[list[str] | None, typer.Option(
        "--data", help="ID=PATH: a local Parquet or CSV file to use as a dataset's mock "
                       "(repeatable). [default: the hub's mock]")] = None,
    out: Annotated[Path, typer.Option(
        "--out", help="The folder the outputs are unpacked into.")
    ] = Path("ndl-mock-outputs"),
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Run a job bundle here on mock data, exactly as the datasite would.

    The same runner, sandbox (bubblewrap; without it, a weaker mode that is
    announced) and disclosure checks as at the datasite, on the hub's
    synthetic mock of each dataset or on a file given with --data. Prints
    the safe log, the full log (mock data only), each output's checks, and
    unpacks the outputs into --out. A failing job exits with code 9.
    """
    from ndl.jobs.mock_run import parse_data_args, run_mock

    if not mock:
        raise InvalidInput("real data runs only at the datasite: submit the bundle with "
                           f"'ndl submit {bundle} --project P'; to try it here on mock data, "
                           "add --mock")
    env = environ(ctx)
    local = parse_data_args(data or [])
    client: Client | None = None
    if config.token(env, token):  # without a token the hub's mocks are out of reach
        client = _client(ctx, hub, token)
    try:
        outcome = run_mock(bundle, data=local, client=client, workdir=_cache_dir(env),
                           say=_say)
    finally:
        if client is not None:
            client.close()
    folder: Path | None = None
    if outcome.archive is not None:
        folder = out
        if folder.exists():
            for old in folder.iterdir():  # a stale output must not pass for a new one
                if old.is_file() and not old.is_symlink():
                    old.unlink()
        extract_outputs(outcome.archive, folder)
        outcome.archive.unlink(missing_ok=True)
    if as_json:
        _dump({"ok": outcome.ok, "error": outcome.error, "safe_log": outcome.safe_log,
               "full_log": outcome.full_log, "out": str(folder) if folder else None,
               "report": outcome.report.model_dump(mode="json") if outcome.report else None})
    else:
        _show_outcome(outcome, folder)
    if not outcome.ok:
        raise JobFailed(outcome.error or "the job failed")


# -- submitting and following ----------------------------------------------------------------

def _status_line(view: JobView) -> str:
    return f"job {view.id} ({view.name}): {view.state_words}"


@app.command()
@handle_errors
def submit(
    ctx: typer.Context, bundle: BundleArg,
    project: Annotated[str, typer.Option(
        "--project", help="The project whose grant covers the data, e.g. p-1a2b3c4d.")],
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait until a person must act or the job is finished.")] = False,
    no_progress: NoProgressOpt = False,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Submit a job bundle to run on real data at the datasite.

    The bundle is checked here first (a mistake names its file and line, and
    nothing is sent). A data steward then reviews the code, unless the same
    code was approved for the project before. Prints the job id, its state
    and the next step.
    """
    with _client(ctx, hub, token) as c:
        view = c.submit_job(bundle, project=project)
        if not as_json:
            _print(f"submitted {_status_line(view)}")
            _print(f"code SHA-256: {view.code_sha256}")
        if wait:
            try:
                view = c.wait_job(view.id, progress=not no_progress and not as_json)
            except KeyboardInterrupt:
                raise _interrupted() from None
    if as_json:
        _dump(view.model_dump(mode="json"))
    else:
        if wait:
            _print(_status_line(view))
        _print(f"next: {next_step(view)}")
    if view.state == "failed":
        raise JobFailed(f"job {view.id} failed: {view.error or 'no reason was given'}")


def _show(v: JobView) -> None:
    console.print(f"[bold]{escape(v.name)}[/]  (job {v.id})", highlight=False)
    lines = [("state", v.state_words + (f" — {v.progress:.0%} {v.progress_message}"
                                        if v.state == "running" else "")),
             ("project", v.project), ("requester", v.requester),
             ("datasets", ", ".join(v.datasets)), ("code", f"{v.code_sha256} ({v.language}, "
                                                            f"{v.environment})"),
             ("submitted", moment(v.created_at)), ("updated", moment(v.updated_at))]
    if v.auto_approved:
        lines.append(("review", "approved automatically (this code was approved before)"))
    for r in v.code_reviews:
        lines.append(("review", f"{r.decision} by {r.reviewer} {moment(r.at)}"
                      + (f": {r.reasons}" if r.reasons else "")))
    for d in v.output_decisions:
        lines.append(("check", f"{d.decision} by {d.checker} {moment(d.at)}"
                      + (f": {d.comments}" if d.comments else "")))
    if v.sandbox:
        lines.append(("sandbox", v.sandbox))
    if v.error:
        lines.append(("error", v.error))
    lines.append(("next", next_step(v)))
    for key, value in lines:
        console.print(f"  {key + ':':<11}{escape(value)}", highlight=False)
    if v.report is not None:
        console.print(report_table(v.report))


@job_app.command("status")
@handle_errors
def job_status(ctx: typer.Context, job_id: JobId, hub: HubOpt = None, token: TokenOpt = None,
               as_json: JsonOpt = False) -> None:
    """Show a job: its state, reviews, output checks, report and next step."""
    with _client(ctx, hub, token) as c:
        view = c.job(job_id)
    if as_json:
        _dump(view.model_dump(mode="json"))
    else:
        _show(view)


def _job_table(title: str, jobs: list[JobView]) -> Table:
    table = Table(title=title)
    table.add_column("id", no_wrap=True, min_width=20)
    for col in ("name", "project", "requester", "state", "updated"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j.id, escape(j.name), j.project, j.requester, j.state,
                      moment(j.updated_at))
    return table


@job_app.command("list")
@handle_errors
def job_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 100,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List the jobs of your projects, newest first."""
    with _client(ctx, hub, token) as c:
        jobs = c.jobs(limit)
    if as_json:
        _dump([j.model_dump(mode="json") for j in jobs])
    elif not jobs:
        _print("No jobs yet: 'ndl job init DIR' writes a bundle to start from.")
    else:
        console.print(_job_table(plural(len(jobs), "job"), jobs))


@job_app.command("logs")
@handle_errors
def job_logs(ctx: typer.Context, job_id: JobId, hub: HubOpt = None, token: TokenOpt = None,
             as_json: JsonOpt = False) -> None:
    """Print a job's safe log: ndl's own lines, never what the job printed."""
    with _client(ctx, hub, token) as c:
        lines = c.job_logs(job_id)
    if as_json:
        _dump(lines)
    else:
        for line in lines:
            _print(line)


@job_app.command("cancel")
@handle_errors
def job_cancel(ctx: typer.Context, job_id: JobId, hub: HubOpt = None,
               token: TokenOpt = None) -> None:
    """Cancel a job of yours that waits for review or is running."""
    with _client(ctx, hub, token) as c:
        view = c.cancel_job(job_id)
    _print(_status_line(view))


@job_app.command("outputs")
@handle_errors
def job_outputs(
    ctx: typer.Context, job_id: JobId,
    out: Annotated[Path | None, typer.Option(
        "--out", help="The folder to unpack the outputs into. [default: ./JOB-outputs]")
    ] = None,
    no_progress: NoProgressOpt = False, hub: HubOpt = None, token: TokenOpt = None,
) -> None:
    """Download a job's released outputs and unpack them into a folder.

    The ZIP's SHA-256 is checked first; a broken download resumes when run
    again. Output checkers may download outputs they are judging.
    """
    folder = out if out is not None else Path(f"{job_id}-outputs")
    with _client(ctx, hub, token) as c:
        try:
            c.job_outputs(job_id, folder, progress=not no_progress)
        except KeyboardInterrupt:
            raise _interrupted() from None
    names = sorted(p.name for p in folder.iterdir() if p.is_file()
                   and not p.name.startswith("."))
    _print(f"outputs of {job_id} in {folder}: {', '.join(names)}")


def _said(view: JobView, as_json: bool) -> None:
    """A job after an action: as JSON, or its one status line."""
    if as_json:
        _dump(view.model_dump(mode="json"))
    else:
        _print(_status_line(view))


def _one(flags: dict[str, bool], what: str) -> str:
    chosen = [name for name, on in flags.items() if on]
    if len(chosen) != 1:
        raise InvalidInput(f"give exactly one of {', '.join('--' + f for f in flags)} "
                           f"to {what}")
    return chosen[0]


@job_app.command("review")
@handle_errors
def job_review(
    ctx: typer.Context, job_id: JobId,
    approve: Annotated[bool, typer.Option("--approve", help="Approve the code.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the code.")] = False,
    reasons: Annotated[str, typer.Option(
        "--reasons", help="Why (required to reject; shown to the researcher and in the "
                          "register).")] = "",
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """As a data steward, approve or reject a job's code.

    Read it first with 'ndl job diff ID' (against the code approved before)
    or 'ndl job code SHA256'. Approved code runs at the datasite.
    """
    decision = _one({"approve": approve, "reject": reject}, "review the code")
    with _client(ctx, hub, token) as c:
        view = c.review_job(job_id, decision, reasons)
    _said(view, as_json)


@job_app.command("check")
@handle_errors
def job_check(
    ctx: typer.Context, job_id: JobId,
    approve: Annotated[bool, typer.Option("--approve", help="Release the outputs.")] = False,
    return_: Annotated[bool, typer.Option(
        "--return", help="Return them to the researcher with comments.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the outputs.")] = False,
    comments: Annotated[str, typer.Option(
        "--comments", help="What to change, or why (shown to the researcher).")] = "",
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """As an output checker, approve, return or reject a job's outputs.

    Read them first with 'ndl job outputs ID' (the report lists every
    suppressed cell and what needs your judgement).
    """
    decision = _one({"approve": approve, "return": return_, "reject": reject},
                    "decide on the outputs")
    with _client(ctx, hub, token) as c:
        view = c.check_outputs(job_id, decision, comments)
    _said(view, as_json)


@job_app.command("diff")
@handle_errors
def job_diff(ctx: typer.Context, job_id: JobId, hub: HubOpt = None, token: TokenOpt = None,
             as_json: JsonOpt = False) -> None:
    """Show a job's code as a diff against the code last approved for its project."""
    with _client(ctx, hub, token) as c:
        d = c.job_diff(job_id)
    if as_json:
        _dump({"against": d.against, "diff": d.diff})
        return
    _print(f"against approved code {d.against}" if d.against else
           "nothing was approved for this project before: every line is new")
    _print(d.diff.rstrip() or "(no change)")


def _safe_rel(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and "\\" not in path and not pure.is_absolute() \
        and ".." not in pure.parts


@job_app.command("code")
@handle_errors
def job_code(
    ctx: typer.Context,
    sha256: Annotated[str, typer.Argument(help="The code's SHA-256, as 'ndl job status' "
                                               "shows it.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the files into this folder instead of printing them.")] = None,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show (or save) a bundle's files by their hash: public once approved."""
    with _client(ctx, hub, token) as c:
        code = c.job_code(sha256)
    if as_json:
        _dump(code.model_dump(mode="json"))
        return
    if out is None:
        for path, text in sorted(code.files.items()):
            console.rule(escape(path))
            _print(text.rstrip())
        return
    bad = [p for p in code.files if not _safe_rel(p)]
    if bad:
        raise InvalidInput(f"the code holds a file named {bad[0][:100]!r}, which would be "
                           "written outside the folder; nothing was written")
    root = out.resolve()
    for path, text in code.files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    _print(f"wrote {plural(len(code.files), 'file')} into {out}")


@job_app.command("queue")
@handle_errors
def job_queue(
    ctx: typer.Context,
    outputs: Annotated[bool, typer.Option(
        "--outputs", help="The outputs waiting for an output checker (the default for "
                          "output checkers who are not stewards).")] = False,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Jobs waiting for you: code to review (stewards) or outputs to check."""
    with _client(ctx, hub, token) as c:
        roles = set(c.me().get("roles", []))
        if not outputs and "steward" not in roles and "output_checker" in roles:
            outputs = True
        if not outputs and "steward" not in roles:
            raise PermissionDenied("the job queues are for data stewards (code to review) and "
                                   "output checkers (outputs to check); you are neither")
        jobs = c.output_queue() if outputs else c.review_queue()
    if as_json:
        _dump([j.model_dump(mode="json") for j in jobs])
        return
    what = "outputs to check" if outputs else "code to review"
    if not jobs:
        _print(f"nothing waiting: no {what}")
        return
    console.print(_job_table(f"{plural(len(jobs), 'job')}: {what}", jobs))
    verb = "ndl job outputs ID, then ndl job check ID" if outputs else \
        "ndl job diff ID, then ndl job review ID"
    _print(f"next: {verb}")


@job_app.command("environments")
@handle_errors
def job_environments(ctx: typer.Context, hub: HubOpt = None, token: TokenOpt = None,
                     as_json: JsonOpt = False) -> None:
    """List the environments a bundle may name, with their package versions."""
    with _client(ctx, hub, token) as c:
        envs = c.job_environments()
    if as_json:
        _dump(envs)
        return
    for e in envs:
        console.print(f"[bold]{escape(str(e.get('name')))}[/] "
                      f"({', '.join(e.get('languages', []))}): "
                      f"{escape(str(e.get('description', '')))}", highlight=False)
        packages = e.get("packages", {})
        _print("  " + ", ".join(f"{k} {v}" for k, v in packages.items()))


@job_app.command("init")
@handle_errors
def job_init(
    folder: Annotated[Path, typer.Argument(help="The folder to write the bundle into.")],
) -> None:
    """Write an example bundle (ndl-job.toml and analysis.py) to start from.

    It counts pupils by SEN status and free school meals in dfe/pupils; try
    it with 'ndl run DIR --mock', then change it to your own analysis.
    """
    paths = example.write(folder)
    _print(f"wrote {', '.join(str(p) for p in paths)}")
    _print(f"next: ndl run {folder} --mock   (or add --data dfe/pupils=FILE for your own "
           f"mock rows); then ndl submit {folder} --project P")


__all__ = ["next_step", "report_table"]

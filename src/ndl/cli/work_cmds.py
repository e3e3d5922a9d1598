"""Long work from the terminal: ``ndl download`` and ``ndl work list|show|wait|cancel|fetch``.

``ndl download`` queues an export of an open dataset at its datasite, follows it with a Rich
progress bar (the work's fraction and message, then the download's bytes), and saves the file
once its SHA-256 matches. Every step is the SDK's (:class:`ndl.Client`), so the terminal and
Python behave alike. A work item that failed, was cancelled or expired ends the command with
the matching error and exit code; Ctrl-C stops waiting (exit 130) and says how to come back.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ndl.cli.app import app, console, err_console, handle_errors
from ndl.cli.client_cmds import HubOpt, JsonOpt, TokenOpt, _client
from ndl.cli.words import moment, plural
from ndl.client import Client, Work
from ndl.hubclient import outcome_error

work_app = typer.Typer(
    help="Follow long work (exports): list, show, wait for, cancel and fetch work items.",
    no_args_is_help=True)
app.add_typer(work_app, name="work")

INTERRUPTED = 130  # the shell's code for a program stopped by Ctrl-C


class Format(StrEnum):
    parquet = "parquet"
    csv = "csv"


NoProgressOpt = Annotated[bool, typer.Option(
    "--no-progress", help="Print no progress bar (for scripts and logs).")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Where to save the file: a file name, or an existing folder to save it in "
                  "under its own name. [default: the current folder]")]
WorkId = Annotated[str, typer.Argument(
    help="The work item's id, as 'ndl download' or 'ndl work list' printed it.")]


def file_size(n: int) -> str:
    """Bytes as a person reads them: 812 bytes, 4.2 MB, 1.3 GB."""
    if n < 1000:
        return plural(n, "byte")
    for unit, size in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)):
        if n < size * 1000 or unit == "TB":
            return f"{n / size:.1f} {unit}"
    return plural(n, "byte")  # unreachable: TB ends the loop


def _saved(path: Path, view: Work) -> None:
    res = view.result
    assert res is not None  # only a succeeded item is fetched
    rows = "" if res.rows is None else f"{plural(res.rows, 'row')}, "
    console.print(f"saved {escape(str(path))} ({rows}{file_size(res.size)}; "
                  f"SHA-256 {res.sha256})", highlight=False)


def _interrupted() -> typer.Exit:
    # The SDK has said which work item goes on and how to resume or cancel it.
    return typer.Exit(INTERRUPTED)


def _wait_and_fetch(c: Client, view: Work, out: Path | None, progress: bool) -> None:
    try:
        final = c.wait_work(view.id, progress=progress)
        err = outcome_error(final)
        if err is not None:
            raise err
        path = c.fetch_work(final.id, out, progress=progress, view=final)
    except KeyboardInterrupt:
        raise _interrupted() from None
    _saved(path, final)


@app.command()
@handle_errors
def download(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(
        help="An open dataset, e.g. local-authority/ward-population")],
    fmt: Annotated[Format, typer.Option("--format", help="The file's format.")
                   ] = Format.parquet,
    limit: Annotated[int | None, typer.Option(
        min=1, help="Only the first N rows. [default: every row]")] = None,
    out: OutOpt = None, no_progress: NoProgressOpt = False,
    hub: HubOpt = None, token: TokenOpt = None,
) -> None:
    """Download an open dataset whole, as one Parquet or CSV file, any size.

    The export runs at the dataset's datasite as a work item; this follows
    it with a progress bar, downloads the file (a broken download resumes
    when run again) and checks its SHA-256. Open data needs no sign-in.

    Ctrl-C stops waiting, not the work: 'ndl work wait ID' or
    'ndl work fetch ID' picks it up again.
    """
    params: dict[str, object] = {"format": fmt.value}
    if limit is not None:
        params["limit"] = limit
    with _client(ctx, hub, token) as c:
        view = c.submit_work("export", dataset_id, params)
        err_console.print(f"export of {escape(dataset_id)} queued as work item {view.id}",
                          highlight=False)
        _wait_and_fetch(c, view, out, not no_progress)


@work_app.command("list")
@handle_errors
def work_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 100,
    hub: HubOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List your work items, newest first.

    Needs sign-in: work started without it is reached only by its id.
    """
    with _client(ctx, hub, token) as c:
        items = c.work_list(limit)
    if as_json:
        typer.echo(json.dumps([w.raw for w in items], indent=2))
        return
    if not items:
        console.print("You have no work items yet: 'ndl download DATASET' starts one.")
        return
    table = Table(title=plural(len(items), "work item"))
    table.add_column("id", no_wrap=True, min_width=36)
    for col in ("kind", "dataset", "state", "progress", "started"):
        table.add_column(col)
    for w in items:
        table.add_row(w.id, w.kind, w.dataset, w.state, f"{w.progress:.0%}",
                      moment(w.created_at))
    console.print(table)


def _show(w: Work) -> None:
    console.print(f"[bold]{w.kind} of {escape(w.dataset)}[/]  (work item {w.id})",
                  highlight=False)
    lines = [("state", w.state), ("progress", f"{w.progress:.0%}"
                                  + (f" — {w.message}" if w.message else "")),
             ("submitted", moment(w.created_at)),
             ("started", moment(w.started_at, never="not yet")),
             ("finished", moment(w.finished_at, never="not yet"))]
    if not w.final and w.deadline:
        lines.append(("expires", moment(w.deadline)))
    if w.error:
        lines.append(("error", f"{w.error.get('message', '')} ({w.error.get('code', '')})"))
    if w.result is not None:
        rows = "" if w.result.rows is None else f", {plural(w.result.rows, 'row')}"
        lines.append(("result", f"{w.result.filename} ({file_size(w.result.size)}{rows})"))
        lines.append(("SHA-256", w.result.sha256))
        lines.append(("fetch", f"ndl work fetch {w.id}"))
    elif not w.final:
        lines.append(("next", f"ndl work wait {w.id}   (or: ndl work cancel {w.id})"))
    for key, value in lines:
        console.print(f"  {key + ':':<11}{escape(value)}", highlight=False)


@work_app.command("show")
@handle_errors
def work_show(ctx: typer.Context, work_id: WorkId, hub: HubOpt = None, token: TokenOpt = None,
              as_json: JsonOpt = False) -> None:
    """Show a work item: its state, progress, and its result or error."""
    with _client(ctx, hub, token) as c:
        w = c.work(work_id)
    if as_json:
        typer.echo(json.dumps(w.raw, indent=2))
        return
    _show(w)


@work_app.command("wait")
@handle_errors
def work_wait(
    ctx: typer.Context, work_id: WorkId,
    timeout: Annotated[float | None, typer.Option(
        min=0, help="Give up waiting after this many seconds (the work goes on).")] = None,
    no_progress: NoProgressOpt = False, hub: HubOpt = None, token: TokenOpt = None,
) -> None:
    """Wait for a work item to finish, with a progress bar.

    Exits non-zero unless it succeeded. Ctrl-C stops waiting, not the work.
    """
    with _client(ctx, hub, token) as c:
        try:
            w = c.wait_work(work_id, timeout=timeout, progress=not no_progress)
        except KeyboardInterrupt:
            raise _interrupted() from None
    err = outcome_error(w)
    if err is not None:
        raise err
    console.print(f"work item {w.id} succeeded: fetch its result with "
                  f"'ndl work fetch {w.id}'", highlight=False)


@work_app.command("cancel")
@handle_errors
def work_cancel(ctx: typer.Context, work_id: WorkId, hub: HubOpt = None,
                token: TokenOpt = None) -> None:
    """Cancel a work item; its datasite stops it at its next heartbeat.

    A finished item is left as it is.
    """
    with _client(ctx, hub, token) as c:
        before = c.work(work_id)
        w = c.cancel_work(work_id)
    if not before.final and w.state == "cancelled":
        console.print(f"work item {w.id} is cancelled", highlight=False)
    else:
        console.print(f"work item {w.id} had already finished ({w.state}); nothing changed",
                      highlight=False)


@work_app.command("fetch")
@handle_errors
def work_fetch(ctx: typer.Context, work_id: WorkId, out: OutOpt = None,
               no_progress: NoProgressOpt = False, hub: HubOpt = None,
               token: TokenOpt = None) -> None:
    """Download a work item's result and check its SHA-256.

    Resumes a partial download; waits first if the work is still running.
    """
    with _client(ctx, hub, token) as c:
        _wait_and_fetch(c, c.work(work_id), out, not no_progress)

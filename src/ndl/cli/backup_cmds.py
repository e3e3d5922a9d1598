"""``ndl backup hub|datasite`` and ``ndl restore hub|datasite``: one checked archive each.

Separate groups rather than ``ndl hub backup``: ``ndl hub`` is a single command taking
options (``ndl hub --db ...``), and making it a group would change how it is called.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

from ndl.cli.app import app, console, environ, err_console, handle_errors
from ndl.ops._common import BackupResult, RestoreResult
from ndl.ops._common import Progress as Report

backup_app = typer.Typer(no_args_is_help=True, help=(
    "Back up a hub or a datasite into one archive (tar.gz) with a signed manifest of every "
    "member's SHA-256. Run on the service's machine; it can run while the service does."))
restore_app = typer.Typer(no_args_is_help=True, help=(
    "Restore a hub or a datasite from an archive 'ndl backup' made, into a fresh install. "
    "The whole archive is checked before anything is written."))
app.add_typer(backup_app, name="backup")
app.add_typer(restore_app, name="restore")

DEFAULT_HUB_DIR = Path(".ndl") / "hub"
DbOpt = Annotated[str | None, typer.Option(
    help="The hub's database URL or SQLite path. [env NDL_HUB_DB; default DATA_DIR/hub.db]")]
DataDirOpt = Annotated[Path, typer.Option(help="The hub's data folder (key, blobs).")]
BlobStoreOpt = Annotated[str, typer.Option(
    help="The hub's --blob-store, if it has one (empty: DATA_DIR/blobs).")]
ExcludeKeysOpt = Annotated[bool, typer.Option(
    help="Leave the private keys out (the archive otherwise holds them: a secret). A restore "
         "then needs --key.")]
ForceOpt = Annotated[bool, typer.Option(
    help="Replace what is already there (DELETES the existing database's tables / state).")]
KeyOpt = Annotated[Path | None, typer.Option(
    help="The key file to install, for an archive made with --exclude-keys.")]
ExpectKeyOpt = Annotated[str | None, typer.Option(
    help="The key fingerprint 'ndl backup' printed: refuse an archive signed by another key.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _db(ctx: typer.Context, db: str | None, data_dir: Path) -> str:
    return db or environ(ctx).get("NDL_HUB_DB") or str(data_dir / "hub.db")


@contextmanager
def _bar(what: str, total: int | None, quiet: bool) -> Iterator[Progress]:
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), DownloadColumn(),
               TransferSpeedColumn()]
    with Progress(*columns, console=err_console, disable=quiet, transient=True) as bar:
        bar.add_task(what, total=total)
        yield bar


def _advance(bar: Progress, verb: str) -> Report:
    def progress(step: str, n: int) -> None:
        label = step if step.startswith("checking") else f"{verb} {step}"
        bar.update(bar.task_ids[0], advance=n, description=escape(label))
    return progress


def _backup_report(r: BackupResult, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({
            "path": str(r.path), "bytes": r.bytes, "members": r.members, "rows": r.rows,
            "blobs": r.blobs, "keys_included": r.keys_included,
            "key_fingerprint": r.key_fingerprint, "seconds": round(r.seconds, 3),
            "register_head": list(r.register_head) if r.register_head else None,
            "notes": r.notes}, indent=2))
        return
    console.print(f"wrote {r.path} ({r.bytes:,} bytes, {r.members} members, "
                  f"{sum(r.rows.values()):,} rows, {r.blobs} blobs) in {r.seconds:.1f} s",
                  highlight=False)
    console.print(f"signed by key {r.key_fingerprint}: note it, and give it to 'ndl restore "
                  "--expect-key' to refuse any other archive", highlight=False)
    if r.register_head:
        console.print(f"register head {r.register_head[0]}:{r.register_head[1]}",
                      highlight=False)
    for note in r.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def _restore_report(r: RestoreResult, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({
            "rows": r.rows, "blobs": r.blobs, "files": r.files,
            "from_revision": r.from_revision, "key_fingerprint": r.key_fingerprint,
            "seconds": round(r.seconds, 3),
            "register_head": list(r.register_head) if r.register_head else None,
            "notes": r.notes}, indent=2))
        return
    console.print(f"restored {sum(r.rows.values()):,} rows, {r.blobs} blobs, {r.files} files "
                  f"in {r.seconds:.1f} s (key {r.key_fingerprint})", highlight=False)
    if r.register_head:
        console.print(f"register verified: head {r.register_head[0]}:{r.register_head[1]}",
                      highlight=False)
    for note in r.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


@backup_app.command("hub")
@handle_errors
def backup_hub(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="The archive to write (e.g. hub-2026-12-06.tar.gz).")],
    db: DbOpt = None, data_dir: DataDirOpt = DEFAULT_HUB_DIR, blob_store: BlobStoreOpt = "",
    exclude_keys: ExcludeKeysOpt = False, as_json: JsonOpt = False,
) -> None:
    """Back up a hub: its database (one consistent snapshot, SQLite or PostgreSQL), blobs,
    keys and settings files."""
    from ndl.ops.backup import backup_hub as run

    with _bar("backing up", None, as_json) as bar:
        result = run(_db(ctx, db, data_dir), data_dir, out, blob_store=blob_store,
                     exclude_keys=exclude_keys,
                     progress=_advance(bar, "backing up"))
    _backup_report(result, as_json)


@backup_app.command("datasite")
@handle_errors
def backup_datasite(
    dir: Annotated[Path, typer.Argument(help="The datasite's folder.")],
    out: Annotated[Path, typer.Option(help="The archive to write.")],
    with_data: Annotated[bool, typer.Option(
        help="Also copy each dataset's data.parquet (left out by default: the data live at "
             "your organisation, which backs them up, and may be huge).")] = False,
    exclude_keys: ExcludeKeysOpt = False, as_json: JsonOpt = False,
) -> None:
    """Back up a datasite's state: identity, keys, state databases, datasets' metadata and
    policies (and with --with-data, the data)."""
    from ndl.ops.datasite_backup import backup_datasite as run

    with _bar("backing up", None, as_json) as bar:
        result = run(dir, out, with_data=with_data, exclude_keys=exclude_keys,
                     progress=_advance(bar, "backing up"))
    _backup_report(result, as_json)


@restore_app.command("hub")
@handle_errors
def restore_hub(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="An archive 'ndl backup hub' wrote.")],
    db: DbOpt = None, data_dir: DataDirOpt = DEFAULT_HUB_DIR, blob_store: BlobStoreOpt = "",
    force: ForceOpt = False, key: KeyOpt = None, expect_key: ExpectKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a hub into a fresh database and data folder (SQLite or PostgreSQL, whichever
    the backup came from), then migrate it and verify its register."""
    from ndl.ops.backup import restore_hub as run

    with _bar("checking", None, as_json) as bar:
        result = run(archive, _db(ctx, db, data_dir), data_dir, blob_store=blob_store,
                     force=force, key_file=key, expect_key=expect_key,
                     progress=_advance(bar, "restoring"))
    _restore_report(result, as_json)


@restore_app.command("datasite")
@handle_errors
def restore_datasite(
    archive: Annotated[Path, typer.Argument(help="An archive 'ndl backup datasite' wrote.")],
    dir: Annotated[Path, typer.Argument(help="The folder to restore into (new or empty).")],
    force: ForceOpt = False, key: KeyOpt = None, expect_key: ExpectKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a datasite's state into a fresh folder; it comes back with the same key and
    identity, so the hub knows it."""
    from ndl.ops.datasite_backup import restore_datasite as run

    with _bar("restoring", None, as_json) as bar:
        result = run(archive, dir, force=force, key_file=key, expect_key=expect_key,
                     progress=_advance(bar, "restoring"))
    _restore_report(result, as_json)

"""``ndl publish`` and ``ndl metadata``: a data steward's commands at their datasite.

Both work on the datasite's folder only; a running ``ndl datasite`` notices the changed
metadata.json and republishes the catalogue entry to the hub by itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ndl.cli.app import app, console, err_console, handle_errors
from ndl.core.errors import InvalidInput

if TYPE_CHECKING:
    from ndl.datasite.publish import FilePreview, PublishReport

DirOpt = Annotated[Path, typer.Option("--dir", help="The datasite's folder (datasets/ inside).")]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="The dataset's name, e.g. beds.")]


def _pairs(items: list[str] | None, option: str, example: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        col, sep, value = item.rpartition("=")  # column names may hold "=", values never do
        if not sep or not col or not value:
            raise InvalidInput(f"{option} {item!r} is not COLUMN=VALUE (e.g. {option} {example})")
        out[col] = value.strip()
    return out


def _nest(changes: dict[str, Any]) -> dict[str, Any]:
    """``{"contact.email": x}`` -> ``{"contact": {"email": x}}`` for whole-document metadata."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidInput(f"{key}: {part} is given both as a value and as an object")
        node[leaf] = value
    return out


def _metadata_extras(metadata_file: Path | None, sets: list[str] | None, licence: str | None,
                     themes: list[str] | None, keywords: list[str] | None) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if metadata_file is not None:
        try:
            loaded = json.loads(metadata_file.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"--metadata {metadata_file}: not a readable JSON file ({exc})"
                               ) from None
        if not isinstance(loaded, dict):
            raise InvalidInput(f"--metadata {metadata_file}: must hold a JSON object")
        extras.update(loaded)
    from ndl.datasite.metadata_edit import parse_assignments

    extras.update(_nest(parse_assignments(sets or [])))
    if licence is not None:
        extras["licence"] = licence
    if themes:
        extras["themes"] = themes
    if keywords:
        extras["keywords"] = keywords
    return extras


def _show_preview(preview: FilePreview, sensitivity: dict[str, str], join_keys: dict[str, str]
                  ) -> None:
    by_col = {s.column: s for s in preview.suggestions}
    table = Table(title=f"{escape(preview.path.name)}: {len(preview.columns)} columns "
                        f"({preview.format}{', ' + preview.encoding if preview.encoding else ''}"
                        f"; types from the first {preview.sample_rows:,} rows)")
    for col in ("column", "type", "sensitivity", "join key", "why"):
        table.add_column(col, overflow="fold")
    for name in preview.columns:
        s = by_col.get(name)
        sens = sensitivity.get(name) or (s.sensitivity if s else "none")
        join = join_keys.get(name) or (s.join_key if s else None) or ""
        why = "given with --sensitivity/--join-key" if name in sensitivity or name in join_keys \
            else (s.reason if s else "")
        note = preview.types[name].note
        why = "; ".join(w for w in (why, note) if w)
        style = "bold" if sens != "none" else ""
        table.add_row(escape(name), preview.types[name].type,
                      f"[{style}]{sens}[/]" if style else sens, join, escape(why))
    console.print(table)


def _summary(r: PublishReport) -> None:
    console.print(
        f"[bold green]published[/] {r.dataset} version {r.version}: {r.rows:,} "
        f"row{'' if r.rows == 1 else 's'}, "
        f"{len(r.columns)} columns, in {r.seconds:.1f} s ({r.rows_per_second:,.0f} rows/s)")
    console.print(f"  data: {escape(str(r.path / 'data.parquet'))}")
    if r.rows_quarantined:
        rows = "row" if r.rows_quarantined == 1 else "rows"
        console.print(f"  [yellow]{r.rows_quarantined:,} {rows} quarantined[/] (not published) "
                      f"with their row numbers and reasons: {escape(str(r.quarantine_path))}")
        for b in r.bad_rows[:5]:
            console.print(f"    row {b.row:,}: {escape(b.reason)}", highlight=False)
    if r.history_path is not None:
        console.print(f"  version {r.previous_version} kept in {escape(str(r.history_path))}")
    for note in r.notes:
        console.print(f"  note: {escape(note)}", highlight=False)
    console.print("  a running datasite republishes the catalogue entry to the hub by itself")


def _report_json(r: PublishReport) -> dict[str, Any]:
    return {
        "dataset": r.dataset, "version": r.version, "path": str(r.path), "rows": r.rows,
        "rows_quarantined": r.rows_quarantined,
        "quarantine_path": str(r.quarantine_path) if r.quarantine_path else None,
        "bad_rows": [{"row": b.row, "reason": b.reason} for b in r.bad_rows],
        "columns": [c.model_dump(mode="json", exclude_none=True) for c in r.columns],
        "suggestions": [vars(s) for s in r.suggestions], "notes": r.notes,
        "previous_version": r.previous_version,
        "history_path": str(r.history_path) if r.history_path else None,
        "bytes_read": r.bytes_read, "seconds": round(r.seconds, 3), "format": r.format,
        "encoding": r.encoding, "timings": {k: round(v, 3) for k, v in r.timings.items()},
    }


@app.command()
@handle_errors
def publish(
    file: Annotated[Path, typer.Argument(help="A CSV, Parquet or Excel (.xlsx) file.")],
    dir: DirOpt,
    dataset: DatasetOpt,
    title: Annotated[str | None, typer.Option(help="Title (default: from the name).")] = None,
    tier: Annotated[str | None, typer.Option(
        help="open, safeguarded or controlled (default: the previous version's tier, else "
             "safeguarded).")] = None,
    description: Annotated[str | None, typer.Option(help="What the data is.")] = None,
    publisher: Annotated[str | None, typer.Option(
        help="Who publishes it (default: the datasite's name).")] = None,
    type_: Annotated[list[str] | None, typer.Option(
        "--type", help="COLUMN=TYPE to override inference: string, integer, float, boolean, "
                       "date. Repeat for several.")] = None,
    sensitivity: Annotated[list[str] | None, typer.Option(
        help="COLUMN=LEVEL: direct_identifier, quasi_identifier, sensitive or none.")] = None,
    join_key: Annotated[list[str] | None, typer.Option(
        "--join-key", help="COLUMN=KEY: nhs_number, upn, postcode, date_of_birth, name, "
                           "local_id, or none.")] = None,
    on_error: Annotated[str, typer.Option(
        help="reject: any bad row stops the publish. quarantine: publish the good rows and "
             "put the bad ones in quarantine.csv.")] = "reject",
    encoding: Annotated[str | None, typer.Option(
        help="The CSV's text encoding, e.g. cp1252 (default: utf-8).")] = None,
    delimiter: Annotated[str | None, typer.Option(
        help="The CSV's delimiter (default: guessed from the header).")] = None,
    sheet: Annotated[str | None, typer.Option(help="Excel sheet (default: the first).")] = None,
    file_format: Annotated[str | None, typer.Option(
        "--format", help="csv, parquet or xlsx (default: from the file).")] = None,
    licence: Annotated[str | None, typer.Option(
        help="OGL-UK-3.0, CC-BY-4.0, CC0-1.0, ODbL-1.0, restricted, or a licence URI.")] = None,
    theme: Annotated[list[str] | None, typer.Option(help="A catalogue theme; repeat.")] = None,
    keyword: Annotated[list[str] | None, typer.Option(help="A keyword; repeat.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="FIELD=VALUE for any metadata field, e.g. contact.email=data@nhs.net, "
                      "temporal.start=2023-01-01.")] = None,
    metadata_file: Annotated[Path | None, typer.Option(
        "--metadata", help="A JSON file of metadata fields (--set and options win).")] = None,
    new_version: Annotated[bool, typer.Option(
        "--new-version", help="Replace an existing dataset; its current version moves to "
                              "history/.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Accept the suggested sensitivity tags without asking.")] = False,
    no_suggestions: Annotated[bool, typer.Option(
        "--no-suggestions", help="Do not apply suggested tags (only --sensitivity/--join-key)."
    )] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Publish a file as a dataset at this datasite (a new version if it exists)."""
    # Imported here so that other commands (and --help) do not pay for pyarrow.
    from ndl.datasite.publish import check_request, inspect_file, publish_file

    types = _pairs(type_, "--type", "age=integer")
    sens = _pairs(sensitivity, "--sensitivity", "postcode=quasi_identifier")
    joins = _pairs(join_key, "--join-key", "nhs_no=nhs_number")
    extras = _metadata_extras(metadata_file, set_, licence, theme, keyword)
    # Everything that can be checked without reading the file is checked first.
    check_request(dir, dataset, tier=tier, on_error=on_error, sensitivity=sens,
                  join_keys=joins, meta=extras, new_version=new_version)
    preview = inspect_file(file, types=types, file_format=file_format, encoding=encoding,
                           delimiter=delimiter, sheet=sheet)
    if not as_json:
        _show_preview(preview, sens, joins)
    pending = [s for s in preview.suggestions if s.column not in sens]
    accept = bool(pending) and not no_suggestions
    if accept and not yes and not typer.confirm(
            f"Tag {len(pending)} column(s) as suggested above?", default=True):
        err_console.print("nothing published. Tag columns yourself with --sensitivity "
                          "COLUMN=LEVEL and --join-key COLUMN=KEY, or pass --no-suggestions")
        raise typer.Exit(1)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, disable=as_json) as bar:
        task = bar.add_task(f"publishing {escape(file.name)}", total=file.stat().st_size)
        report = publish_file(
            dir, file, dataset=dataset, title=title, tier=tier, description=description,
            publisher=publisher, types=types, sensitivity=sens, join_keys=joins,
            on_error=on_error,  # type: ignore[arg-type]
            accept_suggestions=accept, new_version=new_version, meta=extras,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            file_format=file_format, encoding=encoding, delimiter=delimiter, sheet=sheet)
    if as_json:
        typer.echo(json.dumps(_report_json(report), indent=2))
    else:
        _summary(report)


metadata = typer.Typer(help="Show or edit a published dataset's metadata at this datasite.",
                       no_args_is_help=True)
app.add_typer(metadata, name="metadata")


@metadata.command("show")
@handle_errors
def metadata_show(
    dir: DirOpt, dataset: DatasetOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata.json.")] = False,
) -> None:
    """Show a dataset's metadata as the catalogue will see it."""
    from ndl.datasite.metadata_edit import read_metadata

    meta = read_metadata(dir, dataset)
    if as_json:
        typer.echo(json.dumps(meta, indent=2, ensure_ascii=False))
        return
    fields = Table(title=f"{dataset} (version {meta.get('version', '?')})", show_header=False)
    fields.add_column("field", style="bold")
    fields.add_column("value", overflow="fold")
    for key, value in meta.items():
        if key != "columns":
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            fields.add_row(escape(key), escape(shown))
    console.print(fields)
    cols = Table(title="columns")
    for col in ("name", "type", "sensitivity", "join key", "description"):
        cols.add_column(col, overflow="fold")
    for c in meta.get("columns", []):
        cols.add_row(*(escape(str(v)) for v in (
            c.get("name"), c.get("type"), c.get("sensitivity", "none"), c.get("join_key") or "",
            c.get("description", ""))))
    console.print(cols)


@metadata.command("set")
@handle_errors
def metadata_set(
    dir: DirOpt, dataset: DatasetOpt,
    changes: Annotated[list[str], typer.Argument(
        help="FIELD=VALUE pairs, e.g. licence=OGL-UK-3.0 themes=health,housing "
             "contact.email=data@nhs.net columns.age.unit=years")],
) -> None:
    """Change metadata fields; every value is checked and the file is replaced atomically."""
    from ndl.datasite.metadata_edit import apply_metadata_changes, parse_assignments

    parsed = parse_assignments(changes)
    meta = apply_metadata_changes(dir, dataset, parsed)
    console.print(f"updated {len(parsed)} field(s) of {meta.name}: {', '.join(parsed)}")
    console.print("a running datasite republishes the catalogue entry to the hub by itself")


@app.command("publish-source")
@handle_errors
def publish_source(
    dir: DirOpt,
    dataset: DatasetOpt,
    parquet: Annotated[str | None, typer.Option(
        help="A Parquet file or folder Spark reads in place (a path every Spark worker sees, "
             "or hdfs://...).")] = None,
    table: Annotated[str | None, typer.Option(
        help="A table in the Spark catalogue (table, db.table or catalog.db.table).")] = None,
    spark_master: Annotated[str | None, typer.Option(
        envvar="NDL_SPARK_MASTER",
        help="Read the schema with Spark (needed for --table and hdfs:// paths): "
             "spark://HOST:PORT or local[*].")] = None,
    title: Annotated[str | None, typer.Option(help="Title (default: from the name).")] = None,
    tier: Annotated[str | None, typer.Option(
        help="open, safeguarded or controlled (default: safeguarded).")] = None,
    description: Annotated[str | None, typer.Option(help="What the data is.")] = None,
    publisher: Annotated[str | None, typer.Option(
        help="Who publishes it (default: the datasite's name).")] = None,
    sensitivity: Annotated[list[str] | None, typer.Option(
        help="COLUMN=LEVEL: direct_identifier, quasi_identifier, sensitive or none.")] = None,
    join_key: Annotated[list[str] | None, typer.Option(
        "--join-key", help="COLUMN=KEY: nhs_number, upn, postcode, date_of_birth, name, "
                           "local_id, or none.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="FIELD=VALUE for any metadata field.")] = None,
    metadata_file: Annotated[Path | None, typer.Option(
        "--metadata", help="A JSON file of metadata fields (--set and options win).")] = None,
    new_version: Annotated[bool, typer.Option(
        "--new-version", help="Replace an existing source's metadata and location.")] = False,
) -> None:
    """Publish data Spark reads where it is (no copy): a Parquet folder or a catalogue table.

    Only a datasite started with --spark-master serves it. Delta tables are not supported
    (they need jars from Maven at run time).
    """
    from ndl.datasite.engines import make_engine
    from ndl.datasite.engines.source import parquet_source, table_source
    from ndl.datasite.engines.spark_engine import SparkEngine
    from ndl.datasite.publish_source import arrow_columns, publish_source, spark_columns

    if (parquet is None) == (table is None):
        raise InvalidInput("give one of --parquet PATH or --table NAME")
    source = parquet_source(parquet) if parquet is not None else table_source(str(table))
    if source.kind == "parquet" and "://" not in source.location:
        columns, rows = arrow_columns(source.location)
    elif not spark_master:
        raise InvalidInput(f"reading the schema of {source.describe()} needs Spark: give "
                           "--spark-master spark://HOST:PORT (or local[*])")
    else:
        engine = make_engine(dir, spark_master)
        assert isinstance(engine, SparkEngine)
        try:
            columns, rows = spark_columns(engine, source)
        finally:
            engine.close()
    meta = publish_source(
        dir, dataset, source, columns, rows, tier=tier, title=title, description=description,
        publisher=publisher, sensitivity=_pairs(sensitivity, "--sensitivity",
                                                "postcode=quasi_identifier"),
        join_keys=_pairs(join_key, "--join-key", "nhs_no=nhs_number"),
        extras=_metadata_extras(metadata_file, set_, None, None, None),
        new_version=new_version)
    console.print(f"published {escape(meta.name)} ({meta.tier}, {rows:,} rows, "
                  f"{len(meta.columns)} columns) from {escape(source.describe())}; no data "
                  "copied. Serve it with: ndl datasite --spark-master ...")

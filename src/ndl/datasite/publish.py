"""Publish a steward's file (CSV, Parquet, Excel) as a dataset version at a datasite.

:func:`publish_file` streams the file block by block (memory stays bounded whatever its size),
infers column types from the first block (overridable), validates every row, and writes
Parquet. Bad rows are reported with the row numbers the steward sees in their own tools and
either fail the publish (``on_error="reject"``) or are set aside in ``quarantine.csv``
(``"quarantine"``). Column sensitivity and join keys come from the steward, from suggestions
(:mod:`ndl.datasite.suggest`) they accepted, or from the previous version.

A dataset is never half-published. The new version is built in
``<site>/datasets/.staging/<name>.build-*`` (data, metadata, quarantine, and hard links to the
history and the previous version), fsynced, then swapped in with one atomic directory
exchange. A crash at any point leaves the previous version whole; leftovers are cleaned up
by the next publish of that dataset. Layout after publishing version 3::

    datasets/<name>/data.parquet, metadata.json ("version": 3), quarantine.csv (if any)
    datasets/<name>/history/v1/..., history/v2/...
"""

from __future__ import annotations

import csv
import ctypes
import errno
import itertools
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from ndl.catalogue.metadata import JOIN_KEYS, TIERS, ColumnMeta, DatasetMeta
from ndl.core.csvsafe import safe_row
from ndl.core.errors import Conflict, InvalidInput
from ndl.datasite import ingest
from ndl.datasite.ingest import BadRow
from ndl.datasite.metadata_edit import (
    PROTECTED_FIELDS,
    atomic_write_text,
    check_field_name,
    dataset_lock,
    fsync_dir,
    staging_root,
    validation_error,
)
from ndl.datasite.suggest import (
    ARROW_TYPES,
    INFER_ROWS,
    Inferred,
    Suggestion,
    as_text,
    convert_batch,
    guess_date_format,
    infer_types,
    suggest_column,
)

__all__ = [
    "FilePreview", "PublishReport", "check_dataset_name", "check_new_version", "check_request",
    "inspect_file", "publish_file", "row_count",
]

OnError = Literal["reject", "quarantine"]
Progress = Callable[[int, int], None]
SENSITIVITIES: tuple[str, ...] = ("direct_identifier", "quasi_identifier", "sensitive", "none")
MAX_REPORTED = 1000  # bad rows kept for the report; reject mode stops reading after this many
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_CURRENT_FILES = ("data.parquet", "metadata.json", "quarantine.csv")


@dataclass
class FilePreview:
    """What the first block of a file says: columns, inferred types, suggestions."""

    path: Path
    format: str
    encoding: str | None
    columns: list[str]
    types: dict[str, Inferred]
    suggestions: list[Suggestion]
    sample_rows: int


@dataclass
class PublishReport:
    dataset: str
    version: int
    path: Path
    rows: int
    rows_quarantined: int
    quarantine_path: Path | None
    bad_rows: list[BadRow]
    columns: list[ColumnMeta]
    suggestions: list[Suggestion]
    notes: list[str]
    previous_version: int | None
    history_path: Path | None
    bytes_read: int
    seconds: float
    format: str
    encoding: str | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class _Request:
    dataset: str
    title: str | None
    tier: str | None
    description: str | None
    publisher: str | None
    types: dict[str, str]
    sensitivity: dict[str, str]
    join_keys: dict[str, str]
    on_error: str
    accept_suggestions: bool
    extras: dict[str, Any]
    progress: Progress | None


# -- checks before any work ------------------------------------------------------------------
def check_dataset_name(dataset: str) -> None:
    if not _NAME.match(dataset):
        raise InvalidInput(f"dataset name {dataset!r} must be 2-63 lowercase letters, digits or "
                           "hyphens, starting with a letter or digit (e.g. ae-attendances)")


def check_new_version(site_dir: Path, dataset: str, new_version: bool) -> None:
    """Conflict if ``dataset`` exists and the steward did not ask for a new version."""
    check_dataset_name(dataset)
    target = site_dir / "datasets" / dataset
    if target.exists() and not new_version:
        _, version = _previous(target)
        raise Conflict(
            f"dataset {dataset!r} already exists at this datasite (version {version}); pass "
            f"--new-version to publish this file as version {(version or 0) + 1}, or choose "
            "another --dataset name")


def _check_choice(kind: str, mapping: Mapping[str, str], allowed: tuple[str, ...],
                  extra: tuple[str, ...] = ()) -> None:
    for col, value in mapping.items():
        if value not in allowed and value not in extra:
            raise InvalidInput(f"{kind} for column {col!r}: {value!r} is not one of "
                               f"{', '.join(allowed + extra)}")


def _check_meta_extras(dataset: str, tier: str, extras: Mapping[str, Any]) -> None:
    """Field-level errors in the DCAT fields (licence, dates...) before reading any data."""
    for key in extras:
        if key in PROTECTED_FIELDS or key == "columns":
            raise InvalidInput(f"{key} is set from the data and cannot be given as metadata")
        check_field_name(key)
    probe = {"name": dataset, "title": "probe", "publisher": "probe", "tier": tier,
             "columns": [{"name": "probe", "type": "string"}], **extras}
    try:
        DatasetMeta.model_validate(probe)
    except ValidationError as exc:
        raise validation_error(exc, f"metadata for {dataset!r} is not valid; nothing was "
                               "published") from None


def check_request(site_dir: Path, dataset: str, *, tier: str | None = None,
                  on_error: str = "reject", sensitivity: Mapping[str, str] | None = None,
                  join_keys: Mapping[str, str] | None = None,
                  meta: Mapping[str, Any] | None = None, new_version: bool = False) -> None:
    """Every check that needs no data, so a steward hears about mistakes before any reading."""
    check_dataset_name(dataset)
    if tier is not None and tier not in TIERS:
        raise InvalidInput(f"tier {tier!r} is not one of {', '.join(TIERS)}")
    if on_error not in ("reject", "quarantine"):
        raise InvalidInput(f"on_error {on_error!r} must be reject or quarantine")
    _check_choice("--sensitivity", sensitivity or {}, SENSITIVITIES)
    _check_choice("--join-key", join_keys or {}, JOIN_KEYS, ("none",))
    _check_meta_extras(dataset, tier or "safeguarded", meta or {})
    check_new_version(site_dir, dataset, new_version)


def _default_publisher(site_dir: Path) -> str | None:
    path = site_dir / "datasite.json"
    try:
        cfg = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        return None
    value = cfg.get("name") or cfg.get("org") if isinstance(cfg, dict) else None
    return str(value) if value else None


# -- planning: types, tags ---------------------------------------------------------------------
def _sample_text(column: pa.Array, n: int = 1000) -> list[str]:
    text = as_text(column.slice(0, n * 2)).drop_null()
    return [v for v in text.slice(0, n).to_pylist() if v is not None]


def _plan(source: ingest.Source, sample: pa.RecordBatch, types: Mapping[str, str]
          ) -> tuple[dict[str, Inferred], dict[str, Suggestion]]:
    unknown = [c for c in types if c not in source.columns]
    if unknown:
        raise InvalidInput(f"--type names column {unknown[0]!r}, which the file does not have; "
                           f"its columns are {', '.join(source.columns)}")
    _check_choice("--type", types, tuple(ARROW_TYPES))
    plans = infer_types(sample, source)
    suggestions: dict[str, Suggestion] = {}
    for name, column in zip(sample.schema.names, sample.columns, strict=True):
        if name in types:
            fmt = None
            if types[name] == "date":
                fmt = guess_date_format(as_text(column.slice(0, INFER_ROWS)))
            plans[name] = Inferred(types[name], fmt, "type given by the steward")
        s = suggest_column(name, _sample_text(column), plans[name].type)
        if s is not None:
            suggestions[name] = s
            # Identifiers are labels, not quantities: keep them as text so leading zeros,
            # spacing and joins behave.
            if s.join_key is not None and plans[name].type == "integer" and name not in types:
                what = s.kind.replace("_", " ")
                plans[name] = Inferred("string", note=f"kept as text: an identifier ({what})")
    return plans, suggestions


def inspect_file(path: Path, *, file_format: str | None = None, encoding: str | None = None,
                 delimiter: str | None = None, sheet: str | None = None,
                 types: Mapping[str, str] | None = None) -> FilePreview:
    """Read only the first block of ``path``: its columns, their types and suggestions."""
    source = ingest.open_source(path, fmt=file_format, encoding=encoding, delimiter=delimiter,
                                sheet=sheet)
    try:
        first = _first_rows(source, path)
        plans, suggestions = _plan(source, first.batch, types or {})
    finally:
        source.close()
    return FilePreview(path, source.format, source.encoding, list(source.columns), plans,
                       list(suggestions.values()), min(first.batch.num_rows, INFER_ROWS))


def _first_rows(source: ingest.Source, path: Path) -> ingest.Chunk:
    chunks = source.chunks()
    for chunk in chunks:
        if chunk.batch.num_rows or chunk.bad:
            chunks.close()
            return chunk
    raise InvalidInput(f"{path.name} has a header row but no data rows: nothing to publish")


def _columns(plans: dict[str, Inferred], suggestions: dict[str, Suggestion],
             previous: dict[str, dict[str, Any]], sensitivity: Mapping[str, str],
             join_keys: Mapping[str, str], accept: bool) -> list[ColumnMeta]:
    out = []
    for name, plan in plans.items():
        prev = {k: v for k, v in previous.get(name, {}).items()
                if k not in ("name", "type", "sensitivity", "join_key")}
        old = previous.get(name, {})
        s = suggestions.get(name) if accept else None
        # The steward's word now, then what they confirmed last time, then the suggestion.
        sens = sensitivity.get(name) or (
            old.get("sensitivity") if old.get("sensitivity") not in (None, "none") else None
        ) or (s.sensitivity if s else None) or "none"
        join = join_keys.get(name) or old.get("join_key") or (s.join_key if s else None)
        out.append(ColumnMeta(name=name, type=plan.type,  # type: ignore[arg-type]
                              sensitivity=sens,  # type: ignore[arg-type]
                              join_key=None if join == "none" else join,  # type: ignore[arg-type]
                              **{"description": "", **prev}))
    return out


# -- the version swap ------------------------------------------------------------------------
def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link a tree (no copying gigabytes); copy only where links are impossible."""
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        for entry in src.iterdir():
            _link_tree(entry, dst / entry.name)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _recover(site_dir: Path, name: str) -> None:
    """Finish or undo whatever a crashed publish of ``name`` left (we hold its lock)."""
    root, target = staging_root(site_dir), site_dir / "datasets" / name
    for old in sorted(root.glob(f"{name}.old-*")):
        if not target.exists():
            os.rename(old, target)  # crashed between the two renames: put it back
        else:
            shutil.rmtree(old, ignore_errors=True)
    for build in root.glob(f"{name}.build-*"):
        shutil.rmtree(build, ignore_errors=True)


def _history_versions(target: Path) -> list[int]:
    found = [re.fullmatch(r"v(\d+)", p.name) for p in (target / "history").glob("v*")]
    return [int(m.group(1)) for m in found if m]


def _previous(target: Path) -> tuple[dict[str, Any] | None, int | None]:
    if not target.exists():
        return None, None
    meta: dict[str, Any] | None = None
    try:
        loaded = json.loads((target / "metadata.json").read_text("utf-8"))
        meta = loaded if isinstance(loaded, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        meta = None  # unreadable: keep it in history all the same
    version = meta.get("version") if meta else None
    if not isinstance(version, int) or version < 1:
        version = max(_history_versions(target), default=0) + 1
    return meta, version


def _carry_history(target: Path, staging: Path, prev_version: int) -> Path:
    """Link the old history, the previous version and any other files into the new build."""
    history = staging / "history"
    if (target / "history").is_dir():
        _link_tree(target / "history", history)
    slot = history / f"v{prev_version}"
    if slot.exists():  # a hand-edited version number collided with an old slot
        slot = history / f"v{prev_version}-{int(time.time())}"
    slot.mkdir(parents=True)
    for entry in target.iterdir():
        if entry.name == "history" or entry.name.startswith("."):
            continue
        dest = slot / entry.name if entry.name in _CURRENT_FILES else staging / entry.name
        _link_tree(entry, dest)
    return slot


def _swap_in(site_dir: Path, name: str, staging: Path) -> None:
    datasets, target = site_dir / "datasets", site_dir / "datasets" / name
    fsync_dir(staging)
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the previous version's old folder
    else:
        old = staging_root(site_dir) / f"{name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)  # a crash here is undone by _recover
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(datasets)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


# -- the quarantine file ---------------------------------------------------------------------
class _Quarantine:
    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self._f: Any = None
        self._w: Any = None

    def write(self, rows: list[BadRow]) -> None:
        if self._f is None:
            self._f = self.path.open("w", newline="", encoding="utf-8")
            self._w = csv.writer(self._f)
            self._w.writerow(safe_row(["source_row", "reason", *self.columns]))
        width = len(self.columns)
        for r in rows:
            values = list(r.values[:width]) + [None] * (width - len(r.values))
            self._w.writerow(safe_row([r.row, r.reason, *values]))

    def close(self) -> bool:
        if self._f is None:
            return False
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        return True


def _bad_rows(chunk: ingest.Chunk, reasons: dict[int, str], with_values: bool) -> list[BadRow]:
    if not reasons:
        return []
    idx = sorted(reasons)
    values: list[list[Any]] = [[] for _ in idx]
    if with_values:
        taken = chunk.batch.take(pa.array(idx, pa.int64()))
        cols = [as_text(c).to_pylist() for c in taken.columns]
        values = [list(v) for v in zip(*cols, strict=True)] if cols else values
    return [BadRow(chunk.row_of(i), reasons[i], v) for i, v in zip(idx, values, strict=True)]


def _reject(path: Path, bad: list[BadRow], count: int, stopped: bool, notes: list[str]
            ) -> InvalidInput:
    shown = "\n".join(f"  row {b.row:,}: {b.reason}" for b in bad[:10])
    more = f"\n  ... and {count - 10:,} more" if count > 10 else ""
    plus = "+" if stopped else ""
    hint = "".join(f"\n{n}" for n in notes)
    return InvalidInput(
        f"{path.name}: {count:,}{plus} row{'s' if count != 1 else ''} failed validation, so "
        f"nothing was published (any previous version is unchanged):\n{shown}{more}{hint}\n"
        "Fix these rows, give a column's type with --type COLUMN=TYPE, or pass "
        "--on-error quarantine to publish the good rows and set the bad ones aside",
        detail={"bad_row_count": count, "stopped_early": stopped,
                "bad_rows": [{"row": b.row, "reason": b.reason} for b in bad]})


# -- publishing ------------------------------------------------------------------------------
def publish_file(
    site_dir: Path, source: Path, *, dataset: str, title: str | None = None,
    tier: str | None = None, description: str | None = None, publisher: str | None = None,
    types: Mapping[str, str] | None = None, sensitivity: Mapping[str, str] | None = None,
    join_keys: Mapping[str, str] | None = None, on_error: OnError = "reject",
    accept_suggestions: bool = False, new_version: bool = False,
    meta: Mapping[str, Any] | None = None, file_format: str | None = None,
    encoding: str | None = None, delimiter: str | None = None, sheet: str | None = None,
    progress: Progress | None = None, block_size: int = ingest.BLOCK_SIZE,
) -> PublishReport:
    """Publish ``source`` as dataset ``dataset`` at the datasite in ``site_dir``.

    Raises InvalidInput (bad file, bad rows under ``reject``, bad metadata), Conflict (the
    dataset exists and ``new_version`` is false, or another publish of it is running). On any
    error, and on a crash, the previous version is left exactly as it was.
    """
    started = time.monotonic()
    req = _Request(dataset, title, tier, description, publisher, dict(types or {}),
                   dict(sensitivity or {}), dict(join_keys or {}), on_error,
                   accept_suggestions, dict(meta or {}), progress)
    check_request(site_dir, dataset, tier=tier, on_error=on_error, sensitivity=req.sensitivity,
                  join_keys=req.join_keys, meta=req.extras, new_version=new_version)
    target = site_dir / "datasets" / dataset
    (site_dir / "datasets").mkdir(parents=True, exist_ok=True)

    with dataset_lock(site_dir, dataset):
        _recover(site_dir, dataset)
        check_new_version(site_dir, dataset, new_version)
        prev, prev_version = _previous(target)
        src = ingest.open_source(source, fmt=file_format, encoding=encoding,
                                 delimiter=delimiter, sheet=sheet, block_size=block_size)
        unknown = [c for c in (*req.sensitivity, *req.join_keys) if c not in src.columns]
        if unknown:
            src.close()
            raise InvalidInput(f"column {unknown[0]!r} is not in {source.name}; its columns "
                               f"are {', '.join(src.columns)}")
        staging = staging_root(site_dir) / f"{dataset}.build-{uuid.uuid4().hex[:8]}"
        try:
            return _build(req, site_dir, source, src, staging, prev, prev_version, started)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            src.close()


def _build(req: _Request, site_dir: Path, path: Path, src: ingest.Source, staging: Path,
           prev: dict[str, Any] | None, prev_version: int | None, started: float
           ) -> PublishReport:
    dataset = req.dataset
    target = site_dir / "datasets" / dataset
    chunks = src.chunks()
    first = next(chunks, None)
    while first is not None and not first.batch.num_rows and not first.bad:
        first = next(chunks, None)
    if first is None:
        raise InvalidInput(f"{path.name} has a header row but no data rows: nothing to publish")
    plans, suggestions = _plan(src, first.batch, req.types)
    notes = [f"{n}: {p.note}" for n, p in plans.items()
             if p.note and p.note != "type given by the steward"]
    old_cols = {c["name"]: c for c in (prev or {}).get("columns", []) if isinstance(c, dict)
                and "name" in c}
    columns = _columns(plans, suggestions, old_cols, req.sensitivity, req.join_keys,
                       req.accept_suggestions)
    tier = req.tier or (prev or {}).get("tier") or "safeguarded"
    direct = [c.name for c in columns if c.sensitivity == "direct_identifier"]
    if tier == "open" and direct:
        raise InvalidInput(
            f"open datasets may not hold direct identifiers, and {', '.join(direct)} "
            f"{'is' if len(direct) == 1 else 'are'} tagged direct_identifier; drop "
            f"{'it' if len(direct) == 1 else 'them'} from the file, or publish as "
            "--tier safeguarded or controlled")
    publisher = req.publisher or (prev or {}).get("publisher") or _default_publisher(site_dir)
    if not publisher:
        raise InvalidInput("give --publisher (e.g. 'Northshire NHS Foundation Trust'): this "
                           "datasite's datasite.json has no name to use")
    version = max([prev_version or 0, *_history_versions(target)]) + 1
    today = date.today().isoformat()
    base = {k: v for k, v in (prev or {}).items()
            if k not in (*PROTECTED_FIELDS, "columns", "modified")}
    document: dict[str, Any] = {
        **base, "issued": base.get("issued") or today, "modified": today, **req.extras,
        "name": dataset, "publisher": publisher, "tier": tier,
        "title": req.title or base.get("title") or dataset.replace("-", " ").capitalize(),
        "description": req.description if req.description is not None
        else base.get("description", ""),
        "columns": [c.model_dump(mode="json", exclude_none=True) for c in columns],
        "row_count": 0, "version": version,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        DatasetMeta.model_validate(document)
    except ValidationError as exc:
        raise validation_error(exc, f"metadata for {dataset!r} is not valid; nothing was "
                               "published", document) from None

    staging.mkdir(parents=True)
    on_error, progress = req.on_error, req.progress
    schema = pa.schema([(n, ARROW_TYPES[p.type]) for n, p in plans.items()])
    quarantine = _Quarantine(staging / "quarantine.csv", list(plans))
    writer = pq.ParquetWriter(staging / "data.parquet", schema, compression="zstd")
    rows = bad_count = 0
    reported: list[BadRow] = []
    stopped = False
    t_read = time.monotonic()
    try:
        for chunk in itertools.chain([first], chunks):
            good, reasons = convert_batch(chunk.batch, plans, empty_is_null=src.text)
            bad = sorted(chunk.bad + _bad_rows(chunk, reasons, on_error == "quarantine"),
                         key=lambda b: b.row)
            if bad:
                bad_count += len(bad)
                reported.extend(bad[:MAX_REPORTED - len(reported)])
                if on_error == "quarantine":
                    quarantine.write(bad)
                elif bad_count >= MAX_REPORTED:
                    stopped = True
                    break
            # Under reject, one bad row dooms the publish: keep checking, stop writing.
            if good.num_rows and (on_error == "quarantine" or not bad_count):
                writer.write_batch(good)
            rows += good.num_rows
            if progress is not None:
                progress(src.bytes_read(), src.total_bytes)
    finally:
        writer.close()
        had_quarantine = quarantine.close()
    t_written = time.monotonic()
    last = getattr(src, "last_record", None)
    truncated = []
    if reported and last is not None and reported[-1].row == last and "fields" in \
            reported[-1].reason:
        truncated = [f"row {last:,} is the last row and it is incomplete: the file may be "
                     "truncated"]
    notes += truncated
    if on_error == "reject" and bad_count:
        raise _reject(path, reported, bad_count, stopped, truncated)
    if not rows:
        why = f"every row failed validation ({bad_count:,})" if bad_count else "no data rows"
        raise InvalidInput(f"{path.name}: {why}; nothing was published", detail={
            "bad_rows": [{"row": b.row, "reason": b.reason} for b in reported[:20]]})
    if progress is not None:
        progress(src.total_bytes, src.total_bytes)

    _fsync_file(staging / "data.parquet")
    document["row_count"] = rows
    meta = DatasetMeta.model_validate(document)
    atomic_write_text(staging / "metadata.json", json.dumps(
        meta.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False) + "\n")
    history = None
    if target.exists() and prev_version is not None:
        history = _carry_history(target, staging, prev_version)
    _swap_in(site_dir, dataset, staging)
    done = time.monotonic()
    if history is not None:
        history = target / "history" / history.name
    return PublishReport(
        dataset=dataset, version=version, path=target, rows=rows, rows_quarantined=bad_count,
        quarantine_path=target / "quarantine.csv" if had_quarantine else None,
        bad_rows=reported, columns=list(meta.columns), suggestions=list(suggestions.values()),
        notes=notes, previous_version=prev_version if history else None, history_path=history,
        bytes_read=src.total_bytes, seconds=done - started, format=src.format,
        encoding=src.encoding, timings={"prepare": t_read - started,
                                        "read_validate_write": t_written - t_read,
                                        "finalise": done - t_written})


def row_count(path: Path) -> int:
    """Rows in a published data.parquet, from its footer (no data read)."""
    return int(pq.ParquetFile(path).metadata.num_rows)

"""Edit a published dataset's metadata.json in place: field-level checks, never half-written.

Stewards call this through ``ndl metadata set`` and, via the hub, ``PATCH
/api/datasets/{site}/{name}/metadata``; both end in :func:`apply_metadata_changes`. Changes
are a mapping of field to value: a top-level field replaces the whole value; a dotted path
(``contact.email``, ``access.lead_time_days``, ``columns.age.unit``) sets one part of it. What
the data itself decides cannot be edited here: the dataset's ``name``, a column's ``name`` or
``type``, ``row_count`` and the local ``version`` (publish a new version instead).

Files are replaced atomically (write to a temporary file, fsync, rename), under the same
per-dataset lock ``ndl publish`` takes, so a reader never sees a half-written file and an
edit never lands on a version that is being swapped out.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ndl.catalogue.metadata import ColumnMeta, DatasetMeta
from ndl.core.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "PROTECTED_FIELDS", "apply_metadata_changes", "atomic_write_text", "check_field_name",
    "dataset_lock", "fsync_dir", "parse_assignments", "read_metadata", "staging_root",
    "validation_error",
]

# Fields the data decides, or that ndl keeps; a steward changes them by publishing again.
PROTECTED_FIELDS: tuple[str, ...] = ("name", "row_count", "version", "published_at")
_PROTECTED_COLUMN_FIELDS: tuple[str, ...] = ("name", "type")
_LIST_FIELDS: tuple[str, ...] = ("keywords", "themes", "access.linkable_datasets")


def staging_root(site_dir: Path) -> Path:
    """Where publishing builds new versions: beside the datasets, so renames stay atomic."""
    return site_dir / "datasets" / ".staging"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a crash leaves either the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


@contextlib.contextmanager
def dataset_lock(site_dir: Path, name: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the one lock that publishing and metadata edits of ``name`` share."""
    root = staging_root(site_dir)
    root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with (root / f"{name}.lock").open("a") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Conflict(f"dataset {name!r} is being published or edited by another "
                                   "process; wait for it to finish and try again") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _loc(loc: tuple[Any, ...], document: Mapping[str, Any] | None) -> str:
    parts = [str(p) for p in loc]
    # columns.4.sensitivity -> columns.score.sensitivity: stewards know columns by name.
    if document is not None and len(loc) > 1 and loc[0] == "columns" and isinstance(loc[1], int):
        cols = document.get("columns")
        if isinstance(cols, list) and loc[1] < len(cols) and isinstance(cols[loc[1]], dict):
            parts[1] = str(cols[loc[1]].get("name", loc[1]))
    return ".".join(parts) or "(metadata)"


def validation_error(exc: ValidationError, where: str,
                     document: Mapping[str, Any] | None = None) -> InvalidInput:
    """A pydantic error as one InvalidInput naming each bad field, e.g. ``issued: ...``."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = _loc(err["loc"], document)
        msg = str(err["msg"]).removeprefix("Value error, ")
        given = err.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        problems.append({"field": loc, "message": msg + shown})
    lines = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return InvalidInput(f"{where}: {lines}", detail={"fields": problems})


def read_metadata(site_dir: Path, name: str) -> dict[str, Any]:
    """The dataset's metadata.json as a dict (not validated; see :func:`apply_metadata_changes`)."""
    if "/" in name or ".." in name or name.startswith("."):
        raise InvalidInput(f"{name!r} is not a dataset name")
    path = site_dir / "datasets" / name / "metadata.json"
    if not path.is_file():
        raise NotFound(f"dataset {name!r} is not published in {site_dir} (no {path}); publish "
                       "it first with ndl publish")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc}); publish the dataset again "
                           "to rewrite it") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} does not hold a JSON object")
    return data


def _is_list_field(path: str) -> bool:
    return path in _LIST_FIELDS


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["title=Beds", "themes=health,housing", "access.lead_time_days=30"]`` -> changes.

    Values stay text (the model converts numbers and dates) except JSON objects and lists,
    ``null`` (clears a field), and comma-separated lists for list fields.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"{item!r} is not FIELD=VALUE (e.g. licence=OGL-UK-3.0)")
        value: Any = raw
        if raw.strip()[:1] in ("[", "{") or raw.strip() == "null":
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise InvalidInput(f"{key}: {raw!r} is not valid JSON ({exc})") from None
        elif _is_list_field(key):
            value = [v.strip() for v in raw.split(",") if v.strip()]
        out[key] = value
    return out


def _set_column(meta: dict[str, Any], col: str, attr: str, value: Any) -> None:
    columns = meta.get("columns") or []
    target = next((c for c in columns if isinstance(c, dict) and c.get("name") == col), None)
    if target is None:
        names = ", ".join(str(c.get("name")) for c in columns if isinstance(c, dict))
        raise InvalidInput(f"columns.{col}: there is no column {col!r}; columns are {names}")
    if attr in _PROTECTED_COLUMN_FIELDS:
        raise InvalidInput(f"columns.{col}.{attr} cannot be edited: a column's {attr} comes "
                           "from the data; publish a new version to change it")
    target[attr] = value


def _merge_columns(meta: dict[str, Any], value: Any) -> None:
    if not isinstance(value, list):
        raise InvalidInput("columns: give a list of {name, ...changes} objects")
    for entry in value:
        if not isinstance(entry, dict) or "name" not in entry:
            raise InvalidInput("columns: each entry needs the name of an existing column")
        col = str(entry["name"])
        current = next((c for c in meta.get("columns") or []
                        if isinstance(c, dict) and c.get("name") == col), None)
        if current is None:
            _set_column(meta, col, "description", "")  # raises, naming the real columns
        elif "type" in entry and entry["type"] != current.get("type"):
            raise InvalidInput(f"columns.{col}.type cannot be edited: a column's type comes "
                               "from the data; publish a new version to change it")
        for attr, v in entry.items():
            if attr not in _PROTECTED_COLUMN_FIELDS:
                _set_column(meta, col, attr, v)


def _apply(meta: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] in PROTECTED_FIELDS:
        raise InvalidInput(f"{key} cannot be edited: it is set when the data is published; "
                           "publish a new version to change it")
    if parts[0] == "columns":
        if len(parts) == 1:
            _merge_columns(meta, value)
        elif len(parts) == 3:
            _set_column(meta, parts[1], parts[2], value)
        else:
            raise InvalidInput(f"{key}: give columns.COLUMN.FIELD, e.g. columns.age.unit=years")
        return
    node = meta
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise InvalidInput(f"{key}: {part} is not an object, so it has no fields")
        node = child
    node[parts[-1]] = value


def check_field_name(key: str) -> None:
    """Refuse a key that is not a metadata field (or ``columns.COL.FIELD``) before any work."""
    top = key.split(".")[0]
    if top in PROTECTED_FIELDS:
        return  # refused with a clearer message when applied
    if top not in DatasetMeta.model_fields and top != "columns":
        # DatasetMeta keeps unknown keys, so a typo would silently become a new field.
        known = ", ".join(sorted(DatasetMeta.model_fields))
        raise InvalidInput(f"{top!r} is not a metadata field; fields are {known}")
    if top == "columns" and key.count(".") == 2:
        attr = key.split(".")[2]
        if attr not in ColumnMeta.model_fields:
            raise InvalidInput(f"{key}: {attr!r} is not a column field; column fields are "
                               f"{', '.join(ColumnMeta.model_fields)}")


def apply_metadata_changes(site_dir: Path, name: str, changes: Mapping[str, Any]
                           ) -> DatasetMeta:
    """Apply ``changes`` to the dataset's metadata.json, validate, and replace it atomically.

    Raises InvalidInput naming each bad field (nothing is written), NotFound for an unknown
    dataset and Conflict while a publish of the same dataset is running.
    """
    if not changes:
        raise InvalidInput("no changes given; pass FIELD=VALUE pairs, e.g. licence=OGL-UK-3.0")
    for key in changes:
        check_field_name(str(key))
    with dataset_lock(site_dir, name, wait=10.0):
        current = read_metadata(site_dir, name)
        updated = copy.deepcopy(current)
        for key, value in changes.items():
            _apply(updated, str(key), value)
        try:
            meta = DatasetMeta.model_validate(updated)
        except ValidationError as exc:
            raise validation_error(exc, f"metadata for {name!r} not changed", updated) from None
        text = json.dumps(meta.model_dump(mode="json", exclude_none=True), indent=2,
                          ensure_ascii=False) + "\n"
        atomic_write_text(site_dir / "datasets" / name / "metadata.json", text)
    return meta

"""Publish a dataset whose rows Spark reads where they are (``ndl publish-source``).

Nothing is copied: the dataset's folder gets ``metadata.json`` (columns and types from the
source's schema, the steward's tags and fields) and ``source.json`` naming the Parquet file or
folder, or the Spark catalogue table (see :mod:`ndl.datasite.engines.source`). Only a datasite
started with ``--spark-master`` serves it. The same checks as ``ndl publish`` apply before
anything is written (name, tier, tags, metadata fields, an open dataset with a direct
identifier); the folder is written under a temporary name and renamed into place.

Delta tables are not supported: reading them needs jars fetched from Maven at run time.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ndl.catalogue.metadata import ColumnMeta, DatasetMeta
from ndl.core.errors import Conflict, InvalidInput
from ndl.datasite.engines.source import SOURCE_FILE, Source
from ndl.datasite.metadata_edit import (
    atomic_write_text,
    dataset_lock,
    staging_root,
    validation_error,
)
from ndl.datasite.publish import check_request

if TYPE_CHECKING:
    from ndl.datasite.engines.spark_engine import SparkEngine

# Spark's simple type names (DataType.simpleString) and Arrow's, to the catalogue's types.
_TYPES = {
    "tinyint": "integer", "smallint": "integer", "int": "integer", "bigint": "integer",
    "float": "float", "double": "float", "boolean": "boolean", "date": "date",
    "string": "string",
    "int8": "integer", "int16": "integer", "int32": "integer", "int64": "integer",
    "uint8": "integer", "uint16": "integer", "uint32": "integer", "bool": "boolean",
    "date32[day]": "date", "large_string": "string",
}


def arrow_columns(location: str) -> tuple[list[tuple[str, str]], int]:
    """(column name, type name) pairs and the row count of a local Parquet file or folder,
    from the footers alone."""
    import pyarrow.dataset as pads

    ds = pads.dataset(location, format="parquet")
    return [(f.name, str(f.type)) for f in ds.schema], int(ds.count_rows())


def spark_columns(engine: SparkEngine, source: Source) -> tuple[list[tuple[str, str]], int]:
    """The same, read by Spark (a catalogue table, or a path only the cluster sees)."""
    spark = engine.session()
    df = spark.table(source.table) if source.kind == "table" else \
        spark.read.parquet(source.location)
    return [(f.name, f.dataType.simpleString()) for f in df.schema.fields], int(df.count())


def publish_source(
    site_dir: Path, dataset: str, source: Source, columns: list[tuple[str, str]], rows: int,
    *, tier: str | None = None, title: str | None = None, description: str | None = None,
    publisher: str | None = None, sensitivity: Mapping[str, str] | None = None,
    join_keys: Mapping[str, str] | None = None, extras: Mapping[str, Any] | None = None,
    new_version: bool = False,
) -> DatasetMeta:
    """Write the dataset's metadata.json and source.json; return its metadata."""
    sensitivity, join_keys = dict(sensitivity or {}), dict(join_keys or {})
    check_request(site_dir, dataset, tier=tier, sensitivity=sensitivity, join_keys=join_keys,
                  meta=extras, new_version=new_version)
    target = site_dir / "datasets" / dataset
    if target.exists() and (target / "data.parquet").exists():
        raise Conflict(f"{dataset} holds its own data.parquet: publish the Spark source under "
                       "another --dataset name")
    names = [n for n, _ in columns]
    for given in (*sensitivity, *join_keys):
        if given not in names:
            raise InvalidInput(f"column {given!r} is not in {source.describe()}; its columns "
                               f"are {', '.join(names)}")
    bad = [f"{n} ({t})" for n, t in columns if t not in _TYPES]
    if bad:
        raise InvalidInput(f"these columns have types the catalogue cannot describe: "
                           f"{', '.join(bad)}; publish a view that casts them to string, "
                           "integer, float, boolean or date")
    tier = tier or "safeguarded"
    metas = [ColumnMeta(name=n, type=_TYPES[t],  # type: ignore[arg-type]
                        sensitivity=sensitivity.get(n, "none"),  # type: ignore[arg-type]
                        join_key=None if join_keys.get(n) in (None, "none")
                        else join_keys[n])  # type: ignore[arg-type]
             for n, t in columns]
    direct = [c.name for c in metas if c.sensitivity == "direct_identifier"]
    if tier == "open" and direct:
        raise InvalidInput(f"open data cannot hold direct identifiers ({', '.join(direct)}); "
                           "publish as --tier safeguarded or controlled")
    cfg_path = site_dir / "datasite.json"
    cfg = json.loads(cfg_path.read_text("utf-8")) if cfg_path.is_file() else {}
    publisher = publisher or cfg.get("name") or cfg.get("org")
    if not publisher:
        raise InvalidInput("give --publisher (e.g. 'Northshire NHS Foundation Trust'): this "
                           "datasite's datasite.json has no name to use")
    today = date.today().isoformat()
    document: dict[str, Any] = {
        "issued": today, "modified": today, **(extras or {}),
        "name": dataset, "publisher": publisher, "tier": tier,
        "title": title or dataset.replace("-", " ").capitalize(),
        "description": description or "",
        "columns": [c.model_dump(mode="json", exclude_none=True) for c in metas],
        "row_count": rows, "version": 1,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        meta = DatasetMeta.model_validate(document)
    except ValidationError as exc:
        raise validation_error(exc, f"metadata for {dataset!r} is not valid; nothing was "
                               "published", document) from None
    with dataset_lock(site_dir, dataset):
        _write(site_dir, dataset, meta, source, target)
    return meta


def _write(site_dir: Path, dataset: str, meta: DatasetMeta, source: Source, target: Path
           ) -> None:
    # Built beside the datasets (never matched as one), then renamed into place.
    staging = staging_root(site_dir) / f"{dataset}.source-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        atomic_write_text(staging / "metadata.json", json.dumps(
            meta.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False)
            + "\n")
        atomic_write_text(staging / SOURCE_FILE, json.dumps(source.to_json()) + "\n")
        if target.exists():
            for name in ("metadata.json", SOURCE_FILE):
                (staging / name).replace(target / name)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

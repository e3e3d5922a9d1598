"""Where a dataset's rows live when they are not the datasite's own ``data.parquet``.

A dataset registered for Spark keeps its rows where they are: a Parquet file or folder (any
path or URI Spark reads, e.g. ``hdfs://...``), or a table in the Spark catalogue. The datasite
records that in ``datasets/<name>/source.json`` beside ``metadata.json``::

    {"kind": "parquet", "location": "/data/warehouse/ae/"}
    {"kind": "table", "table": "warehouse.ae_attendances"}

A dataset with a ``source.json`` has no ``data.parquet``; only the Spark engine reads it.
Delta tables are not supported: reading them needs the Delta jars from Maven at run time,
which a datasite may not fetch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ndl.core.errors import InvalidInput

SOURCE_FILE = "source.json"
# A catalogue table: up to three dotted plain identifiers (catalog.database.table).
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}\Z")


@dataclass(frozen=True)
class Source:
    """A Spark-read dataset's rows: a Parquet ``location`` or a catalogue ``table``."""

    kind: Literal["parquet", "table"]
    location: str = ""
    table: str = ""

    def describe(self) -> str:
        return f"Parquet at {self.location}" if self.kind == "parquet" else \
            f"the Spark table {self.table}"

    def to_json(self) -> dict[str, str]:
        if self.kind == "parquet":
            return {"kind": "parquet", "location": self.location}
        return {"kind": "table", "table": self.table}


def parquet_source(location: str | Path) -> Source:
    """A Parquet file or folder; a local path is made absolute and must exist."""
    text = str(location)
    if "://" not in text:
        path = Path(text).expanduser().resolve()
        if not path.exists():
            raise InvalidInput(f"{text} does not exist: give the Parquet file or folder the "
                               "Spark workers read (a path they all see, or an hdfs:// URI)")
        text = str(path)
    elif text.split("://", 1)[0].lower() not in ("file", "hdfs"):
        raise InvalidInput(f"{text}: only local paths, file:// and hdfs:// are read here "
                           "(other stores need connector jars a datasite does not load)")
    return Source("parquet", location=text)


def table_source(name: str) -> Source:
    if not _TABLE.match(name):
        raise InvalidInput(f"{name!r} is not a table name: give it as table, database.table or "
                           "catalog.database.table with plain names")
    return Source("table", table=name)


def load_source(folder: Path) -> Source | None:
    """The source recorded in ``folder``, or None for a dataset held as ``data.parquet``."""
    path = folder / SOURCE_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text("utf-8"))
        kind = raw["kind"]
        if kind == "parquet":
            return Source("parquet", location=str(raw["location"]))
        if kind == "table":
            return table_source(str(raw["table"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path} is not a valid source: {exc}; write "
                           '{"kind": "parquet", "location": "..."} or '
                           '{"kind": "table", "table": "db.name"}') from exc
    raise InvalidInput(f"{path}: kind must be 'parquet' or 'table', not {kind!r} (Delta is "
                       "not supported: it needs jars a datasite does not load)")

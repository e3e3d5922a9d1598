"""Mock rows at the hub: stored as the datasite sent them, served to signed-in users.

The datasite synthesises mocks (``ndl.catalogue.mock``) next to the real data and sends only
the synthetic table; the hub checks it matches the published schema before keeping it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from ndl.catalogue.models import Dataset, DatasetMock
from ndl.core.csvsafe import csv_text
from ndl.core.db import utcnow
from ndl.core.errors import InvalidInput, NotFound
from ndl.core.jsonsafe import json_safe
from ndl.core.keys import SigningKey
from ndl.ledger import register

if TYPE_CHECKING:
    import pyarrow as pa

MAX_MOCK_BYTES = 1_500_000


def store_mock(session: Session, key: SigningKey, ds: Dataset, parquet: bytes, *,
               method: str) -> DatasetMock:
    if len(parquet) > MAX_MOCK_BYTES:
        raise InvalidInput(f"mock is {len(parquet):,} bytes; the limit is {MAX_MOCK_BYTES:,}")
    import pyarrow as pa  # here, not at import: the hub starts without pyarrow (~70 MB)
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(parquet))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"mock for {ds.id} is not a readable Parquet file: {exc}") from exc
    want = [c["name"] for c in ds.columns]
    if table.column_names != want:
        raise InvalidInput(f"mock columns {table.column_names} do not match the published "
                           f"schema {want}")
    mock = session.get(DatasetMock, ds.id)
    if mock is None:
        mock = DatasetMock(dataset_id=ds.id)
        session.add(mock)
    mock.version, mock.rows, mock.parquet = ds.version, table.num_rows, parquet
    mock.method, mock.created_at = method, utcnow()
    register.append(session, key, kind="mock.published", actor=f"datasite:{ds.datasite_id}",
                    subject=ds.id, payload={"version": ds.version, "rows": table.num_rows,
                                            "method": method})
    return mock


def get_mock(session: Session, dataset_id: str) -> DatasetMock:
    mock = session.get(DatasetMock, dataset_id)
    if mock is None:
        raise NotFound(f"{dataset_id} has no mock data yet; its datasite makes one when it "
                       "publishes a non-open dataset")
    session.expunge(mock)
    return mock


def read_rows(mock: DatasetMock, limit: int) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(mock.parquet)).slice(0, limit)


def to_json(table: pa.Table) -> dict[str, Any]:
    cols = table.column_names
    return {"columns": cols,
            "rows": [[json_safe(r[c]) for c in cols] for r in table.to_pylist()]}


def to_csv(table: pa.Table) -> bytes:
    """The rows as CSV through the one formula-safe writer (mock text comes from a datasite)."""
    cols = table.column_names
    rows = ([json_safe(r[c]) for c in cols] for r in table.to_pylist())
    return csv_text(cols, rows, quote_text=True).encode("utf-8")

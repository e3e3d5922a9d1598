"""Many datasites publishing at once, as when a federation starts: found by the load test
(bench/load_federation.py), where 20 datasites starting together failed on PostgreSQL."""

from __future__ import annotations

import io
import threading
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from ndl.access import accounts
from ndl.catalogue import mocks
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.models import Dataset, DatasetMock
from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.federation.models import Datasite

SITES = 8


def _meta(name: str) -> DatasetMeta:
    return DatasetMeta.model_validate({
        "name": name, "title": f"Wards {name}", "description": "Synthetic wards.",
        "publisher": "x", "tier": "open", "row_count": 3,
        "columns": [{"name": "ward", "type": "string"}, {"name": "n", "type": "integer"}]})


def _setup(db: Database) -> None:
    with db.write() as s:
        for i in range(SITES):
            accounts.create_org(s, f"org-{i}", f"Org {i}")
            s.add(Datasite(id=f"site-{i}", org_id=f"org-{i}", name=f"site {i}",
                           public_key=SigningKey.generate().public_b64))


def test_datasites_publishing_at_once_all_get_their_datasets(db_url: str) -> None:
    """A new dataset's number is max + 1: concurrent publications once took the same one
    (uq_datasets_num on PostgreSQL) and the datasites saw an internal error."""
    db = Database(db_url)
    db.migrate()
    _setup(db)
    key = SigningKey.generate()
    start = threading.Barrier(SITES)
    errors: list[BaseException] = []

    def publish(i: int) -> None:
        try:
            start.wait()
            with db.write() as s:
                site = s.get(Datasite, f"site-{i}")
                assert site is not None
                catalogue.publish(s, key, site, [_meta("wards"), _meta("people")])
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(SITES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with db.read() as s:
        nums = s.scalars(select(Dataset.num)).all()
    assert len(nums) == 2 * SITES and len(set(nums)) == 2 * SITES
    db.dispose()


def _parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"ward": ["A"], "n": [1]}), buf)
    return buf.getvalue()


def test_a_mock_whose_method_says_a_lot_is_kept(db_url: str) -> None:
    """The method names the privacy parameters, every column and the fabricated identifiers:
    a nine-column dataset's passed 200 characters, which PostgreSQL refused."""
    db = Database(db_url)
    db.migrate()
    _setup(db)
    key = SigningKey.generate()
    method = "independent per-column marginals learned with differential privacy; " * 12
    with db.write() as s:
        site = s.get(Datasite, "site-0")
        assert site is not None
        catalogue.publish(s, key, site, [_meta("wards")])
        ds = s.get(Dataset, "site-0/wards")
        assert ds is not None
        mocks.store_mock(s, key, ds, _parquet(), method=method)
    with db.read() as s:
        stored: Any = s.get(DatasetMock, "site-0/wards")
        assert stored is not None and stored.method == method and len(method) > 800
    db.dispose()

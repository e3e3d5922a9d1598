"""Where a Spark-read dataset lives (datasets/<name>/source.json): what is accepted, what is
refused with a fix, and how the datasite's store sees such a dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from ndl.core.errors import InvalidInput
from ndl.datasite.engines import make_engine
from ndl.datasite.engines.duckdb_engine import DuckDBEngine
from ndl.datasite.engines.source import (
    SOURCE_FILE,
    load_source,
    parquet_source,
    table_source,
)
from ndl.datasite.store import DatasiteStore
from ndl.testing import write_dataset


@pytest.mark.parametrize("name", ["wards", "db.wards", "cat.db.wards_2"])
def test_table_names_are_plain_dotted_identifiers(name: str) -> None:
    assert table_source(name).table == name


@pytest.mark.parametrize("name", ["a.b.c.d", "wards; DROP TABLE x", "`x`", "db..t", "",
                                  "parquet.`/etc/passwd`", "1abc"])
def test_other_table_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not a table name"):
        table_source(name)


def test_parquet_locations(tmp_path: Path) -> None:
    assert parquet_source(tmp_path).location == str(tmp_path.resolve())
    assert parquet_source("hdfs://nn:8020/lake/wards").location == "hdfs://nn:8020/lake/wards"
    with pytest.raises(InvalidInput, match="does not exist"):
        parquet_source(tmp_path / "nope")
    with pytest.raises(InvalidInput, match="connector jars"):
        parquet_source("s3a://bucket/wards")


def test_delta_and_broken_sources_are_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / SOURCE_FILE).write_text(json.dumps({"kind": "delta", "location": "/x"}))
    with pytest.raises(InvalidInput, match="Delta is not supported"):
        load_source(tmp_path)
    (tmp_path / SOURCE_FILE).write_text("{not json")
    with pytest.raises(InvalidInput, match='"kind": "parquet"'):
        load_source(tmp_path)
    (tmp_path / SOURCE_FILE).unlink()
    assert load_source(tmp_path) is None


def test_the_store_serves_a_source_dataset_without_data_parquet(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path, "wards", pa.table({"ward": ["A"]}), tier="open")
    lake = tmp_path / "lake"
    lake.mkdir()
    os.replace(folder / "data.parquet", lake / "part-0.parquet")
    store = DatasiteStore(tmp_path)
    with pytest.raises(InvalidInput, match=r"no data\.parquet"):
        store.dataset("wards")
    (folder / SOURCE_FILE).write_text(json.dumps(parquet_source(lake).to_json()))
    before = store.fingerprint()
    ds = store.dataset("wards")
    assert ds.source is not None and ds.source.location == str(lake.resolve())
    (folder / SOURCE_FILE).write_text(json.dumps(table_source("db.wards").to_json()))
    assert store.fingerprint() != before  # a moved source is republished
    # DuckDB serves only the datasite's own Parquet, and says how to serve this one.
    with pytest.raises(InvalidInput, match="--spark-master"):
        DuckDBEngine().count_by(store.dataset("wards"), [])
    with pytest.raises(InvalidInput, match="--spark-master"):
        store.mock_for(store.dataset("wards"))


def test_the_engine_by_its_option(tmp_path: Path) -> None:
    assert make_engine(tmp_path).name == "duckdb"
    with pytest.raises(InvalidInput, match="spark://HOST:PORT"):
        make_engine(tmp_path, "http://example.org")

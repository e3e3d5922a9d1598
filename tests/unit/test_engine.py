"""The datasite's DuckDB engine: right answers, and no reach beyond the one file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.core.errors import InvalidInput
from ndl.datasite import engine


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    p = tmp_path / "data.parquet"
    pq.write_table(pa.table({
        "region": ["a", "b", "a", None, "a"], 'we"ird col': [1, 1, 2, 2, 2],
    }), p)
    return p


def test_counts_match_a_direct_computation(parquet: Path) -> None:
    cols, rows = engine.count_by(parquet, ["region"], ["region", 'we"ird col'])
    assert cols == ["region", "n"]
    assert rows == [["a", 3], ["b", 1], [None, 1]]
    table = pq.read_table(parquet).to_pandas()
    assert sum(r[1] for r in rows) == len(table)


def test_total_count_and_quoted_names(parquet: Path) -> None:
    assert engine.count_by(parquet, [], ["region"]) == (["n"], [[5]])
    _, rows = engine.count_by(parquet, ['we"ird col'], ["region", 'we"ird col'])
    assert rows == [[1, 2], [2, 3]]


def test_unknown_column_is_refused_before_sql(parquet: Path) -> None:
    with pytest.raises(InvalidInput):
        engine.count_by(parquet, ["region); DROP"], ["region"])


def test_locked_connection_cannot_read_other_files_or_unlock(parquet: Path,
                                                             tmp_path: Path) -> None:
    other = tmp_path / "secret.parquet"
    pq.write_table(pa.table({"x": [42]}), other)
    con = engine.locked_connection(parquet)
    try:
        for sql in (f"SELECT * FROM read_parquet('{other}')",
                    "SELECT * FROM read_csv('/etc/passwd')",
                    "SET enable_external_access = true",
                    "INSTALL httpfs",
                    f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        assert con.execute("SELECT count(*) FROM read_parquet(?)",
                           [str(parquet)]).fetchone() == (5,)
    finally:
        con.close()

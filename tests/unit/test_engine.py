"""The datasite's DuckDB engine: right answers, and no reach beyond the one file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rfc8785

from ndl.core.errors import InvalidInput, PayloadTooLarge
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


# -- open SQL in this process (the sandbox's worker runs the same function) -------------------

def _run(parquet: Path, sql: str, limit: int = 100) -> tuple[list[str], list[list[object]], bool]:
    return engine.run_sql_here(parquet, sql, limit=limit, timeout=10)


def test_a_query_ending_in_a_comment_runs(parquet: Path) -> None:
    cols, rows, truncated = _run(parquet, "SELECT region FROM data WHERE region = 'b' -- why")
    assert (cols, rows, truncated) == (["region"], [["b"]], False)


def test_limit_and_truncation(parquet: Path) -> None:
    _, rows, truncated = _run(parquet, "SELECT * FROM data", limit=2)
    assert len(rows) == 2 and truncated is True
    _, rows, truncated = _run(parquet, "SELECT * FROM data", limit=5)
    assert len(rows) == 5 and truncated is False


def test_ordinary_analysis_sql_is_allowed(parquet: Path) -> None:
    sql = """
        WITH t AS (SELECT coalesce(region, '?') AS r, "we""ird col" AS w FROM data)
        SELECT upper(r) AS r, count(*) AS n, sum(w) AS s, round(avg(w), 2) AS a,
               row_number() OVER (ORDER BY r) AS k, list(w ORDER BY w)[1] AS first
        FROM t WHERE r IN (SELECT r FROM t) AND w BETWEEN 1 AND 2
        GROUP BY r ORDER BY r
    """
    _, rows, _ = _run(parquet, sql)
    assert rows == [["?", 1, 2, 2.0, 1, 2], ["A", 3, 5, 1.67, 2, 1], ["B", 1, 1, 1.0, 3, 1]]


def test_values_are_json_safe_by_the_documented_convention(parquet: Path) -> None:
    _, rows, _ = _run(parquet, (
        "SELECT 9007199254740993 AS big, 9007199254740991 AS ok, 'NaN'::DOUBLE AS nan, "
        "'-inf'::DOUBLE AS inf, 1.25::DECIMAL(9,2) AS d, "
        "170141183460469231731687303715884105727::HUGEINT AS huge, DATE '2024-03-31' AS day, "
        "INTERVAL 1 DAY AS i, '\\xAB'::BLOB AS b, map([1], ['x']) AS m, "
        "[1.5, 'NaN'::DOUBLE] AS l"))
    assert rows == [["9007199254740993", 9007199254740991, None, None, 1.25,
                     "170141183460469231731687303715884105727", "2024-03-31", "1 day, 0:00:00",
                     "ab", {"1": "x"}, [1.5, None]]]
    rfc8785.dumps(rows)  # what the datasite signs must not raise


def test_each_query_gets_its_own_temporary_folder_removed_afterwards(parquet: Path) -> None:
    temp_dir = Path(tempfile.mkdtemp(dir=engine.private_folder()))
    con = engine.open_unlocked(temp_dir)
    assert oct(engine.private_folder().stat().st_mode & 0o777) == "0o700"
    engine.run_sql_here(parquet, "SELECT count(*) FROM data", limit=1, timeout=5,
                        con=con, temp_dir=temp_dir)
    assert not temp_dir.exists()


def test_answers_too_large_to_send_are_refused_clearly(parquet: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="larger than 1,500,000 bytes"):
        _run(parquet, "SELECT repeat('x', 100000) FROM range(20)")


def test_scrub_hides_paths_home_and_version(parquet: Path) -> None:
    text = (f"IO Error: cannot open {parquet} or {Path.home()}/.duckdb/extensions/x "
            f"(DuckDB v{duckdb.__version__}) or /srv/other/file.parquet; 7 / 2 is fine\nline 2")
    out = engine.scrub(text, parquet)
    assert str(parquet.parent) not in out and str(Path.home()) + "/" not in out
    assert duckdb.__version__ not in out and "/srv" not in out and "line 2" not in out
    assert "7 / 2 is fine" in out


def test_locked_connections_load_and_install_no_extensions(parquet: Path) -> None:
    con = engine.locked_connection(parquet)
    try:
        settings = dict(con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ("
            "'autoload_known_extensions', 'autoinstall_known_extensions', "
            "'python_enable_replacements', 'lock_configuration', 'temp_directory')").fetchall())
    finally:
        con.close()
    assert settings["autoload_known_extensions"] == "false"
    assert settings["autoinstall_known_extensions"] == "false"
    assert settings["python_enable_replacements"] == "false"
    assert settings["lock_configuration"] == "true"
    assert settings["temp_directory"].startswith(str(engine.private_folder()))


def test_count_by_values_are_json_safe(tmp_path: Path) -> None:
    p = tmp_path / "f.parquet"
    pq.write_table(pa.table({"x": [float("nan"), 1.0, 1.0], "big": [2**60, 2**60, 1]}), p)
    _, rows = engine.count_by(p, ["x", "big"], ["x", "big"])
    assert rows == [[1.0, 1, 1], [1.0, str(2**60), 1], [None, str(2**60), 1]]

"""Engines a datasite computes with: DuckDB in this process (the default) or Spark.

See :mod:`ndl.datasite.engines.base` for the interface. Importing this package is cheap:
pyspark is imported only when a Spark engine is made.
"""

from __future__ import annotations

from pathlib import Path

from ndl.datasite.engines.base import ColumnProfile, DatasetProfile, Engine


def make_engine(root: Path, spark_master: str | None = None) -> Engine:
    """DuckDB, or Spark on ``spark_master`` with its folders under ``root/spark``."""
    if not spark_master:
        from ndl.datasite.engines.duckdb_engine import DuckDBEngine

        return DuckDBEngine()
    try:
        import pyspark  # noqa: F401 - only to say what is missing, here rather than later
    except ImportError as exc:
        from ndl.core.errors import InvalidInput

        raise InvalidInput("--spark-master needs pyspark: pip install 'ndl[spark]' (and Java "
                           "17)") from exc
    from ndl.datasite.engines.spark_engine import SparkEngine

    return SparkEngine(spark_master, root / "spark")


__all__ = ["ColumnProfile", "DatasetProfile", "Engine", "make_engine"]

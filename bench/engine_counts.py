"""Time one exact count (count_by region) on DuckDB and on Spark for the same Parquet file.

    .venv/bin/python bench/engine_counts.py --rows 2000000 --repeat 5

Spark runs on a standalone cluster started here (tests/spark_cluster.py: a master and two
workers on 127.0.0.1, 512 MB executors), with this process as the driver, as a datasite
started with --spark-master is. Prints the median of --repeat warm runs per engine, and the
first (cold) run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ndl.datasite.engines.duckdb_engine import DuckDBEngine
from ndl.datasite.engines.spark_engine import SparkEngine
from ndl.datasite.store import DatasiteStore
from ndl.testing import write_dataset
from spark_cluster import EXECUTOR_CONF, SparkCluster


def timed(fn: object, repeat: int) -> tuple[float, float]:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    cold = time.perf_counter() - t
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(time.perf_counter() - t)
    return cold, statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ndl-bench-engines-"))
    rng = np.random.default_rng(1)
    regions = np.array([f"region-{i}" for i in range(10)])
    write_dataset(root / "site", "counts", pa.table({
        "region": regions[rng.integers(0, 10, args.rows)],
        "age": rng.integers(0, 100, args.rows)}), tier="open")
    ds = DatasiteStore(root / "site").dataset("counts")
    duck = DuckDBEngine()
    cold, warm = timed(lambda: duck.count_by(ds, ["region"]), args.repeat)
    print(f"duckdb          rows={args.rows:,} cold={cold:.3f}s warm={warm:.3f}s")
    cluster = SparkCluster(root / "cluster").start()
    try:
        spark = SparkEngine(cluster.master_url, root / "driver", conf=EXECUTOR_CONF)
        t = time.perf_counter()
        spark.session()
        cluster.wait_for_workers()
        spark.prepare(True)
        print(f"spark start     session+executors={time.perf_counter() - t:.1f}s")
        assert spark.count_by(ds, ["region"]) == duck.count_by(ds, ["region"])
        cold, warm = timed(lambda: spark.count_by(ds, ["region"]), args.repeat)
        print(f"spark cluster   rows={args.rows:,} cold={cold:.3f}s warm={warm:.3f}s")
        sql = "SELECT region, count(*) AS n FROM data GROUP BY region ORDER BY region"
        _, warm_sql = timed(lambda: spark.run_sql(ds, sql, limit=100, timeout=60),
                            args.repeat)
        _, warm_dsql = timed(lambda: duck.run_sql(ds, sql, limit=100, timeout=60),
                             args.repeat)
        print(f"open SQL        duckdb={warm_dsql:.3f}s spark={warm_sql:.3f}s (warm)")
        spark.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()

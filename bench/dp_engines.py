"""A private (DP) aggregate answered by the Arrow path and by Spark, on the same Parquet data.

The query is the usual one for a safeguarded dataset with a person identifier: a count and a
mean of ``value`` (bounds [0, 100]) by ``region`` (the 9 English regions, a public code list),
each person first cut to ``k`` rows (``--k``, default 5), rho 1. The data is generated in
chunks of 1M rows, each written as its own Parquet file in a temporary folder, so memory stays
bounded whatever ``--rows``: about 3 rows per person, 1% of rows from 100 frequent attenders.

Each engine answers it ``--repeats`` times in the same run (p50 reported):

* **arrow**: what the datasite does today: ``pq.read_table(folder, columns=plan.columns)``
  then ``ndl.privacy.run`` (numpy; DuckDB only hashes non-integer identifiers). Read and
  run are also reported apart: the datasite keeps the last columns it read in memory
  (``ColumnCache``, up to 512 MB), so a repeated query on a small dataset pays only "run".
* **spark**: ``spark.read.parquet(folder)`` then ``ndl.privacy.dp_spark.run_spark`` on a
  session started once (``--master``, default ``local[2]``).

Where Spark's time goes, each phase timed around its own call:

* ``session``: starting the session (the JVM; once per process, not per query);
* ``read``: ``spark.read.parquet`` (lists the files, reads the schema);
* ``plan``: building the query's DataFrame in Python;
* ``scan``, ``bound``: two extra jobs run beside the query, to split its one job: the scan
  of the plan's columns alone, and the scan with filters, groups and the bounding window
  (``row_number() OVER (PARTITION BY person ORDER BY rand(seed)) <= k``), both to Spark's
  ``noop`` sink; ``window`` = bound - scan;
* ``job``: the query's own Spark job, scan to collected per-group vectors; ``aggregate +
  collect`` = job - bound;
* ``noise``: OpenDP's noise on the vectors and the result (the code the Arrow path runs).

    .venv/bin/python bench/dp_engines.py                       # 10M rows
    .venv/bin/python bench/dp_engines.py --rows 100000000 --repeats 2
    .venv/bin/python bench/dp_engines.py --master spark://host:7077 --json
    .venv/bin/python bench/dp_engines.py --engines spark \
        --conf spark.sql.optimizer.windowGroupLimitThreshold=-1

Spark plans the bounding window with a partial per-person limit before the shuffle (its
``WindowGroupLimit``), which costs a second sort of every row and pays off only where one
person has many rows in a partition (a flood: then it also keeps the shuffle from skewing);
the last line above measures the window without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ndl.catalogue.metadata import DatasetMeta
from ndl.demo._catalogue import ENGLISH_REGIONS
from ndl.privacy import check_query, parse_query, run

CHUNK = 1_000_000
VALUE_BOUNDS = (0, 100)
# Regional shares roughly like England's population, so groups differ in size.
REGION_SHARES = (0.047, 0.131, 0.097, 0.086, 0.105, 0.112, 0.155, 0.163, 0.104)
QUERY = {"dataset": "dp-bench", "rho": 1.0, "group_by": ["region"],
         "aggregates": [{"op": "count", "label": "n"},
                        {"op": "mean", "column": "value", "label": "mean_value"}]}


def meta(k: int) -> DatasetMeta:
    return DatasetMeta.model_validate({
        "name": "dp-bench", "title": "DP engines benchmark", "publisher": "Bench Trust",
        "tier": "safeguarded", "max_rows_per_person": k,
        "columns": [
            {"name": "region", "type": "string",
             "code_list": [{"code": r, "label": r} for r in ENGLISH_REGIONS]},
            {"name": "value", "type": "integer", "minimum": VALUE_BOUNDS[0],
             "maximum": VALUE_BOUNDS[1]},
            {"name": "person_id", "type": "integer", "join_key": "local_id",
             "sensitivity": "direct_identifier"},
        ]})


def generate(folder: Path, rows: int, seed: int = 0) -> int:
    """``rows`` rows as one Parquet file per 1M-row chunk; returns the bytes written."""
    rng = np.random.default_rng(seed)
    shares = np.asarray(REGION_SHARES) / sum(REGION_SHARES)
    regions = pa.array(ENGLISH_REGIONS)
    people = max(1, rows // 3)
    size = 0
    for i, start in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - start)
        pid = rng.integers(1, people + 1, size=n)
        frequent = rng.random(n) < 0.01
        pid[frequent] = rng.integers(people + 1, people + 101, size=int(frequent.sum()))
        table = pa.table({
            "region": regions.take(pa.array(rng.choice(len(ENGLISH_REGIONS), size=n, p=shares))),
            # Skewed values with a tail above the clamp bound, so clamping has work to do.
            "value": np.minimum(rng.gamma(2.0, 20.0, size=n), 400).astype(np.int64),
            "person_id": pid,
        })
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(table, path)
        size += path.stat().st_size
    return size


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_arrow(folder: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    m = meta(args.k)
    q = parse_query(QUERY)
    columns = check_query(q, m).columns
    out: dict[str, list[float]] = {"read": [], "run": [], "total": []}
    for i in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        table = pq.read_table(folder, columns=columns)
        t1 = time.perf_counter()
        res = run(q, table, m)
        t_read, t_run = t1 - t0, time.perf_counter() - t1
        assert [r[0] for r in res.rows] == list(ENGLISH_REGIONS)
        del table
        if i < args.warmup:
            continue
        out["read"].append(t_read)
        out["run"].append(t_run)
        out["total"].append(t_read + t_run)
    return out


def spark_session(master: str, driver_memory: str, conf: list[str] | None = None) -> Any:
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(master).appName("ndl-dp-engines")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "16"))
    if master.startswith("local"):
        builder = builder.config("spark.driver.memory", driver_memory)
    for item in conf or []:
        key, _, value = item.partition("=")
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def bench_spark(folder: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    from ndl.privacy.dp_spark import bounded_frame, run_spark

    m = meta(args.k)
    q = parse_query(QUERY)
    plan = check_query(q, m)
    t_session, spark = timed(lambda: spark_session(args.master, args.driver_memory, args.conf))
    out: dict[str, list[float]] = {k: [] for k in (
        "read", "plan", "scan", "bound", "job", "noise", "total")}
    out["session"] = [t_session]

    def noop(df: Any) -> None:
        df.write.format("noop").mode("overwrite").save()

    try:
        for r in range(args.warmup + args.repeats):
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            df = spark.read.parquet(str(folder))
            t1 = time.perf_counter()
            res = run_spark(q, df, m, timings=timings, rng_seed=r)
            t2 = time.perf_counter()
            assert [row[0] for row in res.rows] == list(ENGLISH_REGIONS)
            # The two extra jobs that split the query's one job into its parts.
            noop(df.select(*plan.columns))
            t3 = time.perf_counter()
            noop(bounded_frame(df, plan, seed=r))
            t4 = time.perf_counter()
            t_read, t_run, t_scan, t_bound = t1 - t0, t2 - t1, t3 - t2, t4 - t3
            if r < args.warmup:
                continue
            out["read"].append(t_read)
            out["plan"].append(timings["plan"])
            out["job"].append(timings["scalar"])
            out["noise"].append(timings["noise"])
            out["scan"].append(t_scan)
            out["bound"].append(t_bound)
            out["total"].append(t_read + t_run)
    finally:
        spark.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per engine first")
    ap.add_argument("--k", type=int, default=5, help="max rows per person")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="8g", help="local masters only")
    ap.add_argument("--engines", default="arrow,spark")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="a Spark setting, e.g. spark.sql.optimizer.windowGroupLimitThreshold"
                    "=-1 (no partial per-person limit, and its sort, before the shuffle)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    engines = args.engines.split(",")
    with tempfile.TemporaryDirectory(prefix="ndl-dp-engines-") as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        t_gen, size = timed(lambda: generate(folder, args.rows))
        print(f"generated {args.rows:,} rows in {len(list(folder.iterdir()))} Parquet files "
              f"({size / 2**20:.0f} MiB) in {t_gen:.1f} s", file=sys.stderr)
        results: dict[str, dict[str, list[float]]] = {}
        if "arrow" in engines:
            results["arrow"] = bench_arrow(folder, args)
        if "spark" in engines:
            results["spark"] = bench_spark(folder, args)
    report = {"rows": args.rows, "repeats": args.repeats, "k": args.k, "master": args.master,
              "spark_conf": args.conf,
              "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "p50_s": {e: {k: p50(v) for k, v in r.items()} for e, r in results.items()},
              "samples_s": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"\nDP count + mean(value) by region, k = {args.k}, {args.rows:,} rows, "
          f"p50 of {args.repeats} after {args.warmup} warm-up (seconds; {os.cpu_count()} "
          f"CPUs, load average {report['load_average'][0]:.1f} at the end)\n")
    print(f"{'rows':>12}  {'engine':<7} {'wall p50':>9}  where the time goes (p50)")
    if "arrow" in results:
        a = report["p50_s"]["arrow"]
        print(f"{args.rows:>12,}  {'arrow':<7} {a['total']:>9.2f}  read columns "
              f"{a['read']:.2f}, run (filter, bound, aggregate, noise) {a['run']:.2f}")
    if "spark" in results:
        s = report["p50_s"]["spark"]
        print(f"{args.rows:>12,}  {'spark':<7} {s['total']:>9.2f}  read.parquet {s['read']:.2f}, "
              f"plan {s['plan']:.2f}, job {s['job']:.2f} = scan {s['scan']:.2f} + window "
              f"{s['bound'] - s['scan']:.2f} + aggregate & collect {s['job'] - s['bound']:.2f}"
              f", noise {s['noise']:.3f}; session start {s['session']:.1f} (once, "
              f"{args.master})")
    if "arrow" in results and "spark" in results:
        ratio = report["p50_s"]["spark"]["total"] / report["p50_s"]["arrow"]["total"]
        print(f"\nspark / arrow wall time: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

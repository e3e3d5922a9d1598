"""Benchmark a differentially private query end to end: client -> hub -> datasite -> back.

Generates safeguarded datasets of 1M and 10M rows (``region`` with the 9 English regions as
its code list, an integer ``value`` with published bounds [0, 100]), starts a real ``ndl hub``
and a real ``ndl datasite`` on 127.0.0.1 (``ndl.testing``), grants an accredited researcher's
project, then times ``Client.private_query(..., sql=SQL, rho=...)`` with

    SELECT COUNT(*) AS n, SUM(LEAST(GREATEST(value, 0), 100)) AS total FROM data GROUP BY region

against the direct OpenDP call on the same data in the same process,
``ndl.privacy.run(from_sql(SQL, meta, rho=...), table, meta)``, twice: once on a table already
in memory ("direct") and once reading the Parquet columns first ("direct+read"), as the
datasite does for every query. It reports p50/p95 for each, the end-to-end / direct ratios and
whether the targets hold (end to end <= 1.5x the direct call; p50 <= 1 s at 10M rows).

The privacy unit is a row by default (the data has no person identifier); ``--person-level``
adds a ``person_id`` column (join key ``local_id``) so that each person is bounded to
``max_rows_per_person`` rows first, which costs a hash and a sort.

    .venv/bin/python bench/dp_latency.py                      # 1M and 10M rows, 20 queries each
    .venv/bin/python bench/dp_latency.py --rows 1000000 --queries 50 --json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from query_roundtrip import Stats, _timed, hub_database, machine
from sqlalchemy.engine import make_url

from ndl.catalogue.metadata import DatasetMeta
from ndl.client import Client
from ndl.core.errors import UpstreamTimeout, UpstreamUnavailable
from ndl.demo._catalogue import ENGLISH_REGIONS
from ndl.privacy import from_sql, run
from ndl.testing import DatasiteProcess, HubProcess, granted_project, stop_all, write_dataset

ORG = "bench-trust"
SQL = ("SELECT COUNT(*) AS n, SUM(LEAST(GREATEST(value, 0), 100)) AS total "
       "FROM data GROUP BY region")
VALUE_BOUNDS = (0, 100)
# Regional shares roughly like England's population, so groups differ in size.
REGION_SHARES = (0.047, 0.131, 0.097, 0.086, 0.105, 0.112, 0.155, 0.163, 0.104)
BLOCK = 5  # the series alternate in blocks of this many calls, to share the machine's drift
SETTLE_S = 0.05  # untimed pause between blocks so one series' tail does not spill over
READY_WAIT_S = 600.0  # the datasite tries to synthesise each mock before its first poll
TARGET_RATIO = 1.5
TARGET_P50_10M_MS = 1000.0


def make_dataset(site_root: Path, rows: int, *, person_level: bool, seed: int) -> Path:
    """A safeguarded dataset folder of ``rows`` rows with the public facts DP queries need."""
    rng = np.random.default_rng(seed)
    shares = np.asarray(REGION_SHARES) / sum(REGION_SHARES)
    region_idx = rng.choice(len(ENGLISH_REGIONS), size=rows, p=shares)
    # Skewed values with a tail above the clamp bound, so clamping has work to do.
    value = np.minimum(rng.gamma(2.0, 20.0, size=rows), 400).astype(np.int64)
    cols: dict[str, pa.Array] = {
        "region": pc.take(pa.array(ENGLISH_REGIONS), pa.array(region_idx)),
        "value": pa.array(value),
    }
    if person_level:
        # About 3 rows per person on average; 1% of rows belong to 100 frequent attenders.
        people = max(1, rows // 3)
        pid = rng.integers(1, people + 1, size=rows)
        frequent = rng.random(rows) < 0.01
        pid[frequent] = rng.integers(people + 1, people + 101, size=int(frequent.sum()))
        cols["person_id"] = pa.array(pid)
    name = f"dp-{_label(rows).lower()}"
    folder = write_dataset(site_root, name, pa.table(cols), tier="safeguarded",
                           title=f"DP benchmark, {rows:,} rows", publisher="Bench Trust",
                           description="Synthetic rows for the private query benchmark.")
    meta_path = folder / "metadata.json"
    meta = json.loads(meta_path.read_text("utf-8"))
    for col in meta["columns"]:
        if col["name"] == "region":
            col["code_list"] = [{"code": r, "label": r} for r in ENGLISH_REGIONS]
        elif col["name"] == "value":
            col["minimum"], col["maximum"] = VALUE_BOUNDS
        elif col["name"] == "person_id":
            col["join_key"], col["sensitivity"] = "local_id", "direct_identifier"
    meta_path.write_text(json.dumps(meta), "utf-8")
    return folder


def write_policy(folder: Path, rho: float, calls: int) -> None:
    """Instant grants for accredited researchers and a budget that the run cannot exhaust."""
    need = rho * calls
    if need > 100:  # the policy model caps per_researcher at 100
        raise SystemExit(f"--rho x calls = {need:g} exceeds a researcher's maximum budget of "
                         "100 on one dataset; lower --rho or --queries")
    (folder / "policy.yaml").write_text(
        "auto_approve: {}\nbudget:\n"
        f"  per_query: {max(rho, 0.5):g}\n  per_researcher: 100\n  per_project: 1000\n"
        "  total: 100000\n", "utf-8")


def _label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def wait_ready(client: Client, project: str, dataset_id: str) -> float:
    """Seconds until the datasite answers for the dataset (a budget look-up, which spends
    nothing): before its first poll it publishes and tries to synthesise every mock."""
    t0 = time.monotonic()
    while True:
        try:
            client.budget(dataset_id, project)
            return time.monotonic() - t0
        except (UpstreamTimeout, UpstreamUnavailable):
            if time.monotonic() - t0 > READY_WAIT_S:
                raise


def truth(table: pa.Table) -> dict[str, tuple[int, int]]:
    """Exact (count, clamped sum) per region, to check the noisy answers against."""
    clamped = pc.min_element_wise(pc.max_element_wise(table["value"], VALUE_BOUNDS[0]),
                                  VALUE_BOUNDS[1])
    t = pa.table({"region": table["region"], "v": clamped})
    g = t.group_by("region").aggregate([("v", "count"), ("v", "sum")]).to_pylist()
    return {r["region"]: (r["v_count"], r["v_sum"]) for r in g}


def check_answer(answer: dict[str, Any], exact: dict[str, tuple[int, int]], rho: float,
                 *, person_level: bool) -> None:
    """Every public group, in order, each within 10 noise scales of the exact value."""
    if answer["columns"] != ["region", "n", "total"]:
        raise AssertionError(f"unexpected columns {answer['columns']}")
    if [r[0] for r in answer["rows"]] != list(ENGLISH_REGIONS):
        raise AssertionError(f"groups differ: {[r[0] for r in answer['rows']]}")
    if abs(answer["rho_spent"] - rho) > 1e-9 * max(1.0, rho):
        raise AssertionError(f"spent rho {answer['rho_spent']} for {rho}")
    if person_level:
        return  # rows beyond a person's bound are dropped: the exact values do not apply
    scales = [a["noise_scale"] for a in answer["aggregates"]]
    for region, n, total in answer["rows"]:
        want_n, want_total = exact.get(region, (0, 0))
        if abs(n - want_n) > 10 * scales[0] or abs(total - want_total) > 10 * scales[1]:
            raise AssertionError(f"{region}: ({n}, {total}) vs exact ({want_n}, {want_total})"
                                 f" with noise scales {scales}")


def bench_dataset(client: Client, project: str, folder: Path, dataset_id: str,
                  args: argparse.Namespace) -> dict[str, Any]:
    parquet = folder / "data.parquet"
    meta = DatasetMeta.model_validate_json((folder / "metadata.json").read_text("utf-8"))
    columns = ["region", "value"] + (["person_id"] if args.person_level else [])
    table = pq.read_table(parquet, columns=columns)
    exact = truth(table)

    def end_to_end() -> None:
        answer = client.private_query(dataset_id, project=project, sql=SQL, rho=args.rho)
        check_answer(answer, exact, args.rho, person_level=args.person_level)

    def direct() -> None:
        run(from_sql(SQL, meta, rho=args.rho), table, meta)

    def direct_read() -> None:
        run(from_sql(SQL, meta, rho=args.rho), pq.read_table(parquet, columns=columns), meta)

    def read_only() -> None:
        pq.read_table(parquet, columns=columns)

    series: dict[str, Callable[[], None]] = {
        "end_to_end": end_to_end, "direct": direct, "direct_read": direct_read,
        "read": read_only,
    }
    for _ in range(args.warmup):
        for fn in series.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in series}
    for start in range(0, args.queries, BLOCK):
        size = min(BLOCK, args.queries - start)
        for k, fn in series.items():
            time.sleep(SETTLE_S)
            samples[k].extend(_timed(fn) for _ in range(size))
    stats = {k: Stats.of(v) for k, v in samples.items()}
    e2e = stats["end_to_end"]
    return {
        "dataset": dataset_id, "rows": table.num_rows,
        "parquet_mib": parquet.stat().st_size / 2**20,
        "stats_ms": {k: asdict(v) for k, v in stats.items()},
        "ratio_p50": e2e.p50 / stats["direct"].p50,
        "ratio_p95": e2e.p95 / stats["direct"].p95,
        "ratio_read_p50": e2e.p50 / stats["direct_read"].p50,
        "ratio_read_p95": e2e.p95 / stats["direct_read"].p95,
        "overhead_p50_ms": e2e.p50 - stats["direct_read"].p50,
    }


def run_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    site_root = tmp / "site"
    calls = args.warmup + args.queries
    folders: dict[int, Path] = {}
    t0 = time.monotonic()
    for i, rows in enumerate(args.rows):
        folders[rows] = make_dataset(site_root, rows, person_level=args.person_level,
                                     seed=11 + i)
        write_policy(folders[rows], args.rho, calls)
    generate_s = time.monotonic() - t0
    ids = {rows: f"{ORG}/{folder.name}" for rows, folder in folders.items()}

    hub: HubProcess | None = None
    site: DatasiteProcess | None = None
    results: list[dict[str, Any]] = []
    with hub_database(args.db, tmp) as db_url:
        try:
            hub = HubProcess(tmp / "hub", db_url)
            hub.create_org(ORG, "Bench Trust", "other")
            researcher = hub.create_user("bench-researcher", ["researcher"], accredited=True)
            steward = hub.create_user("bench-steward", ["steward"], org=ORG)
            hub.start()
            site = DatasiteProcess(site_root, hub.url, org=ORG, token=steward,
                                   poll_wait=args.poll_wait).start()
            project = granted_project(hub.url, researcher, list(ids.values()),
                                      title="DP latency benchmark")
            with Client(hub.url, researcher, timeout=120.0) as client:
                t0 = time.monotonic()
                for dataset_id in ids.values():
                    wait_ready(client, project, dataset_id)
                startup_s = time.monotonic() - t0
                for rows, folder in folders.items():
                    results.append(bench_dataset(client, project, folder, ids[rows], args))
        finally:
            stop_all(site, hub, show_logs=sys.exc_info()[0] is not None)

    big = [r for r in results if r["rows"] >= 10_000_000]
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine(),
        "versions": _versions(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "backend": make_url(hub.db.url).get_backend_name() if hub else "?",
        "sql": SQL, "rho": args.rho, "queries": args.queries, "warmup": args.warmup,
        "privacy_unit": "person (person_id)" if args.person_level else "row",
        "poll_wait": args.poll_wait, "generate_s": generate_s, "startup_s": startup_s,
        "results": results,
        "targets": {
            "ratio_le_1_5_vs_direct": all(r["ratio_p50"] <= TARGET_RATIO for r in results),
            "ratio_le_1_5_vs_direct_read": all(r["ratio_read_p50"] <= TARGET_RATIO
                                               for r in results),
            "p50_le_1s_at_10M": (all(r["stats_ms"]["end_to_end"]["p50"] <= TARGET_P50_10M_MS
                                     for r in big) if big else None),
        },
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("ndl", "opendp", "pyarrow", "numpy", "duckdb"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "?"
    return out


def report(r: dict[str, Any]) -> str:
    m, v = r["machine"], r["versions"]
    lines = [
        f"private query latency  {r['date']}  hub db={r['backend']}",
        f"machine: {m['cpus']} CPUs, {m['memory']}, {m['cpu']}, Python {m['python']}",
        f"versions: opendp {v['opendp']}, pyarrow {v['pyarrow']}, numpy {v['numpy']}",
        f"query: {r['sql']}",
        f"rho={r['rho']:g}, privacy unit: {r['privacy_unit']}; {r['queries']} timed calls per "
        f"series after {r['warmup']} warm-up calls, in alternating blocks of {BLOCK}",
        f"data generated in {r['generate_s']:.1f} s; datasite start-up until it answers "
        f"{r['startup_s']:.1f} s (untimed)",
    ]
    for res in r["results"]:
        lines += [
            "",
            f"{res['dataset']}: {res['rows']:,} rows, Parquet {res['parquet_mib']:.1f} MiB",
            f"  {'series (ms)':<12} {'p50':>9} {'p95':>9} {'p99':>9} {'mean':>9} "
            f"{'min':>9} {'max':>9}",
        ]
        for name, s in res["stats_ms"].items():
            lines.append(f"  {name:<12} {s['p50']:9.1f} {s['p95']:9.1f} {s['p99']:9.1f} "
                         f"{s['mean']:9.1f} {s['min']:9.1f} {s['max']:9.1f}")
        lines.append(
            f"  end to end / direct: p50 {res['ratio_p50']:.2f}x, p95 {res['ratio_p95']:.2f}x;"
            f"  / direct+read: p50 {res['ratio_read_p50']:.2f}x, p95 "
            f"{res['ratio_read_p95']:.2f}x; overhead over direct+read p50 "
            f"{res['overhead_p50_ms']:.1f} ms")
    t = r["targets"]

    def yn(x: bool | None) -> str:
        return "n/a" if x is None else ("met" if x else "NOT met")

    def per_size(key: str) -> str:
        return ", ".join(f"{_label(res['rows'])} {res[key]:.2f}x "
                         f"{yn(res[key] <= TARGET_RATIO)}" for res in r["results"])

    lines += [
        "",
        f"target end to end <= {TARGET_RATIO}x direct (p50): {per_size('ratio_p50')}; "
        f"vs direct+read: {per_size('ratio_read_p50')}",
        f"target p50 <= 1 s at 10M rows: {yn(t['p50_le_1s_at_10M'])}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000],
                   help="dataset sizes to generate and query")
    p.add_argument("--queries", type=int, default=20, help="timed calls per series")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per series first")
    p.add_argument("--rho", type=float, default=0.1, help="zCDP budget of each query")
    p.add_argument("--person-level", action="store_true",
                   help="add a person identifier, so the privacy unit is a person")
    p.add_argument("--db", default=None,
                   help="hub database: default SQLite in a temp dir; a postgresql+psycopg:// "
                        "URL names a server on which a throwaway database is created")
    p.add_argument("--poll-wait", type=float, default=20.0,
                   help="seconds each datasite long-poll waits (ndl datasite's default)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    args = p.parse_args(argv)
    if args.queries < 1 or args.warmup < 0 or any(n < 1000 for n in args.rows):
        p.error("--queries must be at least 1, --warmup at least 0, --rows at least 1000")
    if len(set(map(_label, args.rows))) != len(args.rows):
        p.error("--rows must be distinct sizes")
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: the hub and datasite get stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="ndl-bench-dp-") as tmp:
        result = run_bench(args, Path(tmp))
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark the query round trip: client -> hub -> datasite -> back.

Starts a real ``ndl hub`` and a real ``ndl datasite`` (``ndl.testing``) on 127.0.0.1 over
synthetic demo data, then times ``Client.query("nhs-trust/ae-attendances", count_by="region")``
against the direct call the datasite itself executes for it
(``ndl.datasite.engine.count_by``), in the same run, and reports the ratio of the p50s and the
overhead in milliseconds. Two reference points help read the overhead: one plain HTTP hop to
the hub (``GET /healthz``) and one envelope seal + open (Ed25519 sign + verify).

    .venv/bin/python bench/query_roundtrip.py                       # SQLite hub, 200 queries
    .venv/bin/python bench/query_roundtrip.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test

With a PostgreSQL ``--db`` the database named in the URL is only used to connect: the bench
creates a throwaway ``ndl_bench_<random>`` database on that server and drops it at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ndl.client import Client
from ndl.core.envelope import MemoryReplayGuard, open_envelope, seal
from ndl.core.keys import SigningKey
from ndl.datasite import engine
from ndl.demo.synth import ORGS, generate_demo_data
from ndl.testing import DatasiteProcess, HubProcess, stop_all

ORG = "nhs-trust"
DATASET = "ae-attendances"
GROUP_BY = "region"
BLOCK = 10  # direct and round-trip timings alternate in blocks of this many, to share drift
SETTLE_S = 0.05  # idle time between blocks (not timed) so one side's tail does not spill over


@dataclass(frozen=True)
class Stats:
    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    min: float
    max: float
    per_s: float

    @classmethod
    def of(cls, samples_ms: list[float]) -> Stats:
        s = sorted(samples_ms)
        return cls(n=len(s), p50=_pct(s, 50), p95=_pct(s, 95), p99=_pct(s, 99),
                   mean=sum(s) / len(s), min=s[0], max=s[-1], per_s=1000 * len(s) / sum(s))


def _pct(sorted_ms: list[float], p: float) -> float:
    """Percentile by linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_ms) - 1) * p / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text("utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text("utf-8").splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except (OSError, ValueError):
        pass
    return {"cpus": str(os.cpu_count()), "memory": mem, "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform()}


@contextmanager
def hub_database(url: str | None, tmp: Path) -> Iterator[str]:
    """SQLite in ``tmp`` by default; for PostgreSQL a throwaway database, dropped afterwards."""
    if url is None or "://" not in url or url.startswith("sqlite"):
        yield url or str(tmp / "hub" / "hub.db")
        return
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    name = f"ndl_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def check_answer(rows: list[list[Any]], direct: list[list[Any]]) -> None:
    """The hub's answer is the direct result with small groups suppressed (None)."""
    if [r[0] for r in rows] != [r[0] for r in direct]:
        raise AssertionError(f"groups differ: {rows} vs direct {direct}")
    for got, want in zip(rows, direct, strict=True):
        if got[1] is not None and got[1] != want[1]:
            raise AssertionError(f"count differs for {got[0]!r}: {got[1]} vs {want[1]}")


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    generate_demo_data(tmp / "data", people=args.people, seed=7)
    site_root = tmp / "data" / ORG
    ds_dir = site_root / "datasets" / DATASET
    parquet = ds_dir / "data.parquet"
    meta = json.loads((ds_dir / "metadata.json").read_text("utf-8"))
    columns = [c["name"] for c in meta["columns"]]
    # Exact counts answer open data only (ndl.core.tiers): the bench publishes its own copy of
    # the A&E data as open, so the timed rows and the round trip stay what they were.
    meta["tier"] = "open"
    (ds_dir / "metadata.json").write_text(json.dumps(meta), "utf-8")
    for policy in ds_dir.glob("policy.*"):
        policy.unlink()

    hub: HubProcess | None = None
    site: DatasiteProcess | None = None
    with hub_database(args.db, tmp) as db_url:
        try:
            hub = HubProcess(tmp / "hub", db_url)
            for org in ORGS:
                hub.create_org(org.slug, org.name, org.kind)
            researcher = hub.create_user("bench-researcher", ["researcher"], accredited=True)
            steward = hub.create_user("bench-steward", ["steward"], org=ORG)
            hub.start()
            site = DatasiteProcess(site_root, hub.url, org=ORG, token=steward,
                                   poll_wait=args.poll_wait).start()

            _, direct_rows = engine.count_by(parquet, [GROUP_BY], columns)
            key = SigningKey.generate()
            guard = MemoryReplayGuard()
            body = {"message_id": str(uuid.uuid4()), "dataset": DATASET,
                    "spec": {"op": "count", "by": [GROUP_BY]}}

            def envelope() -> None:
                env = seal(key, sender="hub", recipient=ORG, kind="query", body=body)
                open_envelope(env, public_key_for=lambda _s: key.public_b64, recipient=ORG,
                              guard=guard)

            with Client(hub.url, researcher) as client, httpx.Client(base_url=hub.url) as http:
                def round_trip() -> None:
                    answer = client.query(f"{ORG}/{DATASET}", count_by=GROUP_BY)
                    check_answer(answer.rows, direct_rows)

                def direct() -> None:
                    engine.count_by(parquet, [GROUP_BY], columns)

                def http_hop() -> None:
                    http.get("/healthz").raise_for_status()

                series: dict[str, Callable[[], None]] = {
                    "direct": direct, "round_trip": round_trip,
                    "http_hop": http_hop, "envelope": envelope,
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
        finally:
            stop_all(site, hub, show_logs=sys.exc_info()[0] is not None)

    stats = {k: Stats.of(v) for k, v in samples.items()}
    rt, dr = stats["round_trip"], stats["direct"]
    backend = make_url(hub.db.url).get_backend_name()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "backend": backend,
        "people": args.people, "rows": meta.get("row_count"), "groups": len(direct_rows),
        "queries": args.queries, "warmup": args.warmup, "poll_wait": args.poll_wait,
        "stats_ms": {k: asdict(v) for k, v in stats.items()},
        "ratio_p50": rt.p50 / dr.p50,
        "overhead_p50_ms": rt.p50 - dr.p50,
        "overhead_p95_ms": rt.p95 - dr.p95,
    }


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"query round trip  {r['date']}  backend={r['backend']}",
        f"machine: {m['cpus']} CPUs, {m['memory']}, {m['cpu']}, Python {m['python']}",
        f"data: {r['people']} people -> {r['rows']} rows in {ORG}/{DATASET}, "
        f"count by {GROUP_BY} -> {r['groups']} groups",
        f"{r['queries']} timed calls each after {r['warmup']} warm-up calls, "
        f"datasite poll_wait={r['poll_wait']:g} s",
        "",
        f"{'series (ms)':<12} {'p50':>8} {'p95':>8} {'p99':>8} {'mean':>8} {'min':>8} "
        f"{'max':>8} {'per s':>8}",
    ]
    for name, s in r["stats_ms"].items():
        lines.append(f"{name:<12} {s['p50']:8.2f} {s['p95']:8.2f} {s['p99']:8.2f} "
                     f"{s['mean']:8.2f} {s['min']:8.2f} {s['max']:8.2f} {s['per_s']:8.1f}")
    lines += [
        "",
        f"round trip / direct (p50): {r['ratio_p50']:.1f}x   "
        f"overhead: p50 {r['overhead_p50_ms']:.2f} ms, p95 {r['overhead_p95_ms']:.2f} ms",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--queries", type=int, default=200, help="timed calls per series")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per series first")
    p.add_argument("--people", type=int, default=2000, help="size of the synthetic population")
    p.add_argument("--db", default=None,
                   help="hub database: default SQLite in a temp dir; a postgresql+psycopg:// "
                        "URL names a server on which a throwaway database is created")
    p.add_argument("--poll-wait", type=float, default=20.0,
                   help="seconds each datasite long-poll waits (ndl datasite's default)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    args = p.parse_args(argv)
    if args.queries < 1 or args.warmup < 0 or args.people < 1:
        p.error("--queries and --people must be at least 1, --warmup at least 0")
    with tempfile.TemporaryDirectory(prefix="ndl-bench-") as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

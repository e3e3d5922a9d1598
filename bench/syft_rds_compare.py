"""Compare a private query through ndl with the same query as a syft-rds 0.6 job.

Both sides get the same generated Parquet (``dp_latency.make_dataset``: ``region`` over the
9 English regions, integer ``value``) and the same question, count and sum of ``value``
clamped to [0, 100] by region:

* **ndl**: ``Client.private_query(sql=dp_latency.SQL, rho=...)`` through a real ``ndl hub``
  and ``ndl datasite`` on 127.0.0.1, with an auto-approved grant (as in ``dp_latency.py``);
  the direct OpenDP call is timed too, for reference.
* **syft-rds**: ``bench/syft_rds/run_job.py`` in a separate virtual environment
  (``--syft-python``), on syft-rds's built-in mock Drive pair: submit a job, the owner syncs,
  approves, runs and shares it, the scientist syncs and reads the result.

The syft-rds side runs with no network at all (``unshare -n``: a fresh network namespace
with only a loopback device that is down) when that is available, which proves it
needs none. Target: ndl end to end at least 10x faster than the syft-rds job flow (p50).

    python3 -m venv /tmp/syft-venv && /tmp/syft-venv/bin/pip install 'syft-rds==0.6.1' pyarrow
    .venv/bin/python bench/syft_rds_compare.py --syft-python /tmp/syft-venv/bin/python
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from dp_latency import (
    ORG,
    SQL,
    check_answer,
    make_dataset,
    truth,
    wait_ready,
    write_policy,
)
from query_roundtrip import Stats, _timed, hub_database, machine

from ndl.catalogue.metadata import DatasetMeta
from ndl.client import Client
from ndl.privacy import from_sql, run
from ndl.testing import DatasiteProcess, HubProcess, granted_project, stop_all

HERE = Path(__file__).resolve().parent
RUN_JOB = HERE / "syft_rds" / "run_job.py"
DEFAULT_SYFT_PYTHON = "/tmp/syft-venv/bin/python"
TARGET_SPEEDUP = 10.0


def syft_ready(python: str) -> str | None:
    """None if ``python`` can import syft_rds, else why not."""
    if not Path(python).exists():
        return f"{python} does not exist"
    probe = subprocess.run([python, "-c", "import syft_rds"], capture_output=True, text=True,
                           timeout=120, check=False)
    return None if probe.returncode == 0 else probe.stderr.strip().splitlines()[-1]


def isolate_network() -> list[str]:
    """A prefix that runs a command with no network, if this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    ok = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False, timeout=10)
    return [unshare, "-n"] if ok.returncode == 0 else []


def run_ndl(args: argparse.Namespace, tmp: Path, folder: Path) -> dict[str, Any]:
    dataset_id = f"{ORG}/{folder.name}"
    parquet = folder / "data.parquet"
    meta = DatasetMeta.model_validate_json((folder / "metadata.json").read_text("utf-8"))
    table = pq.read_table(parquet, columns=["region", "value"])
    exact = truth(table)
    hub: HubProcess | None = None
    site: DatasiteProcess | None = None
    with hub_database(None, tmp) as db_url:
        try:
            hub = HubProcess(tmp / "hub", db_url)
            hub.create_org(ORG, "Bench Trust", "other")
            researcher = hub.create_user("bench-researcher", ["researcher"], accredited=True)
            steward = hub.create_user("bench-steward", ["steward"], org=ORG)
            hub.start()
            site = DatasiteProcess(folder.parent.parent, hub.url, org=ORG, token=steward,
                                   poll_wait=20.0).start()
            project = granted_project(hub.url, researcher, [dataset_id],
                                      title="syft-rds comparison")
            with Client(hub.url, researcher, timeout=120.0) as client:
                wait_ready(client, project, dataset_id)

                def end_to_end() -> None:
                    answer = client.private_query(dataset_id, project=project, sql=SQL,
                                                  rho=args.rho)
                    check_answer(answer, exact, args.rho, person_level=False)

                def direct_read() -> None:
                    run(from_sql(SQL, meta, rho=args.rho),
                        pq.read_table(parquet, columns=["region", "value"]), meta)

                series: dict[str, Callable[[], None]] = {"end_to_end": end_to_end,
                                                         "direct_read": direct_read}
                for _ in range(args.warmup):
                    for fn in series.values():
                        fn()
                samples: dict[str, list[float]] = {k: [] for k in series}
                for _ in range(args.queries):
                    for k, fn in series.items():
                        samples[k].append(_timed(fn))
        finally:
            stop_all(site, hub, show_logs=sys.exc_info()[0] is not None)
    return {k: asdict(Stats.of(v)) for k, v in samples.items()}


def run_syft(args: argparse.Namespace, parquet: Path) -> dict[str, Any]:
    prefix = [] if args.no_isolate else isolate_network()
    cmd = [*prefix, args.syft_python, str(RUN_JOB), "--parquet", str(parquet),
           "--jobs", str(args.queries), "--warmup", str(args.warmup)]
    # Its own process group, so a timeout stops the job runner's children as well.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise SystemExit(f"the syft-rds run took over {args.timeout} s: {shlex.join(cmd)}"
                         ) from None
    if proc.returncode != 0:
        raise SystemExit(f"the syft-rds run failed ({proc.returncode}): {shlex.join(cmd)}\n"
                         f"{err[-4000:]}")
    result: dict[str, Any] = json.loads(out)
    result["command"] = shlex.join(cmd)
    result["network"] = "none (unshare -n)" if prefix else "not isolated"
    result["stats_ms"] = {k: asdict(Stats.of(v)) for k, v in result["samples_ms"].items()}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of generated data")
    p.add_argument("--queries", type=int, default=10, help="timed queries / jobs per side")
    p.add_argument("--warmup", type=int, default=1, help="untimed queries / jobs first")
    p.add_argument("--rho", type=float, default=0.1, help="zCDP budget of each ndl query")
    p.add_argument("--syft-python", default=DEFAULT_SYFT_PYTHON,
                   help="the Python of a separate venv with syft-rds 0.6 and pyarrow")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds the whole syft-rds run may take")
    p.add_argument("--no-isolate", action="store_true",
                   help="do not run the syft-rds side in a network namespace")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    args = p.parse_args(argv)
    if args.queries < 1 or args.warmup < 0 or args.rows < 1000:
        p.error("--queries must be at least 1, --warmup at least 0, --rows at least 1000")
    why = syft_ready(args.syft_python)
    if why is not None:
        p.error(f"cannot run syft-rds with {args.syft_python}: {why}. Create its venv: "
                "python3 -m venv /tmp/syft-venv && /tmp/syft-venv/bin/pip install "
                "'syft-rds==0.6.1' pyarrow")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="ndl-bench-syftcmp-") as tmp_s:
        tmp = Path(tmp_s)
        folder = make_dataset(tmp / "site", args.rows, person_level=False, seed=11)
        write_policy(folder, args.rho, args.warmup + args.queries)
        t0 = time.monotonic()
        ndl = run_ndl(args, tmp, folder)
        ndl_s = time.monotonic() - t0
        t0 = time.monotonic()
        syft = run_syft(args, folder / "data.parquet")
        syft_s = time.monotonic() - t0
    e2e, job = ndl["end_to_end"], syft["stats_ms"]["total"]
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine(), "rows": args.rows, "queries": args.queries,
        "warmup": args.warmup, "rho": args.rho, "sql": SQL,
        "command": shlex.join([sys.executable, *sys.argv]),
        "ndl_ms": ndl, "ndl_wall_s": ndl_s, "syft": syft, "syft_wall_s": syft_s,
        "speedup_p50": job["p50"] / e2e["p50"], "speedup_p95": job["p95"] / e2e["p95"],
    }
    result["target_met"] = result["speedup_p50"] >= TARGET_SPEEDUP
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


def report(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["syft"]
    v = s["versions"]
    lines = [
        f"ndl private query vs syft-rds job  {r['date']}",
        f"machine: {m['cpus']} CPUs, {m['memory']}, {m['cpu']}, Python {m['python']}",
        f"data: {r['rows']:,} rows; {r['queries']} timed queries / jobs per side after "
        f"{r['warmup']} warm-up",
        f"syft side: syft-rds {v['syft-rds']}, syft {v['syft']}, syft-job {v['syft-job']}, "
        f"syft-dataset {v['syft-dataset']}, pyarrow {v['pyarrow']}; network: {s['network']}",
        f"  {s['transport']}; {s['job']}",
        "",
        f"{'series (ms)':<28} {'p50':>9} {'p95':>9} {'mean':>9} {'min':>9} {'max':>9}",
    ]

    def row(name: str, st: dict[str, float]) -> None:
        lines.append(f"{name:<28} {st['p50']:9.1f} {st['p95']:9.1f} {st['mean']:9.1f} "
                     f"{st['min']:9.1f} {st['max']:9.1f}")

    row("ndl end to end (DP)", r["ndl_ms"]["end_to_end"])
    row("ndl direct+read (DP)", r["ndl_ms"]["direct_read"])
    row("syft-rds job, end to end", s["stats_ms"]["total"])
    for stage in ("submit", "owner_sync", "approve", "run", "scientist_sync", "read"):
        row(f"  {stage}", s["stats_ms"][stage])
    lines += [
        "",
        f"syft-rds / ndl: p50 {r['speedup_p50']:.1f}x, p95 {r['speedup_p95']:.1f}x  "
        f"(target >= {TARGET_SPEEDUP:g}x: {'met' if r['target_met'] else 'NOT met'})",
        f"syft-rds setup (pair + dataset) {s['setup_s']:.2f} s, untimed; a fresh Python "
        f"importing syft and pyarrow alone takes {s['python_import_syft_ms']:.0f} ms (median "
        "of 3), inside every job's run stage",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

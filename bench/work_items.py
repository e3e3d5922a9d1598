"""Benchmark work items: 1,000 small exports queued at once, end to end, and the short query
round trip before and after work items (issue 10).

Work items. Starts a real ``ndl hub`` and a real ``ndl datasite`` (``ndl.testing``) on
127.0.0.1 with one small open dataset (500 rows by default), then queues N export work items
(``POST /api/work {kind: "export", dataset, params: {format, limit}}``) as fast as a few
concurrent submitters can, waits until every item is final, and fetches every result
(``GET /api/work/{id}/result``), checking its SHA-256 against the one the hub names, its size,
and its contents against the source rows. By default every item is different (CSV or Parquet,
``limit`` 1..rows), so no two results are the same blob; ``--identical`` queues the same export
N times. It prints the submit rate (202s per second), the end-to-end throughput (items per
second from the first submit to the last final state), per-item times to final (the hub's own
``created_at``/``started_at``/``finished_at``), the count of each final state and the fetch
rate. It exits non-zero unless every item was accepted, succeeded and arrived whole.

Round trip before and after. ``bench/query_roundtrip.py``'s measurement
(``Client.query("nhs-trust/ae-attendances", count_by="region")`` over its demo data, against
the direct ``engine.count_by``) for two source trees at once: ``--before`` (default
``/tmp/ndl-before``, made with ``git worktree add --detach /tmp/ndl-before 1657b96``, the
commit before work items began) and ``--after`` (default: this repository). Each tree gets
a child process of this script with the tree's ``src`` first on ``PYTHONPATH``, which starts
that tree's hub and datasite (``ndl.testing`` passes the environment on) and times blocks of
calls on request; the blocks alternate ABBA between the trees, so load from other work on the
machine falls on both alike. It prints both sides' p50/p95, the after/before ratio, and the
CPU time the hub, the datasite and the client each used per round trip (which process a
slowdown lives in).

    .venv/bin/python bench/work_items.py                        # both parts
    .venv/bin/python bench/work_items.py --no-roundtrip         # work items only
    .venv/bin/python bench/work_items.py --no-work --queries 400  # round trip only
    .venv/bin/python bench/work_items.py --no-work --before /tmp/wt-a --after /tmp/wt-b

The load average is printed at the start and after each part: read the figures with it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import query_roundtrip as qr
from query_roundtrip import Stats, machine

from ndl.testing import DatasiteProcess, HubProcess, stop_all, write_dataset

ORG = "bench-site"
DATASET = "bench-open"
REPO = Path(__file__).resolve().parents[1]
FINAL = frozenset({"succeeded", "failed", "cancelled", "expired"})


def load() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- the dataset and the items ----------------------------------------------------------------

def open_table(rows: int) -> pa.Table:
    """A small deterministic open table: text, whole numbers, decimals, dates, flags."""
    regions = ["North East", "North West", "Yorkshire", "East Midlands", "West Midlands",
               "East of England", "London", "South East", "South West"]
    return pa.table({
        "id": pa.array(range(1, rows + 1), pa.int64()),
        "region": pa.array([regions[i % len(regions)] for i in range(rows)], pa.string()),
        "visits": pa.array([(i * 37) % 101 for i in range(rows)], pa.int64()),
        "rate": pa.array([round((i * 13 % 997) / 7.0, 4) for i in range(rows)], pa.float64()),
        "day": pa.array([dt.date(2026, 1, 1) + dt.timedelta(days=i % 365) for i in range(rows)],
                        pa.date32()),
        "weekend": pa.array([i % 7 in (5, 6) for i in range(rows)], pa.bool_()),
    })


def item_params(i: int, rows: int, identical: bool) -> dict[str, Any]:
    """Item ``i``'s export: all different by default (format x limit), so no two results are
    one blob; ``identical`` asks the same whole CSV every time."""
    if identical:
        return {"format": "csv"}
    return {"format": ("csv", "parquet")[i % 2], "limit": 1 + (i // 2) % rows}


# -- submit, wait, fetch --------------------------------------------------------------------

@dataclass
class Submitted:
    index: int
    params: dict[str, Any]
    wall_sent: float        # time.time() just before the POST
    latency_ms: float       # the POST's round trip
    work_id: str | None = None
    error: str | None = None


async def submit_all(url: str, token: str, params: list[dict[str, Any]], submitters: int
                     ) -> tuple[list[Submitted], float]:
    """POST every item with ``submitters`` concurrent connections; returns the records and the
    span in seconds from the first POST sent to the last answer received."""
    counter = itertools.count()
    out: list[Submitted] = []
    limits = httpx.Limits(max_connections=submitters, max_keepalive_connections=submitters)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=120.0, limits=limits) as http:
        async def submitter() -> None:
            while (i := next(counter)) < len(params):
                wall, t0 = time.time(), time.perf_counter()
                try:
                    r = await http.post("/api/work", json={
                        "kind": "export", "dataset": f"{ORG}/{DATASET}", "params": params[i]})
                except httpx.HTTPError as exc:
                    out.append(Submitted(i, params[i], wall, (time.perf_counter() - t0) * 1e3,
                                         error=f"{type(exc).__name__}: {exc}"))
                    continue
                rec = Submitted(i, params[i], wall, (time.perf_counter() - t0) * 1e3)
                wid = r.json().get("id") if r.status_code == 202 else None
                if r.status_code == 202 and r.headers.get("location") == f"/api/work/{wid}":
                    rec.work_id = str(wid)
                else:
                    rec.error = f"HTTP {r.status_code} Location={r.headers.get('location')}: " \
                                f"{r.text[:200]}"
                out.append(rec)

        t0 = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(submitters)))
        span = time.perf_counter() - t0
    out.sort(key=lambda s: s.index)
    return out, span


def wait_final(http: httpx.Client, ids: list[str], *, timeout: float, interval: float
               ) -> tuple[dict[str, dict[str, Any]], bool]:
    """Wait until every item is final, asking the hub as little as possible (the hub shares
    the machine with this script, and listing 1,000 items twice a second cost it more CPU
    than the work itself): one small ``GET /api/work/{id}`` per ``interval`` for the oldest
    item not yet final (the hub leases oldest first), moving on at once past final ones.

    Returns the last view of each item and whether all were final before ``timeout``. The
    per-item times come from the hub's own timestamps, so this polling does not blur them.
    """
    views: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending:
        r = http.get(f"/api/work/{pending[0]}")
        r.raise_for_status()
        views[pending[0]] = r.json()
        if views[pending[0]]["state"] in FINAL:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            return views, False
        time.sleep(interval)
    return views, True


@dataclass
class Fetched:
    work_id: str
    ok: bool
    size: int = 0
    problem: str = ""


def check_content(data: bytes, params: dict[str, Any], table: pa.Table) -> str:
    """'' if ``data`` is the export ``params`` asks of ``table``; else what is wrong."""
    want = table.slice(0, params.get("limit") or table.num_rows)
    if params["format"] == "parquet":
        got = pq.read_table(io.BytesIO(data))
        return "" if got.equals(want) else f"Parquet differs ({got.num_rows} rows)"
    got = pacsv.read_csv(io.BytesIO(data))
    if got.column_names != want.column_names:
        return f"CSV header {got.column_names} is not {want.column_names}"
    if got.num_rows != want.num_rows:
        return f"CSV has {got.num_rows} rows, not {want.num_rows}"
    if got.column("id").to_pylist() != want.column("id").to_pylist():
        return "CSV ids differ"
    return ""


async def fetch_all(url: str, token: str, items: list[tuple[str, dict[str, Any], dict[str, Any]]],
                    table: pa.Table, fetchers: int) -> tuple[list[Fetched], float]:
    """GET every result, hashing it as it streams; check hash, ETag, size and contents."""
    queue = iter(items)
    out: list[Fetched] = []
    limits = httpx.Limits(max_connections=fetchers, max_keepalive_connections=fetchers)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=120.0, limits=limits) as http:
        async def fetcher() -> None:
            for wid, params, result in queue:
                h, buf = hashlib.sha256(), bytearray()
                try:
                    async with http.stream("GET", f"/api/work/{wid}/result") as r:
                        if r.status_code != 200:
                            await r.aread()
                            out.append(Fetched(wid, False, problem=f"HTTP {r.status_code}: "
                                                                  f"{r.text[:200]}"))
                            continue
                        etag = r.headers.get("etag", "").strip('"')
                        async for chunk in r.aiter_bytes():
                            h.update(chunk)
                            buf += chunk
                except httpx.HTTPError as exc:
                    out.append(Fetched(wid, False, problem=f"{type(exc).__name__}: {exc}"))
                    continue
                digest = h.hexdigest()
                problem = ""
                if digest != result["sha256"]:
                    problem = f"SHA-256 {digest} is not the named {result['sha256']}"
                elif etag and etag != digest:
                    problem = f"ETag {etag} is not the SHA-256 {digest}"
                elif len(buf) != result["size"]:
                    problem = f"{len(buf)} bytes, not the named {result['size']}"
                else:
                    problem = check_content(bytes(buf), params, table)
                out.append(Fetched(wid, not problem, len(buf), problem))

        t0 = time.perf_counter()
        await asyncio.gather(*(fetcher() for _ in range(fetchers)))
        span = time.perf_counter() - t0
    return out, span


def _when(iso: str | None) -> float | None:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else None


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _stats(values_ms: list[float]) -> dict[str, Any] | None:
    return Stats.of(values_ms).__dict__ if values_ms else None


def run_work(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    site_root = tmp / "site"
    table = open_table(args.rows)
    write_dataset(site_root, DATASET, table, tier="open", title="Bench open data",
                  publisher="Bench Trust", description="Generated rows for bench/work_items.py")
    params = [item_params(i, args.rows, args.identical) for i in range(args.items)]
    hub: HubProcess | None = None
    site: DatasiteProcess | None = None
    failed = True
    try:
        hub = HubProcess(tmp / "hub")
        hub.create_org(ORG, "Bench Trust")
        researcher = hub.create_user("bench-researcher", ["researcher"], accredited=True)
        steward = hub.create_user("bench-steward", ["steward"], org=ORG)
        hub.start()
        site = DatasiteProcess(site_root, hub.url, org=ORG, token=steward,
                               poll_wait=args.poll_wait).start()
        assert hub.proc is not None and site.proc is not None
        procs = {"hub": psutil.Process(hub.proc.pid), "datasite": psutil.Process(site.proc.pid)}
        auth = {"Authorization": f"Bearer {researcher}"}
        with httpx.Client(base_url=hub.url, headers=auth, timeout=120.0) as http:
            # One export first, untimed: the dataset is in the catalogue and the whole path
            # (lease, export, blob upload, finish, fetch) works before anything is timed.
            t0 = time.perf_counter()
            warm_id = ""
            while not warm_id:
                r = http.post("/api/work", json={"kind": "export", "dataset": f"{ORG}/{DATASET}",
                                                 "params": {"format": "csv"}})
                if r.status_code == 202:
                    warm_id = r.json()["id"]
                elif r.status_code == 404 and time.perf_counter() - t0 < 60:
                    time.sleep(0.5)  # the datasite's catalogue is not at the hub yet
                else:
                    raise SystemExit(f"the warm-up export was refused: HTTP {r.status_code} "
                                     f"{r.text[:300]}")
            views, done = wait_final(http, [warm_id], timeout=120, interval=0.1)
            warm = views.get(warm_id, {})
            if not done or warm.get("state") != "succeeded":
                raise SystemExit(f"the warm-up export did not succeed: {warm}")
            got = http.get(f"/api/work/{warm_id}/result")
            if got.status_code != 200 or hashlib.sha256(got.content).hexdigest() != \
                    warm["result"]["sha256"]:
                raise SystemExit(f"the warm-up result did not arrive whole: HTTP "
                                 f"{got.status_code} {got.text[:300]}")
            warm_s = time.perf_counter() - t0

            load_before = load()
            cpu0 = {k: _cpu(p) for k, p in procs.items()}
            first_sent = time.time()
            subs, submit_span = asyncio.run(
                submit_all(hub.url, researcher, params, args.submitters))
            accepted = [s for s in subs if s.work_id]
            views, all_final = wait_final(
                http, [s.work_id for s in accepted if s.work_id], timeout=args.timeout,
                interval=args.poll_interval)
            observed_done = time.time()
            cpu1 = {k: _cpu(p) for k, p in procs.items()}
            load_after = load()

        states: dict[str, int] = {}
        for s in accepted:
            st = views.get(str(s.work_id), {}).get("state", "unknown")
            states[st] = states.get(st, 0) + 1
        errors: dict[str, int] = {}
        for v in views.values():
            if v.get("error"):
                key = f"{v['error'].get('code')}: {v['error'].get('message', '')[:120]}"
                errors[key] = errors.get(key, 0) + 1

        to_final, queued, running = [], [], []
        finished_at = []
        for s in accepted:
            v = views.get(str(s.work_id), {})
            c, st, fin = _when(v.get("created_at")), _when(v.get("started_at")), \
                _when(v.get("finished_at"))
            if c is not None and fin is not None:
                to_final.append((fin - c) * 1e3)
                finished_at.append(fin)
            if c is not None and st is not None:
                queued.append((st - c) * 1e3)
            if st is not None and fin is not None:
                running.append((fin - st) * 1e3)
        last_final = max(finished_at, default=observed_done)

        fetched: list[Fetched] = []
        fetch_span = 0.0
        if args.fetch and accepted:
            todo = [(str(s.work_id), s.params, views[str(s.work_id)]["result"])
                    for s in accepted
                    if views.get(str(s.work_id), {}).get("state") == "succeeded"]
            fetched, fetch_span = asyncio.run(
                fetch_all(hub.url, researcher, todo, table, args.fetchers))
        failed = False
    finally:
        stop_all(site, hub, show_logs=failed)

    bad_fetch = [f for f in fetched if not f.ok]
    n_ok = states.get("succeeded", 0)
    return {
        "items": args.items, "rows": args.rows, "identical": args.identical,
        "submitters": args.submitters, "fetchers": args.fetchers,
        "poll_interval_s": args.poll_interval, "poll_wait_s": args.poll_wait,
        "warmup_export_s": warm_s,
        "load_before_submit": load_before, "load_after_final": load_after,
        "accepted": len(accepted), "refused": len(subs) - len(accepted),
        "refusals": sorted({str(s.error) for s in subs if s.error})[:5],
        "submit_span_s": submit_span, "submit_rate": len(accepted) / submit_span,
        "submit_latency_ms": _stats([s.latency_ms for s in subs]),
        "all_final": all_final,
        "states": states, "errors": errors,
        "e2e_span_s": last_final - first_sent,
        "e2e_rate": n_ok / (last_final - first_sent) if last_final > first_sent else 0.0,
        "observed_span_s": observed_done - first_sent,
        "time_to_final_ms": _stats(to_final),
        "queued_ms": _stats(queued), "running_ms": _stats(running),
        "cpu_s": {k: cpu1[k] - cpu0[k] for k in cpu0},
        "fetched": len(fetched), "fetch_ok": len(fetched) - len(bad_fetch),
        "fetch_problems": [f"{f.work_id}: {f.problem}" for f in bad_fetch[:5]],
        "fetch_span_s": fetch_span,
        "fetch_rate": len(fetched) / fetch_span if fetch_span else 0.0,
        "fetch_bytes": sum(f.size for f in fetched),
        "ok": (len(accepted) == args.items and all_final and n_ok == args.items
               and (not args.fetch or (len(fetched) == n_ok and not bad_fetch))),
    }


# -- the query round trip, before and after -------------------------------------------------
#
# Both trees' hub and datasite run at the same time, each driven by a child process of this
# script started with that tree's src first on PYTHONPATH (so the client, the hub and the
# datasite are all that tree's code). The parent asks each child in turn for a block of timed
# calls, alternating ABBA, so load from other work on a shared machine falls on both sides
# alike: comparing two separate runs minutes apart on a loaded machine is mostly noise.

def _tree_env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDL_")}
    env["NDL_ALLOW_HTTP_LOOPBACK"] = "1"  # both trees' hubs are on loopback, over http://
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), *filter(None, [
        os.environ.get("PYTHONPATH")])])
    return env


def describe_tree(tree: Path) -> dict[str, str]:
    """The commit a tree is at and whether its src has uncommitted changes."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(tree), *a], capture_output=True, text=True,
                              check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    return {"tree": str(tree), "commit": git("rev-parse", "--short", "HEAD"),
            "subject": git("log", "-1", "--format=%s")[:80],
            "src_changes": f"{len(dirty.splitlines())} uncommitted" if dirty else "clean"}


def rt_child(people: int, poll_wait: float, warmup: int) -> int:
    """Child mode: query_roundtrip.py's set-up (its data, open tier, count by region) with
    this PYTHONPATH's ndl; then one JSON line of timings per "N" read on stdin."""
    import ndl
    from ndl.client import Client
    from ndl.datasite import engine
    from ndl.demo.synth import ORGS, generate_demo_data

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but the protocol on the real stdout
    with tempfile.TemporaryDirectory(prefix="ndl-bench-rt-") as name:
        tmp = Path(name)
        generate_demo_data(tmp / "data", people=people, seed=7)
        site_root = tmp / "data" / qr.ORG
        ds_dir = site_root / "datasets" / qr.DATASET
        parquet = ds_dir / "data.parquet"
        meta = json.loads((ds_dir / "metadata.json").read_text("utf-8"))
        columns = [c["name"] for c in meta["columns"]]
        meta["tier"] = "open"  # as query_roundtrip.py: exact counts answer open data only
        (ds_dir / "metadata.json").write_text(json.dumps(meta), "utf-8")
        for policy in ds_dir.glob("policy.*"):
            policy.unlink()
        hub: HubProcess | None = None
        site: DatasiteProcess | None = None
        failed = True
        try:
            hub = HubProcess(tmp / "hub")
            for org in ORGS:
                hub.create_org(org.slug, org.name, org.kind)
            researcher = hub.create_user("bench-researcher", ["researcher"], accredited=True)
            steward = hub.create_user("bench-steward", ["steward"], org=qr.ORG)
            hub.start()
            site = DatasiteProcess(site_root, hub.url, org=qr.ORG, token=steward,
                                   poll_wait=poll_wait).start()
            _, direct_rows = engine.count_by(parquet, [qr.GROUP_BY], columns)
            assert hub.proc is not None and site.proc is not None
            procs = {"hub": psutil.Process(hub.proc.pid),
                     "datasite": psutil.Process(site.proc.pid), "client": psutil.Process()}
            with Client(hub.url, researcher) as client:
                def round_trip() -> None:
                    answer = client.query(f"{qr.ORG}/{qr.DATASET}", count_by=qr.GROUP_BY)
                    qr.check_answer(answer.rows, direct_rows)

                def direct() -> None:
                    engine.count_by(parquet, [qr.GROUP_BY], columns)

                for _ in range(warmup):
                    round_trip()
                    direct()
                out.write(json.dumps({"ready": True, "ndl": ndl.__file__}) + "\n")
                out.flush()
                for line in sys.stdin:
                    if not line.strip().isdigit():
                        break
                    n = int(line)
                    cpu0 = {k: _cpu(p) for k, p in procs.items()}
                    rt = [qr._timed(round_trip) for _ in range(n)]
                    cpu = {k: _cpu(p) - cpu0[k] for k, p in procs.items()}
                    time.sleep(qr.SETTLE_S)
                    dr = [qr._timed(direct) for _ in range(n)]
                    out.write(json.dumps({"round_trip": rt, "direct": dr, "cpu": cpu}) + "\n")
                    out.flush()
            failed = False
        finally:
            stop_all(site, hub, show_logs=failed)
    return 0


class RtChild:
    def __init__(self, side: str, tree: Path, args: argparse.Namespace, logdir: Path) -> None:
        self.side, self.tree = side, tree
        self.log_path = logdir / f"roundtrip-{side}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--rt-child",
             "--people", str(args.people), "--poll-wait", str(args.poll_wait),
             "--warmup", str(args.warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=_tree_env(tree), cwd=tempfile.gettempdir())

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise SystemExit(f"the {self.side} round-trip child ({self.tree}) stopped "
                             f"({self.proc.returncode}):\n"
                             f"{self.log_path.read_text('utf-8', 'replace')[-3000:]}")
        got: dict[str, Any] = json.loads(line)
        return got

    def ready(self) -> str:
        hello = self._read()
        where = str(hello["ndl"])
        if not Path(where).resolve().is_relative_to((self.tree / "src").resolve()):
            raise SystemExit(f"the {self.side} child imported ndl from {where}, not "
                             f"{self.tree / 'src'}")
        return where

    def block(self, n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_roundtrips(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    info = {side: describe_tree(t) for side, t in trees.items()}
    kids: dict[str, RtChild] = {}
    samples: dict[str, dict[str, list[float]]] = {
        side: {"round_trip": [], "direct": []} for side in trees}
    cpu_s: dict[str, dict[str, float]] = {side: {} for side in trees}
    blocks = -(-args.queries // qr.BLOCK)
    try:
        for side, tree in trees.items():
            kids[side] = RtChild(side, tree, args, tmp)
        for side, kid in kids.items():
            info[side]["ndl"] = kid.ready()
        load_start = load()
        for b in range(blocks):
            n = min(qr.BLOCK, args.queries - b * qr.BLOCK)
            order = ("before", "after") if b % 2 == 0 else ("after", "before")  # ABBA
            for side in order:
                time.sleep(qr.SETTLE_S)
                got = kids[side].block(n)
                for k in samples[side]:
                    samples[side][k].extend(got[k])
                for k, v in got["cpu"].items():
                    cpu_s[side][k] = cpu_s[side].get(k, 0.0) + v
    finally:
        for kid in kids.values():
            kid.close()
    stats = {side: {k: Stats.of(v) for k, v in s.items()} for side, s in samples.items()}
    return {
        "trees": info, "queries": args.queries, "warmup": args.warmup, "block": qr.BLOCK,
        "people": args.people, "load_start": load_start, "load_end": load(),
        "stats_ms": {side: {k: v.__dict__ for k, v in s.items()} for side, s in stats.items()},
        "after_over_before_p50": stats["after"]["round_trip"].p50
        / stats["before"]["round_trip"].p50,
        "after_over_before_p95": stats["after"]["round_trip"].p95
        / stats["before"]["round_trip"].p95,
        "after_over_before_mean": stats["after"]["round_trip"].mean
        / stats["before"]["round_trip"].mean,
        "rt_over_direct_p50": {side: s["round_trip"].p50 / s["direct"].p50
                               for side, s in stats.items()},
        # CPU time each process used during the timed round trips, per round trip
        "cpu_ms_per_query": {side: {k: 1e3 * v / args.queries for k, v in c.items()}
                             for side, c in cpu_s.items()},
    }


# -- report --------------------------------------------------------------------------------

def _row(name: str, s: dict[str, Any] | None) -> str:
    if s is None:
        return f"  {name:<24} (none)"
    return (f"  {name:<24} p50 {s['p50']:9.1f}  p95 {s['p95']:9.1f}  p99 {s['p99']:9.1f}  "
            f"max {s['max']:9.1f}")


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"work items bench  {r['date']}",
             f"machine: {m['cpus']} CPUs, {m['memory']}, {m['cpu']}, Python {m['python']}",
             f"load average (1/5/15 min) at start: {r['load_start']}"]
    if r["load_start"][0] > 2:
        lines.append("  NOTE: load > 2 - other work is running here; rerun when quieter")
    rt = r.get("roundtrip")
    if rt:
        lines += ["", f"query round trip, before and after: {rt['queries']} calls per side in "
                  f"blocks of {rt['block']}, alternating ABBA, both stacks up at once "
                  f"(load {rt['load_start']} -> {rt['load_end']}):"]
        for side, t in rt["trees"].items():
            lines.append(f"  {side:<6} {t['commit']} ({t['src_changes']}) {t['subject']}")
        lines.append(f"  {'series (ms)':<20} {'p50':>8} {'p95':>8} {'p99':>8} {'mean':>8}")
        for side in ("before", "after"):
            for k, s in rt["stats_ms"][side].items():
                lines.append(f"  {side + ' ' + k:<20} {s['p50']:8.2f} {s['p95']:8.2f} "
                             f"{s['p99']:8.2f} {s['mean']:8.2f}")
        lines += [
            f"  round trip after/before: p50 {rt['after_over_before_p50']:.3f}x, "
            f"p95 {rt['after_over_before_p95']:.3f}x, mean {rt['after_over_before_mean']:.3f}x",
            f"  round trip / direct (p50): before {rt['rt_over_direct_p50']['before']:.1f}x, "
            f"after {rt['rt_over_direct_p50']['after']:.1f}x",
            "  CPU ms per round trip: " + "; ".join(
                f"{side} " + ", ".join(f"{k} {v:.1f}" for k, v in c.items())
                for side, c in rt["cpu_ms_per_query"].items()),
        ]
    w = r.get("work")
    if w:
        lines += [
            "", f"work items: {w['items']} exports of {ORG}/{DATASET} ({w['rows']} rows), "
            + ("all the same whole CSV" if w["identical"] else
               "each different (CSV/Parquet x limit 1..rows)")
            + f"; {w['submitters']} submitters, {w['fetchers']} fetchers, "
            f"oldest unfinished item polled every {w['poll_interval_s']:g} s",
            f"  warm-up export (untimed) took {w['warmup_export_s']:.2f} s; "
            f"load before submit {w['load_before_submit']}, after final {w['load_after_final']}",
            f"  accepted (202) {w['accepted']}, refused {w['refused']}"
            + (f": {w['refusals']}" if w["refused"] else ""),
            f"  submit rate: {w['submit_rate']:.1f} items/s ({w['accepted']} in "
            f"{w['submit_span_s']:.2f} s)",
            _row("submit POST (ms)", w["submit_latency_ms"]),
            f"  end to end: {w['e2e_rate']:.1f} items/s ({w['states'].get('succeeded', 0)} "
            f"succeeded, first submit to last final {w['e2e_span_s']:.2f} s; seen by polling "
            f"after {w['observed_span_s']:.2f} s)",
            _row("time to final (ms)", w["time_to_final_ms"]),
            _row("  to started_at (ms)", w["queued_ms"]),
            _row("  started_at to final", w["running_ms"]),
            "  (the hub stamps started_at at the first heartbeat or, for work done between two "
            "heartbeats, at finish)",
            f"  states: {w['states']}" + ("" if w["all_final"] else "  (NOT ALL FINAL)"),
        ]
        if w["errors"]:
            lines.append(f"  errors: {w['errors']}")
        lines.append("  CPU seconds during submit+wait: " + ", ".join(
            f"{k} {v:.1f} s ({v / max(w['accepted'], 1) * 1e3:.1f} ms/item)"
            for k, v in w["cpu_s"].items()))
        if w["fetched"]:
            lines.append(f"  fetched {w['fetched']} results ({w['fetch_bytes'] / 1e6:.2f} MB) "
                         f"in {w['fetch_span_s']:.2f} s: {w['fetch_rate']:.1f} items/s; "
                         f"SHA-256, size and contents ok: {w['fetch_ok']}")
        for p in w["fetch_problems"]:
            lines.append(f"    {p}")
        lines.append("  RESULT: " + ("all succeeded and arrived whole" if w["ok"] else
                                     "FAILED (see above)"))
    lines.append(f"\nload average at end: {r['load_end']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--items", type=int, default=1000, help="work items to queue")
    p.add_argument("--rows", type=int, default=500, help="rows in the open dataset")
    p.add_argument("--submitters", type=int, default=4, help="concurrent submitting connections")
    p.add_argument("--fetchers", type=int, default=4, help="concurrent result fetches")
    p.add_argument("--identical", action="store_true",
                   help="queue the same whole-CSV export every time (one shared result blob)")
    p.add_argument("--no-fetch", dest="fetch", action="store_false",
                   help="skip fetching and checking the results")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds to wait for every item to be final")
    p.add_argument("--poll-interval", type=float, default=0.5,
                   help="seconds between status polls of the oldest unfinished item")
    p.add_argument("--poll-wait", type=float, default=20.0, help="datasite long-poll seconds")
    p.add_argument("--no-work", dest="work", action="store_false", help="skip the work items")
    p.add_argument("--no-roundtrip", dest="roundtrip", action="store_false",
                   help="skip the before/after query round trip")
    p.add_argument("--before", type=Path, default=Path("/tmp/ndl-before"),
                   help="the tree before work items (git worktree add --detach "
                        "/tmp/ndl-before 1657b96)")
    p.add_argument("--after", type=Path, default=REPO,
                   help="the tree after (default: this checkout); another worktree compares "
                        "two commits")
    p.add_argument("--queries", type=int, default=200, help="timed round trips per tree")
    p.add_argument("--warmup", type=int, default=10, help="untimed round trips per tree first")
    p.add_argument("--people", type=int, default=2000,
                   help="round-trip data: query_roundtrip.py's synthetic population")
    p.add_argument("--rt-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    args = p.parse_args(argv)
    if args.rt_child:
        return rt_child(args.people, args.poll_wait, args.warmup)
    if args.items < 1 or args.rows < 1 or args.submitters < 1 or args.fetchers < 1 \
            or args.queries < 1 or args.people < 1:
        p.error("--items, --rows, --submitters, --fetchers, --queries and --people must be "
                "at least 1")
    for tree in (args.before, args.after) if args.roundtrip else ():
        if not (tree / "bench" / "query_roundtrip.py").exists():
            p.error(f"{tree} is not a checkout with bench/query_roundtrip.py: make one with "
                    "'git worktree add --detach /tmp/ndl-before 1657b96' and pass its path")

    result: dict[str, Any] = {
        "date": _now(), "machine": machine(), "load_start": load(),
        "command": shlex.join([sys.executable, *sys.argv]),
    }
    with tempfile.TemporaryDirectory(prefix="ndl-bench-work-") as tmp:
        if args.roundtrip:
            result["roundtrip"] = run_roundtrips(args, Path(tmp))
        if args.work:
            result["work"] = run_work(args, Path(tmp))
    result["load_end"] = load()
    result["date_end"] = _now()
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0 if not args.work or result["work"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

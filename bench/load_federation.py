"""A bounded load test of a whole federation: many researchers, 20 datasites, 1 or N hub processes.

Starts real processes on 127.0.0.1 only: one PostgreSQL database (a throwaway one on the
server given by ``--db``), ``ndl hub --workers N`` over it, and ``--sites`` datasites, each
serving a copy of the demo's open ``ward-population`` and safeguarded ``ae-attendances``
(with a budget large enough never to run out). Then ``--researchers`` concurrent researchers
(asyncio + httpx, signed in, each with a project granted on every safeguarded dataset) mix
catalogue searches, exact counts and open SQL on open data, and private (DP) queries on
safeguarded data, for ``--seconds`` after a short warm-up, against each hub size in
``--workers`` in turn. It stops by itself and prints throughput, p50/p95 per kind and the
errors (there should be none).

    .venv/bin/python bench/load_federation.py                       # 20 sites, 1 vs 2 hubs
    .venv/bin/python bench/load_federation.py --workers 1 2 --seconds 60 --researchers 32

Each hub size gets a fresh hub database and fresh datasites, so neither run warms the other's
caches. The datasites run on the same 2 cores as the hub and the load generator: the figures
are of a whole federation on one small machine, not of the hub alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query_roundtrip import _pct, hub_database, machine

from ndl.demo.synth import generate_demo_data
from ndl.testing import DatasiteProcess, HubProcess, granted_project, stop_all

OPEN, SAFE = "ward-population", "ae-attendances"
POLICY = ("auto_approve: {}\nbudget:\n  per_query: 1.0\n  per_researcher: 100\n"
          "  per_project: 1000\n  total: 1000\n")
SEARCHES = ["population", "attendances", "ward", "emergency", "age", "children", "school",
            "region", "hospital", "london"]
PRIVATE_SQL = "SELECT COUNT(*) AS n, AVG(age_at_arrival) AS mean_age FROM data GROUP BY region"
OPEN_SQL = "SELECT age_band, SUM(population) AS people FROM data GROUP BY age_band"
# What each researcher does next, by weight: mostly looking, then asking.
MIX = [("search", 40), ("count", 25), ("open_sql", 20), ("private", 15)]


@dataclass
class Tally:
    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def make_sites(root: Path, n: int) -> list[Path]:
    """``n`` datasite folders, each with its own copy of the two demo datasets."""
    demo = root / "demo"
    generate_demo_data(demo, people=1500, seed=11)
    sites = []
    for i in range(n):
        site = root / "sites" / f"site-{i + 1:02d}"
        for org, name in (("local-authority", OPEN), ("nhs-trust", SAFE)):
            shutil.copytree(demo / org / "datasets" / name, site / "datasets" / name)
        (site / "datasets" / SAFE / "policy.yaml").write_text(POLICY, "utf-8")
        meta_path = site / "datasets" / OPEN / "metadata.json"
        meta = json.loads(meta_path.read_text("utf-8"))
        meta["title"] = f"{meta['title']} ({site.name})"
        meta_path.write_text(json.dumps(meta), "utf-8")
        sites.append(site)
    return sites


async def researcher(base: str, token: str, project: str, sites: list[str], until: float,
                     warm_until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        while (now := time.monotonic()) < until:
            kind = rng.choices(kinds, weights)[0]
            site = rng.choice(sites)
            t0 = time.perf_counter()
            try:
                if kind == "search":
                    r = await http.get("/api/datasets", params={"q": rng.choice(SEARCHES)})
                elif kind == "count":
                    r = await http.post(f"/api/datasets/{site}/{OPEN}/query",
                                        json={"op": "count", "by": ["age_band"]})
                elif kind == "open_sql":
                    r = await http.post(f"/api/datasets/{site}/{OPEN}/sql",
                                        json={"sql": OPEN_SQL, "limit": 100})
                else:
                    r = await http.post(f"/api/datasets/{site}/{SAFE}/private-query",
                                        json={"project": project, "sql": PRIVATE_SQL,
                                              "rho": 0.001})
                ok = r.status_code == 200
                why = "" if ok else f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                ok, why = False, repr(exc)
            ms = (time.perf_counter() - t0) * 1000
            if now < warm_until:
                continue
            if ok:
                tally.ms[kind].append(ms)
            else:
                tally.errors[kind].append(why)


def run_size(args: argparse.Namespace, tmp: Path, workers: int) -> dict[str, Any]:
    sites = make_sites(tmp, args.sites)
    hub: HubProcess | None = None
    procs: list[DatasiteProcess] = []
    with hub_database(args.db, tmp) as db_url:
        try:
            hub = HubProcess(tmp / "hub", db_url,
                             extra_args=["--workers", str(workers)] if workers > 1 else [])
            stewards = {}
            for site in sites:
                hub.create_org(site.name, site.name, "nhs")
                stewards[site.name] = hub.create_user(f"steward-{site.name}", ["steward"],
                                                      org=site.name)
            tokens = [hub.create_user(f"researcher-{i}", ["researcher"], accredited=True)
                      for i in range(args.accounts)]
            hub.start()
            t0 = time.monotonic()
            for site in sites:
                procs.append(DatasiteProcess(site, hub.url, org=site.name,
                                             token=stewards[site.name], poll_wait=20).start(
                                                 wait_online=False))
            for p in procs:
                p.wait_online(timeout=300)
            started = time.monotonic() - t0
            names = [s.name for s in sites]
            # Wait for every dataset to be published before asking for grants on them.
            deadline = time.monotonic() + 120
            waiting = [f"/api/datasets/{n}/{d}" for n in names for d in (OPEN, SAFE)]
            while waiting and time.monotonic() < deadline:
                waiting = [w for w in waiting
                           if httpx.get(hub.url + w, timeout=30).status_code != 200]
                time.sleep(0.5)
            if waiting:
                Path("/tmp/ndl-load-hub.log").write_text(hub.log(), "utf-8")
                stuck = next(p for p in procs if f"/{p.id}/" in waiting[0])
                raise RuntimeError(f"not published after 120 s: {waiting}\n"
                                   f"{stuck.id}'s log ends:\n{stuck.log()[-3000:]}\n"
                                   f"the hub's log ends:\n{hub.log()[-20000:]}")
            projects = [granted_project(hub.url, tok, [f"{n}/{SAFE}" for n in names])
                        for tok in tokens]
            tally = Tally()

            async def load() -> float:
                begin = time.monotonic()
                warm_until = begin + args.warmup
                until = warm_until + args.seconds
                await asyncio.gather(*(
                    researcher(hub.url if hub else "", tokens[i % len(tokens)],
                               projects[i % len(tokens)], names, until, warm_until, tally, i)
                    for i in range(args.researchers)))
                return time.monotonic() - warm_until

            measured = asyncio.run(load())
        finally:
            stop_all(*procs, hub)
    total = sum(len(v) for v in tally.ms.values())
    errors = sum(len(v) for v in tally.errors.values())
    per_kind = {k: {"n": len(v), "p50": _pct(sorted(v), 50), "p95": _pct(sorted(v), 95)}
                for k, v in sorted(tally.ms.items()) if v}
    everything = sorted(x for v in tally.ms.values() for x in v)
    return {"workers": workers, "sites_started_s": round(started, 1), "seconds": measured,
            "requests": total, "errors": errors, "throughput": total / measured,
            "p50": _pct(everything, 50) if everything else None,
            "p95": _pct(everything, 95) if everything else None, "per_kind": per_kind,
            "error_samples": {k: v[:3] for k, v in tally.errors.items()}}


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    m = machine()
    lines = [f"load_federation {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {args.sites} "
             f"datasites, {args.researchers} concurrent researchers, {args.seconds:g} s each; "
             f"{m['cpus']} CPUs ({m['cpu']}), {m['memory']}",
             "",
             "| hub processes | requests/s | p50 ms | p95 ms | errors | search p50/p95 | "
             "count p50/p95 | open SQL p50/p95 | private p50/p95 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cells = []
        for kind in ("search", "count", "open_sql", "private"):
            k = r["per_kind"].get(kind)
            cells.append(f"{k['p50']:.0f} / {k['p95']:.0f}" if k else "-")
        p50, p95 = (f"{r[k]:.0f}" if r[k] is not None else "-" for k in ("p50", "p95"))
        lines.append(f"| {r['workers']} | {r['throughput']:.1f} | {p50} | {p95} | "
                     f"{r['errors']} | " + " | ".join(cells) + " |")
    if len(results) > 1 and results[0]["throughput"]:
        lines.append("")
        lines.append(f"throughput {results[-1]['workers']} / {results[0]['workers']} hub "
                     f"processes: {results[-1]['throughput'] / results[0]['throughput']:.2f}x")
    for r in results:
        if r["errors"]:
            lines.append(f"errors with {r['workers']} processes: {r['error_samples']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                    help="a PostgreSQL server to make a throwaway database on")
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--researchers", type=int, default=32, help="concurrent researchers")
    ap.add_argument("--accounts", type=int, default=8, help="researcher accounts they share")
    ap.add_argument("--seconds", type=float, default=45.0, help="measured time per hub size")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    results = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="ndl-load-") as tmp:
            print(f"... {workers} hub process(es): starting {args.sites} datasites",
                  file=sys.stderr)
            results.append(run_size(args, Path(tmp), workers))
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), "utf-8")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())

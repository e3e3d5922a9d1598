"""Benchmark the controlled tier: submit -> released output in hand, against syft-rds 0.6.

The ndl side starts a real ``ndl hub`` and a real ``ndl datasite`` (``ndl.testing``, SQLite
hub, strict bubblewrap sandbox) on 127.0.0.1. The datasite holds a **controlled** copy of the
pupils table the peer uses. An accredited researcher has a project granted that dataset. Before
the timing a data steward approves the job's code once (a review by hand; that job is then
output-checked and downloaded like the others, untimed). Then each timed run is:

1. the researcher submits the SAME bundle (``POST /api/jobs``); the dataset's policy runs code
   already approved for the project at once (``auto_approved``), the ndl counterpart of
   syft-rds's ``auto_approve_and_run_jobs``;
2. the researcher polls ``GET /api/jobs/{id}`` every ``--client-poll`` s (50 ms) until the job
   waits for an output check (the datasite ran it in the sandbox: the job's code, then ndl's
   recomputation of every table from its evidence, then the disclosure checks, and uploaded
   the outputs' ZIP);
3. an output checker approves (``POST /api/jobs/{id}/output-check``), which releases it;
4. the researcher downloads the ZIP (``GET /api/jobs/{id}/outputs``).

Each released table is checked outside the timing: the counts by sen_status x fsm_eligible
must equal pandas' counts on the same file, rounded half up to the policy's base (5), with
every cell under the threshold (10) suppressed. A wrong or missing answer exits 1.

In the same run the peer, ``bench/peers/syft_rds_flow.py``, runs in its own venv
(``.bench-venv/syft``, made by ``bench/peers/setup_syft.sh``) on the same file with the same
``--runs``. One JSON line is printed per side, then the ratio peer_median / ndl_median
(target >= 10).

``--profile`` (on by default) adds where ndl's time goes: hub timestamps per run (work item
created, outputs' blob complete, item finished) and, in this process, ``run_job`` on the same
bundle and file in the same strict sandbox with its progress marks (step 1: the job's code,
step 2: the recomputation, then the disclosure checks and the ZIP).

    .venv/bin/python bench/jobs_flow.py                          # demo pupils, 10 runs
    .venv/bin/python bench/jobs_flow.py --data pupils.parquet --runs 20 --no-peer
    .venv/bin/python bench/jobs_flow.py --gap 1      # jobs 1 s apart: warm sandboxes ready

The datasite runs each step in a warm sandbox (``ndl.jobs.warm``) when one is ready; the
profile times ``run_job`` both cold and warm (``datasite_steps_warm_median_s``).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow.parquet as pq

from ndl.testing import DatasiteProcess, HubProcess, stop_all, write_dataset

REPO = Path(__file__).resolve().parent.parent
PEER_PY = REPO / ".bench-venv" / "syft" / "bin" / "python"
PEER_SCRIPT = REPO / "bench" / "peers" / "syft_rds_flow.py"
ORG = "dfe"
DATASET = f"{ORG}/pupils"
BY = ("sen_status", "fsm_eligible")
OUTPUT = "counts"
TARGET_RATIO = 10.0
SUPPRESSED = "[suppressed]"
PROJECT = {"title": "Pupils by SEN and FSM", "purpose": "Free school meals by SEN status, to "
           "target support for disadvantaged pupils.", "lay_summary": "Counts by group.",
           "legal_basis": "public-task", "end_date": "2099-12-31",
           "purpose_category": "research"}
MANIFEST = f"""\
name = "sen-fsm"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["{DATASET}"]
context = "Pupils by SEN status and free school meals eligibility (benchmark)."

[[outputs]]
name = "{OUTPUT}"
kind = "table"
description = "Pupils by SEN status and FSM eligibility"
"""
CODE = f"""\
from ndl import job

pupils = job.dataset("{DATASET}", as_="pandas")
job.table("{OUTPUT}", pupils, by={list(BY)!r})
"""
BUNDLE = {"ndl-job.toml": MANIFEST, "analysis.py": CODE}


class WrongAnswer(Exception):
    """A run failed, or its released output is missing or differs from pandas."""


# -- the reference answer --------------------------------------------------------------------

def expected_counts(path: Path) -> dict[tuple[str, ...], int]:
    """True count of pupils per (sen_status, fsm_eligible), by pandas on the same file."""
    df = pd.read_parquet(path, columns=list(BY))
    sizes = df.groupby(list(BY), dropna=False).size()
    out: dict[tuple[str, ...], int] = {}
    for key, n in sizes.items():
        values = key if isinstance(key, tuple) else (key,)
        out[tuple("" if pd.isna(v) else str(v) for v in values)] = int(n)
    return out


def check_release(zip_bytes: bytes, want: dict[tuple[str, ...], int], *, threshold: int,
                  base: int) -> None:
    """Raise WrongAnswer unless the ZIP's table is ``want`` suppressed then rounded.

    Every cell under ``threshold`` must be suppressed; every released cell must be its true
    count rounded half up to ``base``. With no small cell, nothing may be suppressed (with
    one, secondary suppression may hide others, which this check allows).
    """
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        name = f"{OUTPUT}.csv"
        if name not in z.namelist():
            raise WrongAnswer(f"the ZIP holds {sorted(z.namelist())}, not {name}")
        rows = list(csv.reader(io.StringIO(z.read(name).decode("utf-8"))))
    if not rows or rows[0][:2] != list(BY):
        raise WrongAnswer(f"header {rows[:1]}, expected {list(BY)} and a count")
    got = {tuple(r[:2]): r[2] for r in rows[1:]}
    if set(got) != set(want):
        raise WrongAnswer(f"groups {sorted(got)}, pandas gives {sorted(want)}")
    small = {k for k, n in want.items() if n < threshold}
    for key, n in want.items():
        cell = got[key]
        if key in small or (cell == SUPPRESSED and small):
            if cell != SUPPRESSED:
                raise WrongAnswer(f"{key}: {n} pupils (under {threshold}) released as {cell}")
            continue
        rounded = (n + base // 2) // base * base
        if cell != str(rounded):
            raise WrongAnswer(f"{key}: released {cell}, pandas gives {n}, so {rounded}")


# -- the ndl side ------------------------------------------------------------------------------

@dataclass
class Sides:
    hub: HubProcess
    site: DatasiteProcess
    alice: httpx.Client      # the researcher
    steward: httpx.Client
    checker: httpx.Client
    project: str


def _client(url: str, token: str) -> httpx.Client:
    # One kept-alive connection per person, as the SDK keeps one.
    return httpx.Client(base_url=url, timeout=120,
                        headers={"Authorization": f"Bearer {token}"})


def _ok(r: httpx.Response) -> Any:
    if r.status_code >= 300:
        raise WrongAnswer(f"{r.request.method} {r.request.url.path}: {r.status_code} "
                          f"{r.text[:400]}")
    return r.json()


@contextmanager
def ndl_up(data: Path, work: Path, poll_wait: float) -> Iterator[Sides]:
    """A hub and a datasite with a controlled copy of ``data``, and a granted project."""
    site_root = work / ORG
    write_dataset(site_root, "pupils", pq.read_table(data), tier="controlled",
                  title="Pupils (benchmark copy)", publisher="Department for Education")
    hub = HubProcess(work / "hub")
    site: DatasiteProcess | None = None
    clients: list[httpx.Client] = []
    try:
        hub.start()
        hub.create_org(ORG, "Department for Education", "education")
        tokens = {"alice": hub.create_user("alice", ["researcher"], accredited=True),
                  "steward": hub.create_user("steward", ["steward"], org=ORG),
                  "checker": hub.create_user("checker", ["output_checker"])}
        site = DatasiteProcess(site_root, hub.url, org=ORG, token=tokens["steward"],
                               poll_wait=poll_wait).start()
        alice, steward, checker = (_client(hub.url, tokens[k])
                                   for k in ("alice", "steward", "checker"))
        clients += [alice, steward, checker]
        deadline = time.monotonic() + 60
        while alice.get(f"/api/datasets/{DATASET}").status_code != 200:
            if time.monotonic() > deadline:
                raise WrongAnswer(f"{DATASET} never reached the catalogue")
            time.sleep(0.1)
        project = _ok(alice.post("/api/projects", json=PROJECT))["id"]
        req = _ok(alice.post(f"/api/projects/{project}/requests",
                             json={"datasets": [DATASET]}))
        for item in req["items"]:
            _ok(steward.post(f"/api/requests/items/{item['id']}/decision",
                             json={"decision": "approve", "reason": "Sound purpose."}))
        yield Sides(hub, site, alice, steward, checker, project)
    finally:
        for c in clients:
            c.close()
        stop_all(site, hub)


@dataclass
class Run:
    job_id: str
    zip_bytes: bytes
    stages: dict[str, float]     # seconds, as the researcher and the checker saw them
    submitted_at: float          # time.time() just before the POST
    seen_at: float               # time.time() when the poll saw awaiting_output_check
    running_at: float | None = None  # time.time() when the poll first saw it leased


def wait_for_check(s: Sides, job_id: str, poll: float, timeout: float = 300) -> dict[str, float]:
    """Poll until the job waits for an output check; time.time() each state was first seen
    ("running" means the datasite has leased it)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while True:
        view = _ok(s.alice.get(f"/api/jobs/{job_id}"))
        seen.setdefault(view["state"], time.time())
        if view["state"] == "awaiting_output_check":
            return seen
        if view["state"] not in ("approved", "running", "queued"):
            raise WrongAnswer(f"job {job_id} is {view['state']}: {view.get('error')}")
        if time.monotonic() > deadline:
            raise WrongAnswer(f"job {job_id} still {view['state']} after {timeout:g} s")
        time.sleep(poll)


def release_and_fetch(s: Sides, job_id: str) -> tuple[bytes, float, float]:
    t0 = time.perf_counter()
    done = _ok(s.checker.post(f"/api/jobs/{job_id}/output-check",
                              json={"decision": "approve", "reasons": ""}))
    if done["state"] != "released":
        raise WrongAnswer(f"job {job_id} is {done['state']} after the output check")
    t1 = time.perf_counter()
    r = s.alice.get(f"/api/jobs/{job_id}/outputs")
    if r.status_code != 200:
        raise WrongAnswer(f"download of {job_id}: {r.status_code} {r.text[:300]}")
    return r.content, t1 - t0, time.perf_counter() - t1


def steward_approval(s: Sides, poll: float) -> Run:
    """The one review by hand (untimed): submit, the steward approves, run, release, fetch."""
    job = _ok(s.alice.post("/api/jobs", json={"project": s.project, "files": BUNDLE}))
    if job["state"] != "awaiting_review":
        raise WrongAnswer(f"the first job is {job['state']}, not awaiting_review")
    _ok(s.steward.post(f"/api/jobs/{job['id']}/review",
                       json={"decision": "approve", "reasons": "Counts only."}))
    wait_for_check(s, job["id"], poll)
    data, _, _ = release_and_fetch(s, job["id"])
    return Run(job["id"], data, {}, 0.0, 0.0)


def one_run(s: Sides, poll: float) -> Run:
    """Submit the approved bundle; follow it to the output check; release; download."""
    submitted_at = time.time()
    t0 = time.perf_counter()
    job = _ok(s.alice.post("/api/jobs", json={"project": s.project, "files": BUNDLE}))
    t1 = time.perf_counter()
    if not job.get("auto_approved"):
        raise WrongAnswer(f"job {job['id']} was not approved by policy: {job['state']}")
    seen = wait_for_check(s, job["id"], poll)
    seen_at = time.time()
    t2 = time.perf_counter()
    data, check_s, fetch_s = release_and_fetch(s, job["id"])
    stages = {"submit": t1 - t0, "run_until_output_check": t2 - t1, "output_check": check_s,
              "download": fetch_s}
    return Run(job["id"], data, stages, submitted_at, seen_at, seen.get("running"))


def hub_marks(hub: HubProcess, runs: Sequence[Run]) -> dict[str, list[float]]:
    """Per run, from the hub's own rows: submit -> outputs' blob complete -> item finished ->
    the researcher's poll saw it. Read after the runs, outside the timing."""
    from ndl.federation.blob_models import Blob
    from ndl.federation.work_models import WorkItem
    from ndl.jobs.models import Job

    out: dict[str, list[float]] = {}
    with hub.db.read() as sess:
        for run in runs:
            job = sess.get(Job, run.job_id)
            item = sess.get(WorkItem, job.work_id) if job and job.work_id else None
            blob = sess.get(Blob, job.result_sha256) if job and job.result_sha256 else None
            if item is None or blob is None or item.finished_at is None:
                continue
            created = item.created_at.timestamp()
            marks = {
                "post_to_item_created": created - run.submitted_at,
                "item_created_to_outputs_uploaded": blob.created_at.timestamp() - created,
                "outputs_uploaded_to_item_finished": (item.finished_at - blob.created_at)
                .total_seconds(),
                "item_finished_to_researcher_sees_it": run.seen_at
                - item.finished_at.timestamp(),
            }
            if run.running_at is not None:
                # Within one client poll (--client-poll) after the datasite took it.
                marks["item_created_to_researcher_sees_it_leased"] = run.running_at - created
            for k, v in marks.items():
                out.setdefault(k, []).append(v)
    return out


def datasite_steps(data: Path, runs: int, *, warm: bool = False) -> dict[str, list[float]]:
    """``run_job`` in this process on the same bundle and file, strict sandbox, no ledger:
    the seconds between its progress marks (what the datasite does between lease and upload).
    ``warm``: with a warm pool, as the datasite runs it, each run started once both warm
    processes are ready (the steady state; the flow above shows back-to-back jobs).
    """
    from ndl.jobs.bundle import from_files
    from ndl.jobs.runner import SANDBOX_TMP, JobInput, run_job, step_env
    from ndl.jobs.sandbox import BubblewrapSandbox, Limits, open_sandbox
    from ndl.jobs.warm import WarmPool

    sandbox = open_sandbox("strict")
    bundle = from_files(BUNDLE)
    out: dict[str, list[float]] = {}
    names = {0.05: "step1_job_code", 0.6: "step2_recompute", 0.85: "checks_and_zip"}
    with tempfile.TemporaryDirectory(prefix="ndl-bench-steps-") as tmp:
        pool = None
        if warm:
            assert isinstance(sandbox, BubblewrapSandbox)
            pool = WarmPool(sandbox, Path(tmp) / ".warm", env=step_env(SANDBOX_TMP))
        for i in range(runs + 1):
            if pool is not None:
                pool.prepare(Limits())
                if not (pool.ready("job") and pool.ready("evidence")):
                    raise WrongAnswer("the warm sandboxes did not start")
            marks: list[tuple[float, float]] = []

            def mark(fraction: float, _message: str, marks: list[tuple[float, float]] = marks
                     ) -> None:
                marks.append((fraction, time.perf_counter()))

            t0 = time.perf_counter()
            outcome = run_job(
                JobInput(job_id=f"job-bench{i}", bundle=bundle, datasets={DATASET: data},
                         project="bench"),
                sandbox=sandbox, ledger=None, workdir=Path(tmp),
                report=mark, warm=pool)
            end = time.perf_counter()
            if not outcome.ok:
                raise WrongAnswer(f"run_job in this process failed: {outcome.error}")
            if i == 0:
                continue  # warm-up
            bounds = [*marks, (1.0, end)]
            for (f, a), (_, b) in itertools.pairwise(bounds):
                if f in names:
                    out.setdefault(names[f], []).append(b - a)
            out.setdefault("run_job_total", []).append(end - t0)
        if pool is not None:
            pool.close()
    return out


def med(values: Sequence[float]) -> float:
    return round(statistics.median(values), 4)


def run_ndl(args: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    from ndl.privacy.sdc import SdcPolicy

    policy = SdcPolicy()  # the datasite's default: no sdc config is given to it
    want = expected_counts(data)
    with ndl_up(data, work, args.poll_wait) as s:
        t0 = time.perf_counter()
        first = steward_approval(s, args.client_poll)
        setup_s = time.perf_counter() - t0
        check_release(first.zip_bytes, want, threshold=policy.threshold,
                      base=policy.rounding_base)
        runs: list[Run] = []
        for i in range(args.warmup + args.runs):
            # Untimed: jobs that arrive --gap s apart find the datasite's warm sandboxes
            # ready; back to back (0), a job may wait for the one started by the job before.
            time.sleep(args.gap)
            run = one_run(s, args.client_poll)
            check_release(run.zip_bytes, want, threshold=policy.threshold,
                          base=policy.rounding_base)
            if i >= args.warmup:
                runs.append(run)
        marks = hub_marks(s.hub, runs) if args.profile else {}
    totals = [sum(r.stages.values()) for r in runs]
    stages = {k: med([r.stages[k] for r in runs]) for k in runs[0].stages}
    report: dict[str, Any] = {
        "peer": "ndl", "runs": args.runs, "median_s": med(totals), "min_s": round(min(totals), 4),
        "max_s": round(max(totals), 4), "first_with_steward_review_s": round(setup_s, 4),
        "warmup": args.warmup, "rows": pq.ParquetFile(data).metadata.num_rows,
        "groups": len(want), "client_poll_s": args.client_poll,
        "datasite_poll_wait_s": args.poll_wait, "gap_s": args.gap, "sandbox": "bubblewrap",
        "stages_median_s": stages, "samples_s": [round(t, 4) for t in totals],
        # What ndl does in the timed span that syft-rds does not (bench/peers/README.md).
        "includes": ["bubblewrap+seccomp+cgroup sandbox", "two sandboxed steps (job code, "
                     "recomputation from evidence)", "disclosure checks with release ledger",
                     "signed approval and grant checks", "register entries",
                     "a human output checker's API call"],
    }
    if args.profile:
        report["hub_marks_median_s"] = {k: med(v) for k, v in marks.items()}
        report["datasite_steps_median_s"] = {
            k: med(v) for k, v in datasite_steps(data, args.profile_runs).items()}
        report["datasite_steps_warm_median_s"] = {
            k: med(v) for k, v in datasite_steps(data, args.profile_runs, warm=True).items()}
    return report


# -- the peer ----------------------------------------------------------------------------------

def run_peer(args: argparse.Namespace, data: Path) -> dict[str, Any] | None:
    """The syft-rds flow on the same file and --runs, in its own venv; None when absent."""
    if not PEER_PY.exists():
        print(f"syft-rds peer skipped: {PEER_PY} does not exist; make it with "
              "bench/peers/setup_syft.sh (needs PyPI once)", file=sys.stderr)
        return None
    cmd = [str(PEER_PY), str(PEER_SCRIPT), "--data", str(data), "--runs", str(args.runs)]
    if args.unshare:
        cmd = ["unshare", "-n", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if done.returncode != 0:
        raise WrongAnswer(f"the syft-rds peer exited {done.returncode}: {done.stderr[-800:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise WrongAnswer(f"the syft-rds peer printed no JSON: {done.stdout[-400:]}")
    peer: dict[str, Any] = json.loads(lines[-1])
    peer["command"] = " ".join(cmd[cmd.index(str(PEER_PY)):])
    return peer


# -- entry point -------------------------------------------------------------------------------

def demo_pupils(work: Path) -> Path:
    """The pupils table the peer's README names: the demo generator at 20,000 people."""
    from ndl.demo.synth import generate_demo_data

    generate_demo_data(work / "demo", people=20000)
    return work / "demo" / ORG / "datasets" / "pupils" / "data.parquet"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="the pupils Parquet (default: generate the demo one, 20,000 people)")
    p.add_argument("--runs", type=int, default=10, help="timed jobs per side (default 10)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed auto-approved jobs after the steward's (default 1)")
    p.add_argument("--client-poll", type=float, default=0.05,
                   help="seconds between the researcher's status polls (default 0.05)")
    p.add_argument("--poll-wait", type=float, default=20.0,
                   help="the datasite's long-poll, seconds (default 20, the datasite's own)")
    p.add_argument("--gap", type=float, default=0.0,
                   help="untimed seconds between ndl's jobs (default 0: back to back)")
    p.add_argument("--no-peer", dest="peer", action="store_false", help="skip syft-rds")
    p.add_argument("--unshare", action="store_true",
                   help="run the peer under 'unshare -n' (no network), as its README does")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the hub timestamps and the in-process run_job steps")
    p.add_argument("--profile-runs", type=int, default=5,
                   help="in-process run_job runs for the step times (default 5)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.client_poll <= 0 or args.profile_runs < 1:
        p.error("--runs and --profile-runs must be at least 1, --warmup at least 0 and "
                "--client-poll positive")
    if args.data is not None and (not args.data.is_file() or args.data.suffix != ".parquet"):
        p.error(f"--data {args.data} is not a Parquet file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Print a JSON line per side and the ratio; 1 if any output was wrong or a run failed."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ndl-bench-jobs-") as tmp:
        work = Path(tmp)
        data = args.data.resolve() if args.data else demo_pupils(work)
        try:
            ndl = run_ndl(args, data, work / "ndl")
            # The peer after ndl's processes are stopped, so neither competes for the 2 cores.
            peer = run_peer(args, data) if args.peer else None
        except WrongAnswer as e:
            print(f"jobs_flow: {e}", file=sys.stderr)
            return 1
    ndl["load_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(ndl))
    if peer is not None:
        print(json.dumps(peer))
        ratio = peer["median_s"] / ndl["median_s"]
        met = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(json.dumps({"ratio_peer_median_over_ndl_median": round(ratio, 2),
                          "target": TARGET_RATIO, "target_met": ratio >= TARGET_RATIO}))
        print(f"syft-rds median {peer['median_s']:.3f} s / ndl median {ndl['median_s']:.3f} s "
              f"= {ratio:.2f}x (target >= {TARGET_RATIO:g}x: {met})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

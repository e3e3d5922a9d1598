"""Benchmark what the controlled-tier sandbox adds to starting a job.

The same trivial job is run N times three ways, interleaved so machine load falls on all
three alike:

- ``bare``: ``subprocess.run([python, "-I", "-c", code])``, this very interpreter, no sandbox;
- ``strict``: ``BubblewrapSandbox.run`` from ``open_sandbox("strict")`` (namespaces, seccomp,
  rlimits, a cgroup when running as root): what the datasite pays per sandbox step;
- ``weaker``: ``WeakerSandbox.run`` (limits and a clean environment only).

Two jobs: ``pass`` (``python -I -c pass``) and ``pandas`` (``import pandas``, what a real
analysis pays first). It prints median and p90 per case, the strict overhead (strict - bare,
medians) in ms and the ratio strict / bare; the target is an overhead of at most 50 ms.
``open_sandbox``'s own trial run is one-off and outside the timing.

``--profile`` (on by default) then times the parts of one strict run separately, so an
overhead over target can be explained: building the seccomp filter, making and removing the
run's cgroup, listing the runtime mounts, computing rlimits, running the same bwrap command
line with a plain ``subprocess.run`` (no supervision loop), and a strict run with the
supervision loop's sleep shortened (a what-if, patched in this process only; ``sandbox.py``
is not changed).

    .venv/bin/python bench/jobs_sandbox_startup.py                # 30 runs of each
    .venv/bin/python bench/jobs_sandbox_startup.py --runs 50 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ndl.jobs import sandbox as sandbox_mod
from ndl.jobs.cgroups import create_run_cgroup
from ndl.jobs.sandbox import (
    BubblewrapSandbox,
    Limits,
    SandboxSpec,
    WeakerSandbox,
    open_sandbox,
    runtime_mounts,
)
from ndl.jobs.seccomp_filter import seccomp_filter_fd

TARGET_MS = 50.0
JOBS = {"pass": "pass", "pandas": "import pandas"}
SIDES = ("bare", "strict", "weaker")


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(ms: Sequence[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(ms), 2), "p90_ms": round(pct(ms, 90), 2),
            "min_ms": round(min(ms), 2), "max_ms": round(max(ms), 2)}


def spec_for(code: str) -> SandboxSpec:
    """The job as the sandbox sees it: no mounts beyond the runtime, default limits."""
    return SandboxSpec(argv=[sys.executable, "-I", "-c", code], mounts=[], workdir="/",
                       env={}, limits=Limits())


def timed_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


class JobFailed(Exception):
    """A run that should have exited 0 did not: the figures would mean nothing."""


def runner(side: str, code: str, strict: BubblewrapSandbox,
           weaker: WeakerSandbox) -> Callable[[], None]:
    """One run of ``code`` on ``side``; raises JobFailed unless it exits 0."""
    spec = spec_for(code)

    def bare() -> None:
        res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                             check=False, env={})
        if res.returncode != 0:
            raise JobFailed(f"bare {code!r}: {res.stderr.decode(errors='replace')[-300:]}")

    def boxed(box: BubblewrapSandbox | WeakerSandbox) -> Callable[[], None]:
        def go() -> None:
            res = box.run(spec)
            if res.returncode != 0 or res.stopped is not None:
                raise JobFailed(f"{box.mode} {code!r} ({res.stopped}): "
                                f"{res.stderr.decode(errors='replace')[-300:]}")
        return go

    return {"bare": bare, "strict": boxed(strict), "weaker": boxed(weaker)}[side]


def measure(runs: int, warmup: int, strict: BubblewrapSandbox,
            weaker: WeakerSandbox) -> dict[str, dict[str, list[float]]]:
    """ms per run for every (job, side), the sides interleaved run by run."""
    samples: dict[str, dict[str, list[float]]] = {j: {s: [] for s in SIDES} for j in JOBS}
    calls = {(j, s): runner(s, code, strict, weaker) for j, code in JOBS.items() for s in SIDES}
    for i in range(warmup + runs):
        for job in JOBS:
            for side in SIDES:
                took = timed_ms(calls[(job, side)])
                if i >= warmup:
                    samples[job][side].append(took)
    return samples


def profile(runs: int, strict: BubblewrapSandbox) -> dict[str, float]:
    """Median ms of each part of one strict run (``pass`` job), measured one at a time."""
    spec = spec_for("pass")
    limits = spec.limits
    parts: dict[str, list[float]] = {}

    def add(name: str, fn: Callable[[], object]) -> None:
        parts.setdefault(name, []).append(timed_ms(fn))

    def cgroup_cycle() -> None:
        create_run_cgroup(limits.processes, limits.memory_bytes).remove()

    def bwrap_plain() -> None:
        fd = seccomp_filter_fd()
        try:
            res = subprocess.run(strict.command(spec, fd), pass_fds=(fd,), capture_output=True,
                                 check=False, env={}, cwd="/")
        finally:
            os.close(fd)
        if res.returncode != 0:
            raise JobFailed(f"plain bwrap: {res.stderr.decode(errors='replace')[-300:]}")

    def bwrap_true() -> None:
        fd = seccomp_filter_fd()
        try:
            argv = strict.command(SandboxSpec(argv=["/bin/true"], mounts=[], workdir="/",
                                              env={}), fd)
            res = subprocess.run(argv, pass_fds=(fd,), capture_output=True, check=False,
                                 env={}, cwd="/")
        finally:
            os.close(fd)
        if res.returncode != 0:
            raise JobFailed(f"bwrap /bin/true: {res.stderr.decode(errors='replace')[-300:]}")

    def bare() -> None:
        subprocess.run([sys.executable, "-I", "-c", "pass"], capture_output=True, check=True,
                       env={})

    def strict_run() -> None:
        strict.run(spec)

    def strict_fast_poll() -> None:
        # What-if: the supervision loop checks the child every 100 ms (POLL_SECONDS); with a
        # 2 ms sleep the run ends when the child does, to within 2 ms.
        saved = sandbox_mod.POLL_SECONDS
        sandbox_mod.POLL_SECONDS = 0.002
        try:
            strict.run(spec)
        finally:
            sandbox_mod.POLL_SECONDS = saved

    for _ in range(runs):
        add("seccomp_filter_build", lambda: os.close(seccomp_filter_fd()))
        if strict.use_cgroup:
            add("cgroup_create_remove", cgroup_cycle)
        add("runtime_mounts", runtime_mounts)
        # Private helper, timed on purpose: without root it reads every /proc/<pid>/status.
        add("rlimits", lambda: sandbox_mod._rlimits(limits, memory_rlimit=False))
        add("bare_python", bare)
        add("bwrap_bin_true_plain", bwrap_true)
        add("bwrap_python_plain", bwrap_plain)
        add("strict_run", strict_run)
        add("strict_run_poll_2ms", strict_fast_poll)
    return {k: round(statistics.median(v), 2) for k, v in parts.items()}


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "load_1m": round(load[0], 2), "root": os.geteuid() == 0}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=int, default=30, help="timed runs per case (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip timing the parts of a strict run")
    p.add_argument("--profile-runs", type=int, default=15,
                   help="runs of each part when profiling (default 15)")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.profile_runs < 1:
        p.error("--runs and --profile-runs must be at least 1, --warmup at least 0")
    return args


def report(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for job, sides in samples.items():
        stats = {side: summary(ms) for side, ms in sides.items()}
        bare = stats["bare"]["median_ms"]
        out[job] = {
            **stats,
            "strict_overhead_ms": round(stats["strict"]["median_ms"] - bare, 2),
            "strict_ratio": round(stats["strict"]["median_ms"] / bare, 2),
            "weaker_overhead_ms": round(stats["weaker"]["median_ms"] - bare, 2),
            "weaker_ratio": round(stats["weaker"]["median_ms"] / bare, 2),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures; 1 if any run failed, else 0 (a missed target is reported, not 1)."""
    args = parse_args(argv)
    # WeakerSandbox warns on every run, as it must at a datasite; here it would bury the table.
    logging.getLogger("ndl.jobs").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    strict = open_sandbox("strict")
    open_ms = (time.perf_counter() - t0) * 1000
    assert isinstance(strict, BubblewrapSandbox)
    weaker = WeakerSandbox()
    try:
        results = report(measure(args.runs, args.warmup, strict, weaker))
        parts = profile(args.profile_runs, strict) if args.profile else {}
    except JobFailed as e:
        print(f"a sandboxed run failed: {e}", file=sys.stderr)
        return 1
    doc = {"bench": "jobs_sandbox_startup", "runs": args.runs, "warmup": args.warmup,
           "open_sandbox_ms": round(open_ms, 1), "use_cgroup": strict.use_cgroup,
           "target_overhead_ms": TARGET_MS, "jobs": results, "profile_median_ms": parts,
           "machine": machine()}
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"open_sandbox('strict'), one-off with its trial run: {open_ms:.1f} ms "
          f"(cgroup: {strict.use_cgroup})")
    print(f"{'job':<8} {'side':<7} {'median ms':>10} {'p90 ms':>9} {'min ms':>8} {'max ms':>8}")
    for job, r in results.items():
        for side in SIDES:
            s = r[side]
            print(f"{job:<8} {side:<7} {s['median_ms']:>10.2f} {s['p90_ms']:>9.2f} "
                  f"{s['min_ms']:>8.2f} {s['max_ms']:>8.2f}")
        met = "met" if r["strict_overhead_ms"] <= TARGET_MS else "NOT met"
        print(f"{job:<8} strict - bare = {r['strict_overhead_ms']:.2f} ms "
              f"(ratio {r['strict_ratio']:.2f}x; target <= {TARGET_MS:g} ms: {met}); "
              f"weaker - bare = {r['weaker_overhead_ms']:.2f} ms "
              f"({r['weaker_ratio']:.2f}x)")
    if parts:
        print("parts of one strict run (pass), median ms:")
        for name, ms in parts.items():
            print(f"  {name:<24} {ms:>8.2f}")
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

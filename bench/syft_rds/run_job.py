"""The syft-rds 0.6 job flow for the DP benchmark's query, timed end to end.

Runs in its OWN virtual environment (syft-rds and its dependencies are not ndl's), e.g.::

    python3 -m venv /tmp/syft-venv
    /tmp/syft-venv/bin/pip install 'syft-rds==0.6.1' pyarrow
    /tmp/syft-venv/bin/python bench/syft_rds/run_job.py --parquet data.parquet --jobs 10

``bench/syft_rds_compare.py`` runs it for you. It uses syft-rds's built-in mock transport,
``SyftRDSClient.pair_with_mock_drive_service_connection()``: a data owner (DO) and a data
scientist (DS) client sharing one in-memory mock Google Drive, each with its own SyftBox
folder on disk, so nothing leaves the machine. The DO publishes the Parquet as a dataset
(a small synthetic mock, the real file as private data); then for every job the DS
submits a bash job that counts rows and sums ``value`` clamped to [0, 100] by ``region``
over the private file (found with ``syft.resolve_dataset_file_path``, as a job does), the DO
syncs, approves it (auto, as the owner, no human wait), runs it and shares its outputs, and
the DS syncs and reads the result. Each stage is timed; the JSON report goes to stdout,
syft's own chatter to stderr.

The job is a *bash* job that starts this venv's Python: a *Python* job's run.sh would build
a fresh ``uv`` venv and ``pip install`` syft for every job, which needs the network and
would only make the flow slower. The job computes exact aggregates (syft-rds adds no
noise), which also favours syft-rds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATASET = "dp-bench"
DO_EMAIL = "owner@bench.test"
DS_EMAIL = "scientist@bench.test"
BOUNDS = (0, 100)
MOCK_ROWS = 1000

# The job: read the private file, count and sum the clamped value by region, write JSON to
# outputs/ (the runner moves code/outputs to the job's review folder).
JOB_PY = """
import json
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
import syft as sy
t = pq.read_table(sy.resolve_dataset_file_path("%(name)s"), columns=["region", "value"])
v = pc.min_element_wise(pc.max_element_wise(t["value"], %(lo)d), %(hi)d)
g = pa.table({"region": t["region"], "v": v}).group_by("region").aggregate(
    [("v", "count"), ("v", "sum")])
rows = [[r["region"], r["v_count"], r["v_sum"]] for r in g.to_pylist()]
with open("code/outputs/result.json", "w") as f:
    json.dump({"columns": ["region", "n", "total"], "rows": rows}, f)
"""


def job_script() -> str:
    code = JOB_PY % {"name": DATASET, "lo": BOUNDS[0], "hi": BOUNDS[1]}
    return f"#!/bin/bash\nset -euo pipefail\n'{sys.executable}' - <<'PY'\n{code}PY\n"


def exact(parquet: Path) -> dict[str, list[int]]:
    t = pq.read_table(parquet, columns=["region", "value"])
    v = pc.min_element_wise(pc.max_element_wise(t["value"], BOUNDS[0]), BOUNDS[1])
    g = pa.table({"region": t["region"], "v": v}).group_by("region").aggregate(
        [("v", "count"), ("v", "sum")])
    return {r["region"]: [r["v_count"], r["v_sum"]] for r in g.to_pylist()}


def write_inputs(parquet: Path, work: Path) -> tuple[Path, Path]:
    """The private folder (the real file) and a synthetic mock of the same schema."""
    private, mock = work / "private", work / "mock"
    private.mkdir(parents=True)
    mock.mkdir(parents=True)
    shutil.copyfile(parquet, private / "data.parquet")
    regions = pc.unique(pq.read_table(parquet, columns=["region"])["region"])
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({
        "region": pc.take(regions, pa.array(rng.integers(0, len(regions), MOCK_ROWS))),
        "value": pa.array(rng.integers(0, 400, MOCK_ROWS)),
    }), mock / "data.parquet")
    return private, mock


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("syft-rds", "syft", "syft-job", "syft-dataset", "pyarrow"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "?"
    return out


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from syft_rds import SyftRDSClient

    want = exact(args.parquet)
    private, mock = write_inputs(args.parquet, work)
    t0 = time.perf_counter()
    ds, do = SyftRDSClient.pair_with_mock_drive_service_connection(
        email1=DO_EMAIL, email2=DS_EMAIL, base_path1=str(work / "do-box"),
        base_path2=str(work / "ds-box"), use_in_memory_cache=False,
        sync_automatically=False)
    do.create_dataset(name=DATASET, mock_path=mock, private_path=private,
                      summary="DP benchmark data", users=[ds.email])
    ds.sync()
    setup_s = time.perf_counter() - t0
    script = job_script()
    stages = ("submit", "owner_sync", "approve", "run", "scientist_sync", "read")
    samples: dict[str, list[float]] = {k: [] for k in (*stages, "total")}
    for i in range(args.warmup + args.jobs):
        name = f"dp-query-{i}"
        marks = [time.perf_counter()]
        ds.submit_bash_job(do.email, script, job_name=name)
        marks.append(time.perf_counter())
        do.sync()
        marks.append(time.perf_counter())
        job = next(j for j in do.job_client.jobs if j.name == name)
        job.approve(approval_method="auto")
        marks.append(time.perf_counter())
        do.process_approved_jobs(stream_output=False, timeout=args.timeout,
                                 share_outputs_with_submitter=True)
        marks.append(time.perf_counter())
        ds.sync()
        marks.append(time.perf_counter())
        mine = next(j for j in ds.job_client.jobs if j.name == name)
        if mine.status != "done" or not mine.output_paths:
            raise RuntimeError(f"job {name} ended as {mine.status!r}; see its stderr in "
                               f"{mine.job_review_path}")
        result = json.loads(mine.output_paths[0].read_text("utf-8"))
        marks.append(time.perf_counter())
        got = {r[0]: [r[1], r[2]] for r in result["rows"]}
        if got != want:
            raise AssertionError(f"job {name} answered {got}, expected {want}")
        if i >= args.warmup:
            for k, a, b in zip(stages, marks, marks[1:], strict=False):
                samples[k].append((b - a) * 1000)
            samples["total"].append((marks[-1] - marks[0]) * 1000)
    # For reading the "run" stage: what starting the job's Python and importing syft costs.
    floor = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import syft, pyarrow.parquet"], check=True)
        floor.append((time.perf_counter() - t0) * 1000)
    return {"versions": versions(), "dataset_rows": sum(v[0] for v in want.values()),
            "python_import_syft_ms": sorted(floor)[1],
            "jobs": args.jobs, "warmup": args.warmup, "setup_s": setup_s,
            "samples_ms": samples, "transport": "SyftRDSClient."
            "pair_with_mock_drive_service_connection (in-memory mock Drive)",
            "job": "bash job running this venv's python: syft.resolve_dataset_file_path + "
                   "pyarrow group_by (exact, no noise)"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--parquet", type=Path, required=True, help="the data (region, value)")
    p.add_argument("--jobs", type=int, default=10, help="timed jobs")
    p.add_argument("--warmup", type=int, default=1, help="untimed jobs first")
    p.add_argument("--timeout", type=int, default=120, help="seconds one job may run")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ndl-bench-syft-") as tmp:
        # syft prints progress for people; keep stdout for the JSON report.
        with contextlib.redirect_stdout(sys.stderr):
            result = run(args, Path(tmp))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The syft-rds 0.6.1 code-to-data job flow, timed from submit to released output in hand.

The peer side of the controlled-tier benchmark ("submit -> released output with auto-approval
and checks that pass", ndl against syft-rds 0.6 on the same data and analysis). It runs in its
OWN virtual environment, never ndl's::

    bench/peers/setup_syft.sh
    .bench-venv/syft/bin/python bench/peers/syft_rds_flow.py --data pupils.parquet --runs 10

Everything is local: syft-rds's own in-process transport,
``SyftRDSClient.pair_with_mock_drive_service_connection()`` (its real Google Drive sync code
over an in-memory mock Drive service), with the data owner's and the data scientist's SyftBox
folders in a temporary directory. Run it under ``unshare -n`` to prove it needs no network.

Per run: the scientist submits a bash job (pandas: count of pupils by sen_status x fsm,
written to ``outputs/counts.csv``); the owner runs syft-rds's own auto-approval,
``auto_approve_and_run_jobs`` (approve only if the code is exactly the expected script and the
submitter is the expected scientist), which also runs the job; the owner shares the job's
outputs with the submitter and syncs; the scientist syncs and reads the CSV. The counts are
checked against pandas on the same file; a wrong or missing answer exits 1.

stdout gets exactly one JSON line; syft's own progress messages go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

PEER = "syft-rds"
DATASET = "pupils"
DO_EMAIL = "owner@dfe.bench.test"
DS_EMAIL = "scientist@uni.bench.test"
DEFAULT_BY = ("sen_status", "fsm_eligible")
MOCK_ROWS = 200
OUTPUT_NAME = "counts.csv"

# What the scientist's job runs at the data. syft sets SYFT_IS_IN_JOB, so
# resolve_dataset_file_path gives the private file there (and the mock anywhere else).
# The runner starts run.sh in the job's submission folder, with code/outputs/ made for it.
JOB_PY = """\
import pandas as pd
import syft as sy
path = str(sy.resolve_dataset_file_path({dataset!r}))
by = {by!r}
if path.endswith(".parquet"):
    df = pd.read_parquet(path, columns=by)
else:
    df = pd.read_csv(path, usecols=by, keep_default_na=False)
counts = df.groupby(by, dropna=False).size().reset_index(name="n")
counts.to_csv("code/outputs/{output}", index=False)
"""


class WrongAnswer(Exception):
    """The released output is missing or differs from pandas on the same data."""


def job_script(by: Sequence[str]) -> str:
    """The bash job the scientist submits: this venv's Python running JOB_PY.

    A bash job, not ``submit_python_job``: syft-job's Python run.sh does ``uv venv --python
    3.12`` and ``uv pip install syft`` for every job, which needs uv and the network (see
    bench/peers/README.md). Reusing this venv only makes syft-rds faster.
    """
    code = JOB_PY.format(dataset=DATASET, by=list(by), output=OUTPUT_NAME)
    return f"#!/bin/bash\nset -euo pipefail\n'{sys.executable}' - <<'PY'\n{code}PY\n"


def read_table(path: Path, by: Sequence[str]) -> pd.DataFrame:
    """The grouping columns of a Parquet or CSV file, as the job reads them."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path, columns=list(by))
    if path.suffix == ".csv":
        # keep_default_na=False: a category spelt "None" (as sen_status has) is a value.
        return pd.read_csv(path, usecols=list(by), keep_default_na=False)
    raise SystemExit(f"--data must end in .parquet or .csv, not {path.name!r}")


def count_key(values: Sequence[Any]) -> tuple[str, ...]:
    """A group key that compares equal whether it came from Parquet (bool) or a CSV ('True').

    A missing value becomes "", which is how to_csv writes it.
    """
    return tuple("" if pd.isna(v) else str(v) for v in values)


def expected_counts(df: pd.DataFrame, by: Sequence[str]) -> dict[tuple[str, ...], int]:
    """Count of rows per group, computed here with pandas (the reference answer)."""
    sizes = df.groupby(list(by), dropna=False).size()
    return {count_key(k if isinstance(k, tuple) else (k,)): int(n) for k, n in sizes.items()}


def released_counts(csv_text: str, by: Sequence[str]) -> dict[tuple[str, ...], int]:
    """The job's released CSV as {group: n}; raises WrongAnswer if its header is not by + n."""
    out = pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)
    if list(out.columns) != [*by, "n"]:
        raise WrongAnswer(f"output columns {list(out.columns)}, expected {[*by, 'n']}")
    return {count_key(row[:-1]): int(row[-1]) for row in out.itertuples(index=False)}


def write_inputs(data: Path, df: pd.DataFrame, by: Sequence[str], work: Path) -> tuple[Path, Path]:
    """The private folder (a copy of the real file) and a mock folder of the same format.

    The mock holds only the grouping columns, each sampled on its own, so it carries no real
    row; a scientist can run the job on it before submitting, as syft-rds intends.
    """
    private, mock = work / "private", work / "mock"
    private.mkdir()
    mock.mkdir()
    (private / data.name).write_bytes(data.read_bytes())
    fake = pd.DataFrame({c: df[c].sample(MOCK_ROWS, replace=True, random_state=i).to_numpy()
                         for i, c in enumerate(by)})
    if data.suffix == ".parquet":
        fake.to_parquet(mock / data.name, index=False)
    else:
        fake.to_csv(mock / data.name, index=False)
    return private, mock


def one_run(ds: Any, do: Any, script: str, name: str) -> tuple[str, dict[str, float]]:
    """Submit, auto-approve and run, share, fetch: the released CSV and each stage's seconds."""
    from syft_rds import auto_approve_and_run_jobs

    marks = [time.perf_counter()]
    ds.submit_bash_job(do.email, script, job_name=name)
    marks.append(time.perf_counter())
    # syft-rds's own auto-approval: syncs (do.jobs), approves a pending job only if its code
    # is exactly this script and it came from this scientist, then runs every approved job.
    approved = auto_approve_and_run_jobs(
        do, required_file_contents={"script.sh": script}, required_file_paths=["script.sh"],
        allowed_users=[ds.email], verbose=False)
    if [j.name for j in approved] != [name]:
        raise WrongAnswer(f"auto-approval approved {[j.name for j in approved]}, not [{name!r}]")
    marks.append(time.perf_counter())
    # auto_approve_and_run_jobs does not share outputs; release them to the submitter.
    do.job_runner.share_job_results(name, share_outputs=True, share_logs=False, user=ds.email)
    do.sync()
    marks.append(time.perf_counter())
    ds.sync()
    mine = next((j for j in ds.job_client.jobs if j.name == name), None)
    if mine is None or mine.status != "done" or not mine.output_paths:
        state = "missing" if mine is None else f"{mine.status!r}"
        raise WrongAnswer(f"job {name} reached the scientist as {state} with no output; "
                          f"its stderr.txt is in the owner's review folder")
    text = next(p for p in mine.output_paths if p.name == OUTPUT_NAME).read_text("utf-8")
    marks.append(time.perf_counter())
    stages = ("submit", "auto_approve_and_run", "share_outputs", "scientist_fetch")
    return text, {k: b - a for k, a, b in zip(stages, marks[:-1], marks[1:], strict=True)}


def new_pair(work: Path, private: Path, mock: Path) -> tuple[Any, Any, float]:
    """A (scientist, owner) pair on a fresh mock Drive, the dataset shared; and the seconds."""
    from syft_rds import SyftRDSClient

    t0 = time.perf_counter()
    ds, do = SyftRDSClient.pair_with_mock_drive_service_connection(
        email1=DO_EMAIL, email2=DS_EMAIL, base_path1=str(work / "do-box"),
        base_path2=str(work / "ds-box"), use_in_memory_cache=False, sync_automatically=False)
    do.create_dataset(name=DATASET, mock_path=mock, private_path=private,
                      summary="pupils (benchmark)", users=[ds.email])
    ds.sync()
    return ds, do, time.perf_counter() - t0


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Set up the pair and the dataset, do warmup + runs jobs, check each answer; the report."""
    by = list(args.by)
    df = read_table(args.data, by)
    want = expected_counts(df, by)
    private, mock = write_inputs(args.data, df, by, work)
    script = job_script(by)
    ds, do, setup_s = new_pair(work / "pair", private, mock)

    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    for i in range(args.warmup + args.runs):
        if args.fresh and i > 0:
            # Untimed: every job then meets an empty job folder, syft-rds's best case.
            ds, do, _ = new_pair(work / f"pair-{i}", private, mock)
        text, took = one_run(ds, do, script, f"sen-fsm-{i}")
        got = released_counts(text, by)
        if got != want:
            raise WrongAnswer(f"run {i}: released {sorted(got.items())}, "
                              f"pandas gives {sorted(want.items())}")
        if i >= args.warmup:
            totals.append(sum(took.values()))
            for k, s in took.items():
                stages.setdefault(k, []).append(s)
    return {
        "peer": PEER, "version": version("syft-rds"), "runs": args.runs,
        "median_s": round(statistics.median(totals), 4), "min_s": round(min(totals), 4),
        "max_s": round(max(totals), 4), "setup_s": round(setup_s, 4),
        "warmup": args.warmup, "fresh": args.fresh, "rows": len(df), "groups": len(want),
        "stages_median_s": {k: round(statistics.median(v), 4) for k, v in stages.items()},
        # In run order: syft-rds's syncs scan every job folder, so later jobs take longer.
        "samples_s": [round(t, 4) for t in totals],
        "syft": version("syft"), "pandas": version("pandas"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the pupils table, .parquet or .csv")
    p.add_argument("--runs", type=int, default=10, help="timed jobs (default 10)")
    p.add_argument("--warmup", type=int, default=1, help="untimed jobs first (default 1)")
    p.add_argument("--by", nargs=2, default=list(DEFAULT_BY), metavar=("SEN", "FSM"),
                   help="the two grouping columns (default: sen_status fsm_eligible)")
    p.add_argument("--fresh", action="store_true",
                   help="a new owner/scientist pair for every job (untimed), so no job waits "
                        "on earlier jobs' folders: syft-rds's best case")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be at least 1 and --warmup at least 0")
    if not args.data.is_file():
        p.error(f"--data {args.data} is not a file; make one with ndl.demo.synth "
                "(see bench/peers/README.md)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Print the one-line JSON report; 1 if any released output was wrong, else 0."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ndl-peer-syft-") as tmp:
        try:
            # syft prints progress for people; stdout is kept for the JSON line.
            with contextlib.redirect_stdout(sys.stderr):
                report = run(args, Path(tmp))
        except WrongAnswer as e:
            print(f"syft-rds flow gave a wrong or missing output: {e}", file=sys.stderr)
            return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Peak memory and throughput of ``ndl publish`` on generated CSV files (1M rows and ~5 GB).

Run from the repository root::

    .venv/bin/python bench/publish_memory.py                 # 1M rows, then ~5 GB
    .venv/bin/python bench/publish_memory.py --sizes 1m      # just the 1M-row file
    .venv/bin/python bench/publish_memory.py --gb 5 --json

Each file is generated into a temporary folder with a streaming writer (so generating never
holds the file either), then published by a real ``python -m ndl publish`` child process
while this script samples the child's resident set size (RSS) every 50 ms with psutil. The
child's own peak (``ru_maxrss`` from the kernel, via ``os.wait4``) is reported too, as the
figure of record. Everything is deleted afterwards, even if the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROWS_PER_BATCH = 200_000
WEIGHTS = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2])
AREAS = np.array(["NE1", "NE2", "SR3", "DH1", "TS4", "LS6", "YO1", "CA2", "LA1", "DN5"])
LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
REGIONS = np.array(["North East", "Yorkshire and The Humber", "North West"])


def _batch(rng: np.random.Generator, start: int, n: int) -> pa.RecordBatch:
    """Rows that look like a hospital extract: identifiers, dates, codes and measures."""
    digits = rng.integers(0, 10, (n, 9))
    digits[:, :3] = 9  # the 999 range NHS England keeps for testing
    check = 11 - (digits @ WEIGHTS) % 11
    check[check == 11] = 0
    digits[check == 10, 8] = (digits[check == 10, 8] + 1) % 10  # rare: nudge to a valid one
    check = 11 - (digits @ WEIGHTS) % 11
    check[check == 11] = 0
    nhs = (digits @ (10 ** np.arange(9, 0, -1)) + np.where(check == 10, 0, check)).astype(str)
    postcode = np.char.add(np.char.add(AREAS[rng.integers(0, len(AREAS), n)], " "),
                           np.char.add(rng.integers(1, 10, n).astype(str),
                                       np.char.add(LETTERS[rng.integers(0, 20, n)],
                                                   LETTERS[rng.integers(0, 20, n)])))
    dob = (np.datetime64("1930-01-01") + rng.integers(0, 33_000, n)).astype("datetime64[D]")
    attended = (np.datetime64("2023-01-01") + rng.integers(0, 730, n)).astype("datetime64[D]")
    return pa.RecordBatch.from_pydict({
        "id": pa.array(np.arange(start, start + n)),
        "nhs_number": pa.array(nhs),
        "postcode": pa.array(postcode),
        "date_of_birth": pa.array(dob).cast(pa.string()),
        "sex": pa.array(np.array(["F", "M"])[rng.integers(0, 2, n)]),
        "region": pa.array(REGIONS[rng.integers(0, 3, n)]),
        "attended": pa.array(attended).cast(pa.string()),
        "acuity": pa.array(rng.integers(1, 6, n)),
        "wait_minutes": pa.array(np.round(rng.gamma(2.0, 60.0, n), 1)),
        "admitted": pa.array(np.array(["true", "false"])[rng.integers(0, 2, n)]),
        "notes": pa.array(np.array(["", "triage delayed", "walk-in", "ambulance handover",
                                    "referred by GP"])[rng.integers(0, 5, n)]),
    })


def generate_csv(path: Path, *, rows: int | None = None, target_bytes: int | None = None,
                 seed: int = 7) -> int:
    """Write a CSV of ``rows`` rows or about ``target_bytes`` bytes; returns the row count."""
    rng = np.random.default_rng(seed)
    written = 0
    with pacsv.CSVWriter(str(path), _batch(rng, 0, 1).schema) as writer:
        while True:
            n = ROWS_PER_BATCH if rows is None else min(ROWS_PER_BATCH, rows - written)
            if n <= 0 or (target_bytes is not None and path.stat().st_size >= target_bytes):
                break
            writer.write_batch(_batch(rng, written, n))
            written += n
    return written


def _publish(site: Path, csv: Path, name: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ndl", "publish", str(csv), "--dir", str(site), "--dataset",
           name, "--publisher", "Bench Trust", "--yes"]
    peak = 0
    stop = threading.Event()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    stop.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"publish failed:\n{out.decode(errors='replace')[-3000:]}")
    data = site / "datasets" / name / "data.parquet"
    return {"seconds": round(seconds, 1), "peak_rss_sampled_mb": round(peak / 2**20, 1),
            "peak_rss_kernel_mb": round(usage.ru_maxrss / 1024, 1),
            "rows_published": pq.ParquetFile(data).metadata.num_rows,
            "parquet_mb": round(data.stat().st_size / 2**20, 1),
            "summary": out.decode(errors="replace").strip().splitlines()[-3:]}


def run(label: str, *, rows: int | None, target_bytes: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ndl-bench-publish-") as tmp:
        root = Path(tmp)
        need = (target_bytes or (rows or 0) * 150) * 1.6
        free = shutil.disk_usage(root).free
        if free < need:
            raise SystemExit(f"{label}: needs about {need / 2**30:.1f} GiB free in {root}, "
                             f"only {free / 2**30:.1f} GiB")
        csv = root / "input.csv"
        t0 = time.monotonic()
        n = generate_csv(csv, rows=rows, target_bytes=target_bytes)
        gen = time.monotonic() - t0
        size = csv.stat().st_size
        result = _publish(root / "site", csv, "bench-data")
        result.update(label=label, rows=n, csv_mb=round(size / 2**20, 1),
                      generate_seconds=round(gen, 1),
                      mb_per_second=round(size / 2**20 / result["seconds"], 1))
        if result["rows_published"] != n:
            raise SystemExit(f"{label}: published {result['rows_published']} of {n} rows")
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1m,gb", help="1m, gb or both (comma-separated)")
    parser.add_argument("--gb", type=float, default=5.0, help="Size of the large CSV in GB.")
    parser.add_argument("--json", action="store_true", help="Print JSON only.")
    args = parser.parse_args()
    results = []
    for size in args.sizes.split(","):
        if size == "1m":
            results.append(run("1M rows", rows=1_000_000, target_bytes=None))
        elif size == "gb":
            results.append(run(f"{args.gb:g} GB", rows=None,
                               target_bytes=int(args.gb * 1e9)))
        if not args.json:
            r = results[-1]
            print(f"{r['label']}: {r['rows']:,} rows, {r['csv_mb']:,} MiB CSV -> "
                  f"{r['parquet_mb']:,} MiB Parquet in {r['seconds']} s "
                  f"({r['mb_per_second']} MiB/s); peak RSS {r['peak_rss_kernel_mb']} MiB "
                  f"(kernel), {r['peak_rss_sampled_mb']} MiB (sampled)", flush=True)
    machine = {"cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30),
               "python": platform.python_version(), "pyarrow": pa.__version__,
               "kernel": platform.release()}
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2))
    else:
        print(f"machine: {machine}")


if __name__ == "__main__":
    main()

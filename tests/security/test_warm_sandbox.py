"""Warm sandboxes (:mod:`ndl.jobs.warm`) keep every guarantee of a cold run.

Each test runs a job's Python through ``WarmPool.run`` (the job step, ``ndl.jobs.inside``),
asserts that the run was warm (``run`` returned a result, not None for "run it cold"), and that
the attack failed: a warm process sees a fresh slot (nothing of the job before it), no secret
of the datasite's environment, no network, and obeys wall time (counted from the go line),
memory and cancellation. Failures of the warm path (a process killed while idle, a file on
another filesystem, other limits) fall back to a cold run, and a killed process is replaced.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndl.jobs.bundle import from_files
from ndl.jobs.runner import SANDBOX_TMP, JobInput, run_job, step_env
from ndl.jobs.sandbox import BubblewrapSandbox, Limits, Mount, Sandbox, SandboxResult, SandboxSpec
from ndl.jobs.warm import WarmPool

LIMITS = Limits(cpu_seconds=20, wall_seconds=20.0, memory_bytes=1024**3, processes=32,
                output_bytes=40 * 1024**2, tmp_bytes=8 * 1024**2)
SECRET = "warm-test-secret-3f9a"


@pytest.fixture
def pool(sandbox_strict: Sandbox, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[WarmPool]:
    assert isinstance(sandbox_strict, BubblewrapSandbox)
    # A secret in the datasite's own environment must never reach a warm process.
    monkeypatch.setenv("NDL_DATASITE_SECRET", SECRET)
    warm = WarmPool(sandbox_strict, tmp_path / "jobs" / ".warm", env=step_env(SANDBOX_TMP))
    yield warm
    warm.close()


def job_spec(folder: Path, code: str, *, limits: Limits = LIMITS,
             data: dict[str, Path] | None = None) -> SandboxSpec:
    """The job step's spec as the runner builds it, for a Python job printing to stdout."""
    code_dir, out = folder / "code", folder / "out"
    code_dir.mkdir(parents=True)
    out.mkdir()
    (code_dir / "analysis.py").write_text(code, "utf-8")
    mounts = [Mount(code_dir, "/job/code"), Mount(out, "/job/out", writable=True)]
    paths = {}
    for i, (name, path) in enumerate(sorted((data or {}).items())):
        mounts.append(Mount(path, f"/job/data/{i}.parquet"))
        paths[name] = f"/job/data/{i}.parquet"
    cfg = {"language": "python", "entry": "analysis.py", "code": "/job/code", "out": "/job/out",
           "datasets": paths, "outputs": {}, "mock": False}
    return SandboxSpec(argv=[sys.executable, "-I", "-m", "ndl.jobs.inside"], mounts=mounts,
                       workdir="/job/out",
                       env={"NDL_JOB": json.dumps(cfg), **step_env(SANDBOX_TMP)}, limits=limits)


def warm_run(pool: WarmPool, folder: Path, code: str, *, limits: Limits = LIMITS,
             data: dict[str, Path] | None = None,
             cancel: threading.Event | None = None) -> SandboxResult:
    pool.prepare(limits, steps=("job",))
    assert pool.ready("job"), "the warm job sandbox did not start"
    result = pool.run(job_spec(folder, code, limits=limits, data=data), cancel=cancel)
    assert result is not None, "the run was not warm"
    return result


def last_json(result: SandboxResult) -> object:
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def parquet(path: Path, rows: int = 5) -> Path:
    pq.write_table(pa.table({"x": list(range(rows))}), path)
    return path


def test_a_warm_run_reads_its_data_writes_its_output_and_leaves_no_slot(
        pool: WarmPool, tmp_path: Path) -> None:
    data = parquet(tmp_path / "d.parquet", rows=7)
    code = ("import json, os, pyarrow.parquet as pq\n"
            "n = pq.read_table('/job/data/0.parquet').num_rows\n"
            "open('/job/out/result.txt', 'w').write(str(n))\n"
            "print(json.dumps({'rows': n, 'cwd': os.getcwd(), 'uid': os.getuid()}))\n")
    result = warm_run(pool, tmp_path / "a", code, data={"org/d": data})
    assert last_json(result) == {"rows": 7, "cwd": "/job/out", "uid": 65534}
    assert result.mode == "bubblewrap" and result.stopped is None
    # What the job wrote is where the cold run would have left it; the slot is gone.
    assert (tmp_path / "a" / "out" / "result.txt").read_text() == "7"
    assert (tmp_path / "a" / "code" / "analysis.py").is_file()
    assert data.stat().st_nlink == 1, "the slot's hard link to the data was not removed"
    slots = [p.name for p in pool.root.iterdir()]
    assert all(name.startswith("job-") for name in slots) and len(slots) <= 1


def test_a_warm_run_sees_nothing_of_the_job_before_it(pool: WarmPool, tmp_path: Path) -> None:
    first = ("import os\n"
             "open('/job/out/first-secret.txt', 'w').write('s')\n"
             "open('/tmp/first-tmp.txt', 'w').write('s')\n"
             "os.makedirs('/job/out/.ndl', exist_ok=True)\n"
             "print('{}')\n")
    last_json(warm_run(pool, tmp_path / "one", first,
                       data={"org/first": parquet(tmp_path / "first.parquet")}))
    second = ("import json, os, sys\n"
              "seen = {d: sorted(os.listdir(d)) for d in ('/job/code', '/job/out', '/tmp')}\n"
              "seen['data'] = sorted(os.listdir('/job/data'))\n"
              "seen['modules'] = '__main__' in sys.modules and 'first' in "
              "str(vars(sys.modules['__main__']))\n"
              "print(json.dumps(seen))\n")
    seen = last_json(warm_run(pool, tmp_path / "two", second))
    assert seen == {"/job/code": ["analysis.py"], "/job/out": [".ndl"], "/tmp": [],
                    "data": [], "modules": False}


def test_no_secret_reaches_a_warm_process(pool: WarmPool, tmp_path: Path) -> None:
    assert os.environ["NDL_DATASITE_SECRET"] == SECRET
    code = ("import json, os, glob\n"
            "blobs = [open(p, 'rb').read().decode('latin-1') for p in "
            "glob.glob('/proc/[0-9]*/environ')]\n"
            "print(json.dumps({'env': dict(os.environ), 'blobs': blobs}))\n")
    seen = last_json(warm_run(pool, tmp_path / "a", code))
    assert isinstance(seen, dict)
    assert SECRET not in json.dumps(seen)
    # PWD is bwrap's own, set by --chdir as in a cold run.
    assert set(seen["env"]) - {"PWD"} == {"NDL_JOB", *step_env(SANDBOX_TMP)}


def test_a_warm_process_has_no_network(pool: WarmPool, tmp_path: Path) -> None:
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = (f"import json, socket\nout = {{}}\n"
            f"for host in ('127.0.0.1', '1.1.1.1'):\n"
            f"    try:\n"
            f"        socket.create_connection((host, {port}), timeout=2); out[host] = 'open'\n"
            f"    except OSError as e:\n"
            f"        out[host] = type(e).__name__\n"
            f"print(json.dumps(out))\n")
    try:
        seen = last_json(warm_run(pool, tmp_path / "a", code))
    finally:
        listener.close()
    assert isinstance(seen, dict)
    assert "open" not in seen.values()


def test_wall_time_counts_from_the_go_line(pool: WarmPool, tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=20, wall_seconds=1.5, memory_bytes=1024**3, processes=32)
    pool.prepare(limits, steps=("job",))
    assert pool.ready("job")
    time.sleep(2.0)  # idle longer than the wall limit: that time is not the job's
    quick = warm_run(pool, tmp_path / "a", "import time; time.sleep(0.3); print('{}')",
                     limits=limits)
    assert quick.stopped is None and quick.returncode == 0
    slow = warm_run(pool, tmp_path / "b", "import time; time.sleep(60)", limits=limits)
    assert slow.stopped == "wall_time"
    assert slow.wall_seconds < 10


def test_memory_is_limited_in_a_warm_process(pool: WarmPool, tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=20, wall_seconds=30.0, memory_bytes=512 * 1024**2,
                    processes=32)
    result = warm_run(pool, tmp_path / "a", "x = []\nwhile True: x.append(b'x' * 10**7)",
                      limits=limits)
    assert result.returncode != 0
    assert result.stopped == "memory" or b"MemoryError" in result.stderr


def test_cancel_stops_a_warm_run(pool: WarmPool, tmp_path: Path) -> None:
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        result = warm_run(pool, tmp_path / "a", "import time; time.sleep(60)", cancel=cancel)
    finally:
        timer.cancel()
    assert result.stopped == "cancelled" and result.wall_seconds < 10


def test_a_warm_process_killed_while_idle_is_replaced(pool: WarmPool, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    pool.prepare(LIMITS, steps=("job",))
    assert pool.ready("job")
    victim = pool._slots["job"].started
    assert victim is not None
    os.killpg(victim.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not victim.alive()
    # The next job still runs, and a new warm process takes the dead one's place.
    result = warm_run(pool, tmp_path / "a", "print('{\"ok\": 1}')")
    assert last_json(result) == {"ok": 1}
    assert pool.ready("job")
    fresh = pool._slots["job"].started
    assert fresh is not None and fresh is not victim and fresh.alive()


def test_a_dead_warm_process_met_by_a_job_means_a_cold_run(pool: WarmPool, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    pool.prepare(LIMITS, steps=("job",))
    assert pool.ready("job")
    victim = pool._slots["job"].started
    assert victim is not None
    os.killpg(victim.proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    with caplog.at_level("INFO", logger="ndl.jobs"):
        assert pool.run(job_spec(tmp_path / "a", "print(1)")) is None
    assert "exited while idle" in caplog.text
    assert pool.ready("job"), "no new warm process after the dead one"


def test_data_on_another_filesystem_runs_cold_and_is_never_copied(
        pool: WarmPool, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem to put the data on")
    data = parquet(shm / f"ndl-warm-{os.getpid()}.parquet")
    try:
        pool.prepare(LIMITS, steps=("job",))
        assert pool.ready("job")
        spec = job_spec(tmp_path / "a", "print(1)", data={"org/d": data})
        with caplog.at_level("INFO", logger="ndl.jobs"):
            assert pool.run(spec) is None
        assert "running it cold" in caplog.text
        assert not any(p.name.endswith(".parquet") for p in pool.root.rglob("*"))
        assert sorted(os.listdir(tmp_path / "a" / "code")) == ["analysis.py"]
    finally:
        data.unlink()


def test_other_limits_run_cold_and_the_pool_follows(pool: WarmPool, tmp_path: Path) -> None:
    pool.prepare(LIMITS, steps=("job",))
    assert pool.ready("job")
    other = Limits(cpu_seconds=21, wall_seconds=20.0, memory_bytes=1024**3, processes=32)
    assert pool.run(job_spec(tmp_path / "a", "print(1)", limits=other)) is None
    assert pool.ready("job")
    assert pool._slots["job"].limits == other


def test_close_stops_every_warm_process(sandbox_strict: Sandbox, tmp_path: Path) -> None:
    assert isinstance(sandbox_strict, BubblewrapSandbox)
    warm = WarmPool(sandbox_strict, tmp_path / ".warm", env=step_env(SANDBOX_TMP))
    warm.prepare(LIMITS)
    assert warm.ready("job") and warm.ready("evidence")
    started = [s.started for s in warm._slots.values()]
    warm.close()
    assert all(s is not None and not s.alive() for s in started)
    assert not (tmp_path / ".warm").exists()
    assert warm.run(job_spec(tmp_path / "a", "print(1)")) is None


def test_run_job_gives_the_same_outcome_warm_and_cold(sandbox_strict: Sandbox, pool: WarmPool,
                                                     tmp_path: Path) -> None:
    data = tmp_path / "pupils.parquet"
    pq.write_table(pa.table({"region": ["North"] * 30 + ["South"] * 20 + ["East"] * 3,
                             "score": list(range(53))}), data)
    manifest = ('name = "w"\nlanguage = "python"\nentry = "analysis.py"\n'
                'environment = "python-data"\ndatasets = ["org/pupils"]\ncontext = "T."\n'
                '\n[[outputs]]\nname = "by_region"\nkind = "table"\ndescription = "d"\n')
    code = ("from ndl import job\nd = job.dataset('org/pupils', as_='pandas')\n"
            "job.table('by_region', d, by='region')\n")
    bundle = from_files({"ndl-job.toml": manifest, "analysis.py": code})
    pool.prepare(LIMITS)
    assert pool.ready("job") and pool.ready("evidence")
    used: list[str] = []
    real_run = pool.run

    def counting_run(spec: SandboxSpec, *, cancel: threading.Event | None = None
                     ) -> SandboxResult | None:
        result = real_run(spec, cancel=cancel)
        used.append(spec.argv[-1] if result is not None else "cold")
        return result

    pool.run = counting_run  # type: ignore[method-assign]
    tables, suppressed = {}, {}
    for name, warm in (("cold", None), ("warm", pool)):
        outcome = run_job(JobInput(job_id=f"j-{name}", bundle=bundle,
                                   datasets={"org/pupils": data}, project="p", limits=LIMITS),
                          sandbox=sandbox_strict, ledger=None, workdir=tmp_path / "jobs",
                          warm=warm)
        assert outcome.ok, outcome.error
        assert outcome.archive is not None and outcome.report is not None
        with zipfile.ZipFile(outcome.archive) as z:
            tables[name] = z.read("by_region.csv")
        suppressed[name] = [o.suppressed for o in outcome.report.outputs]
    assert used == ["ndl.jobs.inside", "ndl.jobs.evidence"]
    assert tables["warm"] == tables["cold"]
    assert suppressed["warm"] == suppressed["cold"] and suppressed["warm"][0] >= 1
    assert b"East,[suppressed]" in tables["warm"]


def test_a_warm_step_ends_as_an_interpreter_would(pool: WarmPool, tmp_path: Path) -> None:
    # The warm process skips module teardown at exit: what a job leaves to the exit (a file
    # left open, a thread still writing, an atexit function) must still happen.
    code = ("import atexit, json, threading, time\n"
            "json.kept = open('/job/out/open.txt', 'w')\n"
            "json.kept.write('left open')\n"
            "def late():\n"
            "    time.sleep(0.3)\n"
            "    open('/job/out/thread.txt', 'w').write('from a thread')\n"
            "threading.Thread(target=late).start()\n"
            "atexit.register(lambda: open('/job/out/atexit.txt', 'w').write('at exit'))\n"
            "print('done')\n")
    result = warm_run(pool, tmp_path / "a", code)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "a" / "out"
    assert (out / "open.txt").read_text() == "left open"
    assert (out / "thread.txt").read_text() == "from a thread"
    assert (out / "atexit.txt").read_text() == "at exit"
    assert result.stdout.strip() == b"done"
    assert b"leaked" not in result.stderr

"""Warm sandboxes: a step's interpreter started, and its imports done, before the job arrives.

A cold sandboxed step (:mod:`.runner`) pays an interpreter start and the imports of pandas,
pyarrow and ndl (about half a second) before the job's first line. A :class:`WarmPool` keeps,
for each step ("job", then "evidence"), ONE bubblewrap process started ahead of time by
:meth:`BubblewrapSandbox.start`, the very code a cold run uses (same bwrap flags, seccomp
filter, empty environment plus the step's fixed variables, rlimits, cgroup). It imports what
its step needs, says it is ready, and blocks reading one configuration line from stdin.

Its mounts are the sub-folders of a fresh *slot* folder under the datasite's jobs folder (mode
0700), bound where a cold run binds the job's: for the job step the code and data read-only
and the output writable; for the evidence step the job's output read-only and the stats
writable. :meth:`WarmPool.run` takes the spec of a cold run, fills the slot from it (the
folders' entries are moved in, the granted Parquet files hard-linked; a file on another
filesystem is never copied), sends the go line and supervises the process exactly as a cold
run, the wall time counted from the go line. Then the entries go back where the spec had them,
the slot is removed and a fresh process is started for the next job: a warm process serves one
job only. Whatever a warm process cannot do (different limits or environment, a link across
filesystems, a process that died or failed while idle) makes :meth:`WarmPool.run` return None,
logged at INFO, and the caller runs the step cold.

Inside the sandbox this module is the program: ``python -I -m ndl.jobs.warm job``.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import io
import json
import logging
import os
import queue
import secrets
import select
import shutil
import sys
import threading
import traceback
from pathlib import Path, PurePosixPath

from ndl.jobs.sandbox import (
    BubblewrapSandbox,
    Limits,
    Mount,
    SandboxResult,
    SandboxSpec,
    Started,
    runtime_mounts,
)

log = logging.getLogger("ndl.jobs")

# The module each step runs, and where a warm process of that step has its slot's folders
# bound (True: the one writable folder, which is also its working directory).
MODULES = {"job": "ndl.jobs.inside", "evidence": "ndl.jobs.evidence"}
LAYOUT: dict[str, dict[str, bool]] = {
    "job": {"/job/code": False, "/job/data": False, "/job/out": True},
    "evidence": {"/job/in": False, "/job/stats": True},
}
# Imported before the go line. Not statsmodels (1.2 s) nor matplotlib: few jobs need them.
PRELOAD = {
    "job": ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "duckdb", "ndl.job",
            "ndl.jobs.inside"),
    "evidence": ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "ndl.job",
                 "ndl.jobs.evidence"),
}
READY = b"ndl-warm-ready\n"
READY_SECONDS = 60.0
# Warm starts that failed in a row before the pool stops trying (every step then runs cold).
MAX_FAILURES = 3


class _Unfit(Exception):
    """This spec cannot run in a warm process; the message says why (logged, then cold)."""


class _Slot:
    """One warm process of one step, and the host folder whose sub-folders it sees."""

    def __init__(self, step: str, folder: Path, limits: Limits) -> None:
        self.step, self.folder, self.limits = step, folder, limits
        self.ready = threading.Event()
        self.started: Started | None = None
        self.error: str | None = None
        self.used = False
        self._closing = threading.Lock()
        self.dirs = {target: folder / PurePosixPath(target).name for target in LAYOUT[step]}
        self.workdir = next(t for t, writable in LAYOUT[step].items() if writable)

    def spawn(self, sandbox: BubblewrapSandbox, env: dict[str, str]) -> None:
        """Start the process (on the pool's long-lived thread: bwrap dies with its parent
        *thread*)."""
        self.folder.mkdir(mode=0o700, parents=True)
        for path in self.dirs.values():
            path.mkdir(mode=0o700)
        spec = SandboxSpec(
            argv=[sys.executable, "-I", "-m", "ndl.jobs.warm", self.step],
            mounts=[Mount(self.dirs[t], t, writable=w) for t, w in LAYOUT[self.step].items()],
            workdir=self.workdir, env=env, limits=self.limits)
        self.started = sandbox.start(spec)

    def await_ready(self) -> None:
        """Wait for the ready line; a process that does not send it is discarded."""
        try:
            assert self.started is not None and self.started.proc.stdout is not None
            fd = self.started.proc.stdout.fileno()
            seen = b""
            while not seen.endswith(READY):
                readable, _, _ = select.select([fd], [], [], READY_SECONDS)
                chunk = os.read(fd, 4096) if readable else b""
                if not chunk:
                    raise OSError("it exited or stayed silent before it was ready: "
                                  + self._stderr_tail())
                seen = (seen + chunk)[-65536:]
        except Exception as exc:  # any failure only means: no warm process
            self.error = str(exc) or type(exc).__name__
            self.close()
        finally:
            self.ready.set()

    def _stderr_tail(self) -> str:
        assert self.started is not None and self.started.proc.stderr is not None
        fd = self.started.proc.stderr.fileno()
        if select.select([fd], [], [], 0.5)[0]:
            with contextlib.suppress(OSError):
                return os.read(fd, 65536).decode("utf-8", "replace").strip()[-300:]
        return "(nothing on stderr)"

    def plan(self, spec: SandboxSpec) -> list[tuple[Mount, Path]]:
        """Where each of ``spec``'s own mounts goes in this slot; _Unfit if one has no place."""
        layout = LAYOUT[self.step]
        runtime = set(runtime_mounts())
        plan: list[tuple[Mount, Path]] = []
        for m in spec.mounts:
            if m in runtime:
                continue
            parent = str(PurePosixPath(m.target).parent)
            if m.target in layout and layout[m.target] == m.writable and m.source.is_dir() \
                    and not m.source.is_symlink():
                if m.writable and any(m.source.iterdir()):
                    raise _Unfit(f"the writable folder for {m.target} is not empty")
                plan.append((m, self.dirs[m.target]))
            elif parent in layout and not layout[parent] and not m.writable \
                    and m.source.is_file():
                plan.append((m, self.dirs[parent] / PurePosixPath(m.target).name))
            else:
                raise _Unfit(f"mount {m.target} has no place in a warm {self.step} sandbox")
        if {m.target for m in spec.mounts if m.writable} != {self.workdir} \
                or spec.workdir != self.workdir:
            raise _Unfit(f"the {self.step} step's writable folder is not {self.workdir}")
        return plan

    def dead(self) -> bool:
        """True once it is known this process will never serve (it failed or exited)."""
        return self.ready.is_set() and (self.error is not None or self.started is None
                                        or not self.started.alive())

    def close(self) -> None:
        """Kill the process if it never served, and remove the slot folder."""
        with self._closing:
            if self.started is not None and not self.used:
                self.used = True
                self.started.discard()
        shutil.rmtree(self.folder, ignore_errors=True)


def _fill(plan: list[tuple[Mount, Path]]) -> list[tuple[Path, Path]]:
    """Put the spec's files in the slot; returns the moves to undo (slot path, its home)."""
    moved: list[tuple[Path, Path]] = []
    try:
        for mount, dest in plan:
            if mount.writable:
                continue  # empty: the slot's folder takes its place after the run
            if mount.source.is_dir():
                for entry in os.scandir(mount.source):
                    os.rename(entry.path, dest / entry.name)
                    moved.append((dest / entry.name, Path(entry.path)))
            else:
                # A hard link costs nothing and is the very file; across filesystems it
                # fails, and the step runs cold rather than copy a file of any size.
                os.link(mount.source, dest)
    except OSError:
        _unfill(moved)
        raise
    return moved


def _unfill(moved: list[tuple[Path, Path]]) -> None:
    for now, home in reversed(moved):
        os.rename(now, home)


class WarmPool:
    """One warm bubblewrap process per step for one datasite; see the module docstring."""

    def __init__(self, sandbox: BubblewrapSandbox, root: Path, *, env: dict[str, str]) -> None:
        """``root``: the folder slots are made in (a datasite's ``jobs/.warm``); ``env``: the
        fixed environment of every step, to which the go line adds the configuration."""
        self.sandbox, self.root, self.env = sandbox, root, dict(env)
        # Left over from a previous run of the datasite: nothing in it is in use.
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(mode=0o700, parents=True)
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._failures = 0
        self._spawns: queue.Queue[_Slot | None] = queue.Queue()
        self._starter = threading.Thread(target=self._start_loop, name="ndl-warm-starter",
                                         daemon=True)
        self._starter.start()

    def prepare(self, limits: Limits, steps: tuple[str, ...] = tuple(LAYOUT)) -> None:
        """Have a warm process starting, or waiting, for each of ``steps``, under ``limits``
        (one that died while idle is replaced)."""
        for step in steps:
            self._ensure(step, limits)

    def ready(self, step: str, timeout: float = READY_SECONDS) -> bool:
        """Wait until the warm process of ``step`` waits for a job; False if there is none,
        it failed, or it is not ready within ``timeout`` seconds."""
        with self._lock:
            slot = self._slots.get(step)
        return slot is not None and slot.ready.wait(timeout) and not slot.dead()

    def run(self, spec: SandboxSpec, *,
            cancel: threading.Event | None = None) -> SandboxResult | None:
        """Run ``spec`` (a cold run's spec) in the warm process of its step; None when it
        cannot, and the caller then runs it cold."""
        step = next((s for s, module in MODULES.items()
                     if spec.argv == [sys.executable, "-I", "-m", module]), None)
        if step is None:
            return None
        extra = {k: v for k, v in spec.env.items() if k not in self.env}
        if any(spec.env.get(k) != v for k, v in self.env.items()):
            log.info("the %s step's environment differs from the warm one's: running it cold",
                     step)
            return None
        with self._lock:
            slot = None if self._closed else self._slots.pop(step, None)
        # The next job's process starts now, so it is ready by the time that job arrives
        # (jobs back to back come sooner than an interpreter imports pandas).
        self._ensure(step, spec.limits)
        if slot is None:
            log.info("no warm sandbox for the %s step yet: running it cold", step)
            return None
        try:
            return self._serve(slot, spec, extra, cancel)
        finally:
            slot.close()

    def _serve(self, slot: _Slot, spec: SandboxSpec, extra: dict[str, str],
               cancel: threading.Event | None) -> SandboxResult | None:
        slot.ready.wait(READY_SECONDS)
        started = slot.started
        if started is None or slot.error is not None or not slot.ready.is_set():
            log.info("the warm %s sandbox failed to start (%s): running the step cold",
                     slot.step, slot.error or "not ready in time")
            return None
        if slot.limits != spec.limits:
            log.info("the warm %s sandbox has other limits: running the step cold", slot.step)
            return None
        if not started.alive():
            log.info("the warm %s sandbox exited while idle: running the step cold and "
                     "starting another", slot.step)
            return None
        try:
            plan = slot.plan(spec)
            moved = _fill(plan)
        except (_Unfit, OSError) as exc:
            log.info("the %s step cannot use its warm sandbox (%s): running it cold",
                     slot.step, exc)
            return None
        homes = {dest: m.source for m, dest in plan if m.writable}
        try:
            assert started.proc.stdin is not None
            try:
                started.proc.stdin.write(json.dumps({"env": extra}).encode() + b"\n")
                started.proc.stdin.close()
            except OSError as exc:
                log.info("the warm %s sandbox could not be given its job (%s): running the "
                         "step cold", slot.step, exc)
                return None
            slot.used = True
            return started.supervise(cancel)
        finally:
            _unfill(moved)
            if slot.used:
                for dest, home in homes.items():
                    # The spec's folder was emptied into the slot: the slot's folder, with
                    # what the job wrote, takes its place.
                    os.rename(dest, home)

    def close(self) -> None:
        """Stop every warm process and remove the slots; later runs return None."""
        with self._lock:
            self._closed = True
            slots = list(self._slots.values())
            self._slots.clear()
        self._spawns.put(None)
        for slot in slots:
            slot.ready.wait(READY_SECONDS)
            slot.close()
        self._starter.join(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def _ensure(self, step: str, limits: Limits) -> None:
        with self._lock:
            current = self._slots.get(step)
            if self._closed or self._failures >= MAX_FAILURES or (
                    current is not None and current.limits == limits and not current.dead()):
                return
            slot = _Slot(step, self.root / f"{step}-{secrets.token_hex(8)}", limits)
            self._slots[step] = slot
        if current is not None:
            threading.Thread(target=_close_when_ready, args=(current,), daemon=True).start()
        self._spawns.put(slot)

    def _start_loop(self) -> None:
        while (slot := self._spawns.get()) is not None:
            try:
                slot.spawn(self.sandbox, self.env)
            except Exception as exc:  # no warm process: every step simply runs cold
                slot.error = str(exc) or type(exc).__name__
                slot.close()
                slot.ready.set()
                self._failed(slot)
                continue
            threading.Thread(target=self._watch_ready, args=(slot,), daemon=True).start()

    def _watch_ready(self, slot: _Slot) -> None:
        slot.await_ready()
        if slot.error is not None:
            self._failed(slot)
        else:
            with self._lock:
                self._failures = 0

    def _failed(self, slot: _Slot) -> None:
        with self._lock:
            self._failures += 1
            if self._slots.get(slot.step) is slot:
                del self._slots[slot.step]
            stop = self._failures == MAX_FAILURES
        log.info("a warm %s sandbox failed to start: %s", slot.step, slot.error)
        if stop:
            log.warning("warm sandboxes failed to start %d times in a row: every job step "
                        "now starts cold", MAX_FAILURES)


def _close_when_ready(slot: _Slot) -> None:
    slot.ready.wait(READY_SECONDS)
    slot.close()


def _serve_inside(step: str) -> int:
    """The program in the sandbox: import, say ready, read the go line, run the step."""
    for name in PRELOAD[step]:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # What was imported lives until exit: the collector need not look at it again, and the
    # exit below finds the step's own objects quickly.
    gc.freeze()
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    line = sys.stdin.buffer.readline()
    if not line:
        return 0  # the pool closed without a job for us
    for key, value in json.loads(line)["env"].items():
        os.environ[key] = value
    # As in a cold run, the job's stdin is empty.
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    main = importlib.import_module(MODULES[step]).main
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    _exit(int(code))
    return int(code)  # pragma: no cover - _exit does not return


def _exit(code: int) -> None:
    """Exit as the interpreter would, less the teardown of every imported module (~60 ms
    with pandas, pyarrow and duckdb loaded, paid on every step): the step's threads are
    joined, its atexit functions run, its garbage collected and every file it still has
    open flushed; then the process ends."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    gc.collect()
    for generation in (0, 1, 2):
        for obj in gc.get_objects(generation):
            if isinstance(obj, io.IOBase):
                with contextlib.suppress(Exception):
                    if not obj.closed and obj.writable():
                        obj.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(_serve_inside(sys.argv[1]))

"""Supervising one sandboxed process: its output streams (capped), its exit (a pidfd wakes us
at once), wall time, output size, cancellation, CPU time, and the cgroup left behind.

Used by both sandboxes of :mod:`ndl.jobs.sandbox` and by the warm pool; the rules about what
may be run and mounted stay there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal

from ndl.jobs.cgroups import RunCgroup
from ndl.jobs.sandbox_types import (
    POLL_SECONDS,
    STREAM_CAP,
    TRUNCATED,
    Limits,
    SandboxResult,
    Stopped,
    _neutralise_output,
    output_size,
)

log = logging.getLogger("ndl.jobs")


class _Capture(threading.Thread):
    """Drains one pipe to the end, keeping the first STREAM_CAP bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.chunks: list[bytes] = []
        self.kept = 0
        self.truncated = False

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(self.pipe.fileno(), 65536):
                room = STREAM_CAP - self.kept
                if room > 0:
                    self.chunks.append(chunk[:room])
                    self.kept += min(room, len(chunk))
                if len(chunk) > room:
                    # Keep reading: a job blocked on a full pipe would hang until wall time.
                    self.truncated = True

    def value(self) -> bytes:
        return b"".join(self.chunks) + (TRUNCATED if self.truncated else b"")


def _rlimits(limits: Limits, *, memory_rlimit: bool) -> list[tuple[int, tuple[int, int]]]:
    out = [
        (resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 2)),
        (resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes)),
        (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if os.geteuid() != 0:
        # Counts every process of this uid, so the datasite's own use leaves room for the job.
        out.append((resource.RLIMIT_NPROC, (limits.processes + _user_processes(),) * 2))
    if memory_rlimit:
        out.append((resource.RLIMIT_DATA, (limits.memory_bytes, limits.memory_bytes)))
    return out


def _user_processes() -> int:
    uid = str(os.getuid())
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("Uid:"):
                        count += line.split()[1] == uid
                        break
    return count


def _preexec(procs_files: list[str],
             rlimits: list[tuple[int, tuple[int, int]]]) -> Callable[[], None]:
    """What the child does between fork and exec: join the run's cgroups, then take limits."""
    def child() -> None:
        me = str(os.getpid()).encode()
        for path in procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, me)
            finally:
                os.close(fd)
        for which, value in rlimits:
            resource.setrlimit(which, value)

    return child


class _Run:
    """One supervised process: stream capture, wall time, output size, cancel, cleanup."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: str | None,
                 limits: Limits, watched: list[Path], cgroup: RunCgroup | None,
                 rlimits: list[tuple[int, tuple[int, int]]], pass_fds: tuple[int, ...] = ()):
        self.argv, self.env, self.cwd = argv, env, cwd
        self.limits, self.watched, self.cgroup = limits, watched, cgroup
        self.rlimits, self.pass_fds = rlimits, pass_fds

    def go(self, cancel: threading.Event | None,
           mode: Literal["bubblewrap", "weaker"]) -> SandboxResult:
        started = time.monotonic()
        return self.supervise(self.start(subprocess.DEVNULL), started, cancel, mode)

    def start(self, stdin: int) -> subprocess.Popen[bytes]:
        """Start the process in its cgroup with its rlimits; nothing reads its output yet."""
        procs = self.cgroup.procs_files if self.cgroup else []
        return subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=stdin,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True,
            pass_fds=self.pass_fds, start_new_session=True,
            preexec_fn=_preexec(procs, self.rlimits),
        )

    def supervise(self, proc: subprocess.Popen[bytes], started: float,
                  cancel: threading.Event | None,
                  mode: Literal["bubblewrap", "weaker"]) -> SandboxResult:
        """Capture, watch the limits (wall time from ``started``) and reap ``proc``."""
        assert proc.stdout is not None and proc.stderr is not None
        out, err = _Capture(proc.stdout), _Capture(proc.stderr)
        out.start()
        err.start()
        stopped: Stopped | None = None
        exited = _ExitWaiter(proc.pid)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if stopped is None:
                    stopped = self._reason(started, cancel)
                    if stopped is not None:
                        self._kill(proc.pid)
                # Woken the moment the child exits; otherwise the limits are looked at again
                # after POLL_SECONDS.
                exited(POLL_SECONDS)
        except BaseException:
            self._kill(proc.pid)
            proc.wait()
            raise
        finally:
            exited.close()
            # Whatever the job left behind (daemonised children) dies with it.
            if self.cgroup is not None:
                self.cgroup.kill_all()
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # reaped by wait4 above (which also gave us its rusage)
        out.join(timeout=5)
        err.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
        if stopped is None and self.cgroup is not None and self.cgroup.oom_killed():
            stopped = "memory"
        if stopped is None and usage is not None and _cpu_stopped(code, usage, self.limits):
            stopped = "cpu_time"
        if stopped is None and output_size(self.watched) > self.limits.output_bytes:
            stopped = "output_size"
        if self.cgroup is not None:
            self.cgroup.remove()
        return SandboxResult(returncode=code, stdout=out.value(), stderr=err.value(),
                             wall_seconds=time.monotonic() - started, stopped=stopped, mode=mode)

    def _reason(self, started: float, cancel: threading.Event | None) -> Stopped | None:
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if time.monotonic() - started > self.limits.wall_seconds:
            return "wall_time"
        if self.watched and output_size(self.watched) > self.limits.output_bytes:
            return "output_size"
        return None

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill and reap a process that will never be supervised; remove its cgroup."""
        self._kill(proc.pid)
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if self.cgroup is not None:
            self.cgroup.remove()


class Started:
    """A bubblewrap process started ahead of its work (a warm sandbox), not yet supervised.

    It has every isolation and limit of a cold run from its first instruction; what is left
    for :meth:`supervise` is the watching, whose wall time is counted from that call.
    """

    def __init__(self, run: _Run, proc: subprocess.Popen[bytes]) -> None:
        self.run, self.proc = run, proc
        self.limits = run.limits

    def alive(self) -> bool:
        """True while the process has not exited (it is not reaped by asking)."""
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is None

    def supervise(self, cancel: threading.Event | None = None) -> SandboxResult:
        """Watch the process to its end exactly as a cold run is watched."""
        try:
            return self.run.supervise(self.proc, time.monotonic(), cancel, "bubblewrap")
        finally:
            _neutralise_output(self.run.watched)

    def discard(self) -> None:
        """Kill it unused (idempotent enough: a dead process is just reaped)."""
        self.run.discard(self.proc)


class _ExitWaiter:
    """Sleeps until a child exits or a timeout passes, whichever is first.

    A pidfd (Linux >= 5.3) becomes readable when the process exits, so the supervisor wakes at
    once instead of up to a whole polling interval late; where there is none, it sleeps.
    """

    def __init__(self, pid: int) -> None:
        self.fd: int | None = None
        self.poller: select.poll | None = None
        with contextlib.suppress(OSError, AttributeError):
            self.fd = os.pidfd_open(pid)
            self.poller = select.poll()
            self.poller.register(self.fd, select.POLLIN)

    def __call__(self, seconds: float) -> None:
        if self.poller is None:
            time.sleep(seconds)
            return
        self.poller.poll(seconds * 1000)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd, self.poller = None, None


def _cpu_stopped(code: int, usage: resource.struct_rusage, limits: Limits) -> bool:
    """The job died of RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.

    bubblewrap reports a signal death of its child as 128 + the signal number.
    """
    signals = {signal.SIGXCPU, signal.SIGKILL}
    died_of = -code if code < 0 else code - 128 if code > 128 else 0
    used = usage.ru_utime + usage.ru_stime
    return died_of in signals and (died_of == signal.SIGXCPU or used >= limits.cpu_seconds)



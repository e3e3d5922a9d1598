"""The controlled tier's sandbox: a researcher's reviewed code run in real isolation.

:class:`BubblewrapSandbox` (strict, the default) gives each run fresh user, pid, network, ipc,
uts and cgroup namespaces, a filesystem holding only this Python's runtime and the granted
mounts, an empty environment plus what the caller names, no capabilities, a seccomp filter
(:mod:`.seccomp_filter`), rlimits, and, when running as root, a cgroup (:mod:`.cgroups`) that
caps processes and memory. Wall time, cancellation and the output folder's size are watched
from outside. :class:`WeakerSandbox` is the operator's explicit, logged fallback when bubblewrap
cannot be had: limits and a clean environment, but no filesystem or network isolation.

Memory: ``RLIMIT_AS`` was measured to break the job environment (a 2-million-row Polars →
DuckDB → pyarrow round trip fails under a 1 GiB address-space limit while using ~100 MB, since
these libraries reserve large virtual ranges), so it is never set. A cgroup limit is used where
we can make one (root, or a delegated v2 group); otherwise ``RLIMIT_DATA``, which counts only
writable private memory and passed the same workload at 1 GiB.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

from ndl.core.errors import InvalidInput, SandboxUnavailable
from ndl.jobs.cgroups import RunCgroup, cgroups_available, create_run_cgroup
from ndl.jobs.seccomp_filter import SeccompUnavailable, seccomp_filter_fd

log = logging.getLogger("ndl.jobs")

STREAM_CAP = 1024 * 1024
TRUNCATED = b"\n[truncated]\n"
SANDBOX_UID = 65534
POLL_SECONDS = 0.1
FIX = ("install bubblewrap (apt-get install bubblewrap), or start the datasite with "
       "--sandbox weaker, which is logged")

Stopped = Literal["wall_time", "cpu_time", "memory", "output_size", "cancelled"]


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 300
    wall_seconds: float = 600.0
    memory_bytes: int = 2 * 1024**3
    processes: int = 64
    file_bytes: int = 100 * 1024**2
    output_bytes: int = 200 * 1024**2
    open_files: int = 256
    tmp_bytes: int = 64 * 1024**2


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class SandboxSpec:
    argv: list[str]
    mounts: list[Mount]
    workdir: str
    env: dict[str, str]
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class SandboxResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    wall_seconds: float
    stopped: Stopped | None
    mode: Literal["bubblewrap", "weaker"]


class Sandbox(Protocol):
    mode: Literal["bubblewrap", "weaker"]

    def run(self, spec: SandboxSpec, *, cancel: threading.Event | None = None) -> SandboxResult:
        """Run ``spec`` to completion (or until a limit or ``cancel`` stops it)."""
        ...

    def inside_path(self, mount: Mount) -> str:
        """The path under which the job sees ``mount``; build argv and env from it."""
        ...


def runtime_mounts() -> list[Mount]:
    """Read-only binds needed to run this Python inside the sandbox, and nothing more.

    Never /etc, /root, /home, /tmp or the datasite's folders: only the interpreter, its prefixes,
    the system libraries and, for an editable install, the folder holding the ``ndl`` package.
    """
    import ndl

    wanted: list[tuple[Path, str]] = []
    for name in ("/usr", "/lib", "/lib64", "/bin"):
        path = Path(name)
        if path.is_dir():
            # On merged-/usr systems /lib is a symlink: bind what it points at under its name.
            wanted.append((path.resolve(), name))
    for prefix in (sys.base_prefix, sys.prefix, os.path.realpath(sys.executable)):
        real = Path(prefix).resolve()
        wanted.append((real, str(real)))
        if str(Path(prefix).absolute()) != str(real):
            wanted.append((real, str(Path(prefix).absolute())))
    package_home = Path(ndl.__file__).resolve().parent.parent
    wanted.append((package_home, str(package_home)))
    mounts: list[Mount] = []
    for source, target in sorted(set(wanted), key=lambda item: item[1]):
        # A target already inside a bound tree (same source path) is visible through it.
        if any(_under(target, m.target) and _under(str(source), str(m.source))
               and target == str(source) for m in mounts):
            continue
        mounts.append(Mount(source=source, target=target))
    return mounts


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def safe_output_files(out: Path) -> list[Path]:
    """The regular files under ``out`` the caller may read, after refusing anything unsafe.

    Raises InvalidInput on a symlink, a hard-linked file (it may alias a file elsewhere), a
    device, fifo or socket, a setuid/setgid file, or a name holding '..' or a control character
    — a job's output folder holds none of those unless the job is attacking its reader.
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(out, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            if name in ("..", ".") or ".." in name or any(ord(c) < 32 or ord(c) == 127
                                                           for c in name):
                raise InvalidInput(f"output name {name!r} under {root} holds '..' or a "
                                   "control character; outputs must have plain names")
            st = path.lstat()
            where = path.relative_to(out)
            if stat.S_ISLNK(st.st_mode):
                raise InvalidInput(f"output {where} is a symbolic link; jobs must write "
                                   "regular files, not links")
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise InvalidInput(f"output {where} is not a regular file (device, fifo or "
                                   "socket); jobs must write regular files")
            if st.st_nlink > 1:
                raise InvalidInput(f"output {where} has {st.st_nlink} hard links; jobs must "
                                   "write new files, not links to existing ones")
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                raise InvalidInput(f"output {where} is setuid/setgid; outputs must be plain "
                                   "data files")
            found.append(path)
    return sorted(found)


def output_size(paths: Sequence[Path]) -> int:
    """Total apparent size of everything under ``paths`` (links not followed; sparse counted)."""
    total = 0
    stack = list(paths)
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        total += max(st.st_size, st.st_blocks * 512)
                        if stat.S_ISDIR(st.st_mode):
                            stack.append(Path(entry.path))
        except OSError:
            continue
    return total


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


def _check_spec(spec: SandboxSpec) -> None:
    if not spec.argv:
        raise InvalidInput("the sandbox spec has an empty argv; give the program to run")
    for key in spec.env:
        if not key or "=" in key or "\0" in key or "\0" in spec.env[key]:
            raise InvalidInput(f"environment name {key!r} is not valid; use NAME=value "
                               "names without '=' or NUL")
    for mount in spec.mounts:
        target = mount.target
        if (not target.startswith("/") or target == "/" or ".." in target.split("/")
                or any(_under(target, p) for p in ("/proc", "/dev"))):
            raise InvalidInput(f"mount target {target!r} must be an absolute path other than "
                               "/, /proc or /dev, without '..'")
        if not mount.source.exists():
            raise InvalidInput(f"mount source {mount.source} does not exist; create it first")


def _prepare_output(mount: Mount) -> None:
    """The writable folder belongs to the run: make it the sandbox user's own."""
    if not mount.source.is_dir():
        raise InvalidInput(f"writable mount {mount.source} must be a directory")
    if os.geteuid() == 0:
        os.chown(mount.source, 0, 0)
    os.chmod(mount.source, 0o700)


def _neutralise_output(paths: Sequence[Path]) -> None:
    """Strip setuid/setgid bits the job set: its uid maps to ours, maybe root, outside."""
    for top in paths:
        for root, dirs, files in os.walk(top, followlinks=False):
            for name in dirs + files:
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o7000:
                        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o777)


class BubblewrapSandbox:
    """Strict isolation with bubblewrap; see the module docstring for what each run gets."""

    mode: Literal["bubblewrap", "weaker"] = "bubblewrap"

    def __init__(self, bwrap: str, *, use_cgroup: bool) -> None:
        self.bwrap = bwrap
        self.use_cgroup = use_cgroup

    def inside_path(self, mount: Mount) -> str:
        return mount.target

    def command(self, spec: SandboxSpec, seccomp_fd: int) -> list[str]:
        """The bwrap argv for ``spec`` (exposed so tests can read what is asked of bwrap)."""
        args = [
            self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
        ]
        for key, value in sorted(spec.env.items()):
            args += ["--setenv", key, value]
        # Every writable in-memory folder gets a size: /tmp and /dev/shm (Python's
        # multiprocessing needs it) are private tmpfs of tmp_bytes each; /dev itself is made
        # read-only so it cannot be filled.
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(spec.limits.tmp_bytes), "--tmpfs", "/dev/shm",  # noqa: S108
                 "--remount-ro", "/dev",
                 "--size", str(spec.limits.tmp_bytes), "--tmpfs", "/tmp"]  # noqa: S108
        # Parents before children, so a bind inside another lands on top of it.
        mounts = sorted([*runtime_mounts(), *spec.mounts],
                        key=lambda m: (m.target.count("/"), m.target))
        for mount in mounts:
            args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
        # bwrap's root is a tmpfs the job could otherwise fill without any size limit.
        args += ["--remount-ro", "/"]
        args += ["--chdir", spec.workdir, "--seccomp", str(seccomp_fd), "--", *spec.argv]
        return args

    def run(self, spec: SandboxSpec, *, cancel: threading.Event | None = None) -> SandboxResult:
        """Run ``spec`` inside bubblewrap; the result says whether a limit stopped it."""
        runner, fd = self._prepare(spec)
        try:
            return runner.go(cancel, self.mode)
        finally:
            os.close(fd)
            _neutralise_output(runner.watched)

    def start(self, spec: SandboxSpec) -> Started:
        """Start ``spec`` now, its stdin a pipe, to be supervised later (a warm sandbox)."""
        runner, fd = self._prepare(spec)
        try:
            return Started(runner, runner.start(subprocess.PIPE))
        except BaseException:
            if runner.cgroup is not None:
                runner.cgroup.remove()
            raise
        finally:
            os.close(fd)

    def _prepare(self, spec: SandboxSpec) -> tuple[_Run, int]:
        """The supervised run of ``spec`` and its seccomp fd (the caller closes it)."""
        _check_spec(spec)
        writable = [m for m in spec.mounts if m.writable]
        for mount in writable:
            _prepare_output(mount)
        try:
            fd = seccomp_filter_fd()
        except SeccompUnavailable as exc:
            raise SandboxUnavailable(f"{exc}; {FIX}") from exc
        cgroup = None
        try:
            if self.use_cgroup:
                try:
                    cgroup = create_run_cgroup(spec.limits.processes, spec.limits.memory_bytes)
                except OSError as exc:
                    raise SandboxUnavailable(
                        f"cannot create the run's cgroup ({exc}), so processes and memory "
                        f"cannot be limited; {FIX}") from exc
            return _Run(
                self.command(spec, fd),
                env={},  # bwrap's own init keeps this environment: /proc/1/environ inside
                cwd="/", limits=spec.limits, watched=[m.source for m in writable],
                cgroup=cgroup, rlimits=_rlimits(spec.limits, memory_rlimit=cgroup is None),
                pass_fds=(fd,),
            ), fd
        except BaseException:
            os.close(fd)
            raise


class WeakerSandbox:
    """A plain subprocess with limits and a clean environment: NO filesystem/network isolation.

    The job sees real paths (``inside_path`` returns the source), runs in the writable mount's
    folder, and can read whatever the datasite's user can read. Every run logs a warning.
    """

    mode: Literal["bubblewrap", "weaker"] = "weaker"

    def inside_path(self, mount: Mount) -> str:
        return str(mount.source)

    def run(self, spec: SandboxSpec, *, cancel: threading.Event | None = None) -> SandboxResult:
        """Run ``spec`` as a limited subprocess and warn that it is not isolated."""
        log.warning("controlled job running WITHOUT bubblewrap (sandbox mode 'weaker', chosen "
                    "by the operator): no filesystem or network isolation")
        _check_spec(spec)
        writable = [m for m in spec.mounts if m.writable]
        cgroup = None
        if cgroups_available() is not None:
            with contextlib.suppress(OSError):
                cgroup = create_run_cgroup(spec.limits.processes, spec.limits.memory_bytes)
        runner = _Run(
            list(spec.argv), env=dict(spec.env),
            cwd=str(writable[0].source) if writable else None, limits=spec.limits,
            watched=[m.source for m in writable], cgroup=cgroup,
            rlimits=_rlimits(spec.limits, memory_rlimit=cgroup is None),
        )
        return runner.go(cancel, self.mode)


def _probe(sandbox: BubblewrapSandbox) -> None:
    """Run an empty Python in the sandbox; explain what is missing when that fails."""
    limits = Limits(cpu_seconds=10, wall_seconds=20.0, memory_bytes=512 * 1024**2,
                    processes=16, tmp_bytes=1024**2)
    spec = SandboxSpec(argv=[sys.executable, "-I", "-c", "pass"], mounts=[], workdir="/",
                       env={}, limits=limits)
    try:
        result = sandbox.run(spec)
    except OSError as exc:
        raise SandboxUnavailable(f"cannot start bubblewrap ({exc}); {FIX}") from exc
    if result.returncode != 0:
        why = result.stderr.decode(errors="replace").strip()[-400:]
        hint = " (are unprivileged user namespaces disabled?)" if (
            "namespace" in why or "Operation not permitted" in why) else ""
        raise SandboxUnavailable(f"bubblewrap could not start a sandbox{hint}: {why}; {FIX}")


def open_sandbox(mode: Literal["strict", "weaker"] = "strict") -> Sandbox:
    """The sandbox the datasite runs controlled jobs in.

    ``strict`` returns a working :class:`BubblewrapSandbox` or raises SandboxUnavailable naming
    what is missing (bwrap, user namespaces, libseccomp, or, as root, a writable cgroup to
    limit processes). ``weaker`` returns a :class:`WeakerSandbox`, the operator's explicit choice.
    """
    if mode == "weaker":
        return WeakerSandbox()
    if mode != "strict":
        raise InvalidInput(f"sandbox mode {mode!r} is not known; use 'strict' or 'weaker'")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not on PATH; {FIX}")
    try:
        os.close(seccomp_filter_fd())
    except SeccompUnavailable as exc:
        raise SandboxUnavailable(f"{exc} (apt-get install libseccomp2); {FIX}") from exc
    use_cgroup = cgroups_available() is not None
    if os.geteuid() == 0 and not use_cgroup:
        raise SandboxUnavailable(
            "running as root, where RLIMIT_NPROC does not apply, and no writable cgroup "
            "(v2 with pids+memory, or v1 pids and memory) exists to limit processes; run the "
            "datasite as a non-root user or give it a cgroup, or start it with --sandbox "
            "weaker, which is logged")
    sandbox = BubblewrapSandbox(os.path.realpath(bwrap), use_cgroup=use_cgroup)
    _probe(sandbox)
    return sandbox


__all__ = [
    "BubblewrapSandbox", "Limits", "Mount", "Sandbox", "SandboxResult", "SandboxSpec",
    "SandboxUnavailable", "Started", "WeakerSandbox", "open_sandbox", "output_size",
    "runtime_mounts", "safe_output_files",
]

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
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

from ndl.core.errors import InvalidInput, SandboxUnavailable
from ndl.jobs.cgroups import cgroups_available, create_run_cgroup, sweep_stale
from ndl.jobs.sandbox_types import (
    FIX,
    SANDBOX_UID,
    Limits,
    Mount,
    Sandbox,
    SandboxResult,
    SandboxSpec,
    _neutralise_output,
    _under,
    output_size,
    safe_output_files,
)
from ndl.jobs.seccomp_filter import SeccompUnavailable, seccomp_filter_fd
from ndl.jobs.supervise import (
    Started,
    _rlimits,
    _Run,
)

log = logging.getLogger("ndl.jobs")

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
            fd = seccomp_filter_fd(inet=spec.inet)
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
    if use_cgroup:
        sweep_stale()  # groups an earlier, killed datasite left behind, empty
    sandbox = BubblewrapSandbox(os.path.realpath(bwrap), use_cgroup=use_cgroup)
    _probe(sandbox)
    return sandbox


__all__ = [
    "BubblewrapSandbox", "Limits", "Mount", "Sandbox", "SandboxResult", "SandboxSpec",
    "SandboxUnavailable", "Started", "WeakerSandbox", "open_sandbox", "output_size",
    "runtime_mounts", "safe_output_files",
]

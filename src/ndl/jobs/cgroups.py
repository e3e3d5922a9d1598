"""One control group per sandboxed run: caps its processes and memory, and kills all of it.

RLIMIT_NPROC does not bind uid 0 (the kernel exempts root's user), so a datasite running as root
can only bound a fork bomb with a cgroup. cgroup v2 is used when the unified hierarchy at
/sys/fs/cgroup offers the pids and memory controllers and is writable; otherwise the v1 ``pids``
and ``memory`` hierarchies (plus ``freezer`` when mounted, so a kill cannot race new forks).

Each run's group is created *below the group this process already sits in*, so whatever limits
the host put on the datasite keep applying to the jobs it starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_paths() -> dict[str, str]:
    """Map each hierarchy (controller name, or "" for v2) to this process's group inside it."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    return paths


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _v2_bases() -> list[Path]:
    """Candidate v2 groups under which per-run groups could get pids+memory (own group first)."""
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        return []
    own = _own_paths().get("", "/")
    found: list[Path] = []
    for base in dict.fromkeys((CGROUP_ROOT / own.lstrip("/"), CGROUP_ROOT)):
        try:
            available = set((base / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        if {"pids", "memory"} <= available and _writable_dir(base):
            found.append(base)
    return found


def _v1_bases() -> dict[str, Path] | None:
    """The v1 groups (pids, memory, freezer if any) that per-run groups go under, or None."""
    own = _own_paths()
    bases: dict[str, Path] = {}
    for name in ("pids", "memory", "freezer"):
        base = CGROUP_ROOT / name / own.get(name, "/").lstrip("/")
        if _writable_dir(base):
            bases[name] = base
    if "pids" not in bases or "memory" not in bases:
        return None
    return bases


def cgroups_available() -> str | None:
    """"v2" or "v1" when this process can make per-run groups with pids and memory limits."""
    if _v2_bases():
        return "v2"
    if _v1_bases() is not None:
        return "v1"
    return None


@dataclass
class RunCgroup:
    """The groups of one run. ``procs_files`` are what the child writes its pid into."""

    version: str
    dirs: dict[str, Path]

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def oom_killed(self) -> bool:
        """True when the kernel killed something in this run for exceeding its memory limit."""
        try:
            if self.version == "v2":
                events = (self.dirs[""] / "memory.events").read_text()
            else:
                events = (self.dirs["memory"] / "memory.oom_control").read_text()
        except OSError:
            return False
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key in ("oom_kill", "oom") and value.strip().isdigit() and int(value) > 0:
                return True
        return False

    def pids_limited(self) -> bool:
        """True when a fork in this run was refused because pids.max was reached."""
        name = "" if self.version == "v2" else "pids"
        try:
            events = (self.dirs[name] / "pids.events").read_text()
        except OSError:
            return False
        return any(
            line.startswith("max ") and line.split()[1] != "0" for line in events.splitlines()
        )

    def _pids(self) -> list[int]:
        path = self.dirs["" if self.version == "v2" else "pids"] / "cgroup.procs"
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the run and wait (up to ``timeout``) until none is left."""
        deadline = time.monotonic() + timeout
        if self.version == "v2":
            with contextlib.suppress(OSError):
                (self.dirs[""] / "cgroup.kill").write_text("1")
        freezer = self.dirs.get("freezer")
        if freezer is not None:
            # Frozen tasks cannot fork between our read of cgroup.procs and the kills.
            with contextlib.suppress(OSError):
                (freezer / "freezer.state").write_text("FROZEN")
        while True:
            pids = self._pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if freezer is not None:
                # SIGKILL is delivered once the task thaws; thaw so they can die.
                with contextlib.suppress(OSError):
                    (freezer / "freezer.state").write_text("THAWED")
            if not pids or time.monotonic() > deadline:
                return
            time.sleep(0.02)
            if freezer is not None:
                with contextlib.suppress(OSError):
                    (freezer / "freezer.state").write_text("FROZEN")

    def remove(self) -> None:
        """Delete the run's groups (after :meth:`kill_all`); a busy group is left, not raised."""
        for path in self.dirs.values():
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def sweep_stale(min_age_seconds: float = 60.0) -> int:
    """Remove empty per-run groups older than ``min_age_seconds`` (a datasite killed mid-run,
    or a run whose thousands of processes outlived :meth:`RunCgroup.remove`'s second). A live
    run's group holds its process within milliseconds of being made, so an empty one this old
    belongs to no run. Returns how many were removed; errors leave a group where it is."""
    bases = list(_v2_bases()) + list((_v1_bases() or {}).values())
    removed, now = 0, time.time()
    for base in dict.fromkeys(bases):
        try:
            groups = [g for g in base.iterdir() if g.name.startswith("ndl-run-") and g.is_dir()]
        except OSError:
            continue
        for group in groups:
            try:
                if now - group.stat().st_mtime < min_age_seconds:
                    continue
                if (group / "cgroup.procs").read_text().strip():
                    continue
                group.rmdir()
                removed += 1
            except OSError:
                continue
    return removed


def create_run_cgroup(processes: int, memory_bytes: int) -> RunCgroup:
    """Make a fresh group for one run with ``pids.max`` and the memory limit already set.

    Raises OSError when the groups cannot be made (the caller turns that into
    SandboxUnavailable); nothing is left behind in that case.
    """
    name = f"ndl-run-{uuid.uuid4().hex[:12]}"
    for base2 in _v2_bases():
        run = RunCgroup("v2", {})
        try:
            parent = base2 / "ndl-sandbox"
            parent.mkdir(exist_ok=True)
            # v2's "no internal processes" rule: controllers can only be handed down from a
            # group holding no process, so this fails (EBUSY) on our own populated group and
            # the next candidate, the root group, is tried.
            (base2 / "cgroup.subtree_control").write_text("+pids +memory")
            (parent / "cgroup.subtree_control").write_text("+pids +memory")
            run.dirs[""] = parent / name
            run.dirs[""].mkdir()
            (run.dirs[""] / "pids.max").write_text(str(processes))
            (run.dirs[""] / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (run.dirs[""] / "memory.swap.max").write_text("0")
        except OSError:
            run.remove()
            continue
        return run
    bases = _v1_bases()
    if bases is None:
        raise OSError("no writable cgroup hierarchy with pids and memory controllers")
    run = RunCgroup("v1", {})
    try:
        for controller, base in bases.items():
            run.dirs[controller] = base / name
            run.dirs[controller].mkdir()
        (run.dirs["pids"] / "pids.max").write_text(str(processes))
        (run.dirs["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))
        with contextlib.suppress(OSError):
            # Swap counted too where the kernel accounts it; must be set after the plain limit.
            (run.dirs["memory"] / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
    except OSError:
        run.remove()
        raise
    return run

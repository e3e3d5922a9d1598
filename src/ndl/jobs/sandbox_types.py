"""The sandbox's vocabulary (limits, mounts, a run's spec and result, the Sandbox interface)
and the rules for reading what a run left in its output folder.

Split from :mod:`ndl.jobs.sandbox` (which re-exports every name here) so the process
supervision in :mod:`ndl.jobs.supervise` and the sandboxes themselves share one definition.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ndl.core.errors import InvalidInput

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
    # AF_INET sockets allowed too (a Spark step: pyspark reaches its JVM over 127.0.0.1). In
    # bubblewrap the network namespace still has only its own loopback.
    inet: bool = False


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

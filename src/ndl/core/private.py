"""Folders and files only their owner can read: databases, keys and the data folders.

A hub's database holds password hashes and session tokens, a datasite's key signs for its
organisation; on a shared machine neither may be readable by other accounts, whatever the
umask. Files are created 0600 and folders 0700, and ones an older version left open are
tightened when opened again (only if this account owns them: never someone else's).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

FILE_MODE = 0o600
DIR_MODE = 0o700


def _tighten(path: Path, mode: int) -> None:
    st = path.stat()
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
        path.chmod(stat.S_IMODE(st.st_mode) & mode)


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """Make ``path`` (and any missing parents) a folder only its owner can enter.

    ``tighten=False`` leaves an existing folder as it is: for a folder the user named that
    may hold other things (the current folder of ``--db ./hub.db``).
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        # mkdir's mode is filtered by the umask, which can only take bits away.
        p.mkdir(mode=DIR_MODE, exist_ok=True)
    if tighten:
        _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 unless it exists; tighten it if it does.

    Call before SQLite opens a database: SQLite gives its ``-wal`` and ``-shm`` files the
    database file's own mode, so they are private too.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
    else:
        os.close(fd)
    return path


def load_or_create(path: Path, load: Callable[[bytes], T],
                   create: Callable[[], tuple[T, bytes]]) -> T:
    """A secret kept in ``path`` (a key): ``load(contents)`` if the file exists (tightened to
    0600 first, if this account owns it); otherwise ``create()`` gives the new value and the
    bytes to keep, written to a 0600 temp file and renamed into place, so a crash never leaves
    a half-written file behind. The folder is created 0700 if missing (an existing one is left
    as it is: it may be one the user named)."""
    if path.exists():
        private_file(path)  # tighten a file an older version (or someone) left readable
        return load(path.read_bytes())
    value, data = create()
    private_dir(path.parent, tighten=False)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a leftover temp file keeps its old mode through O_TRUNC
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return value


__all__ = ["DIR_MODE", "FILE_MODE", "load_or_create", "private_dir", "private_file"]

"""Folders and files only their owner can read: databases, keys and the data folders.

A hub's database holds password hashes and session tokens, a datasite's key signs for its
organisation; on a shared machine neither may be readable by other accounts, whatever the
umask. Files are created 0600 and folders 0700, and ones an older version left open are
tightened when opened again (only if this account owns them: never someone else's).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

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


__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file"]

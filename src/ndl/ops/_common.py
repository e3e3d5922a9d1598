"""What hub and datasite backups share: results, the signed manifest, atomic files, checks."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import ndl
from ndl.core.errors import Conflict, InvalidInput, NdlError, NotFound
from ndl.core.keys import SigningKey, b64e, fingerprint, read_private_pem, verify_signature
from ndl.core.private import FILE_MODE, private_dir
from ndl.ops.archive import FORMAT, FORMAT_VERSION, ArchiveError, Verified, canonical

# (what is being done, bytes done since the last call): the CLI draws a bar from it.
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    members: int
    rows: dict[str, int]
    blobs: int
    keys_included: bool
    key_fingerprint: str
    seconds: float
    register_head: tuple[int, str] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RestoreResult:
    rows: dict[str, int]
    blobs: int
    files: int
    from_revision: str | None
    key_fingerprint: str
    seconds: float
    register_head: tuple[int, str] | None = None
    notes: list[str] = field(default_factory=list)


def header(kind: str) -> dict[str, Any]:
    now = time.time()
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
            "ndl_version": ndl.__version__,
            "created": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "created_unix": int(now)}


def existing_key(path: Path, what: str) -> SigningKey:
    """The key at ``path``; never creates one (a backup of a made-up key would be useless)."""
    if not path.is_file():
        raise NotFound(f"no {what} key at {path}: give the folder the {what} runs with")
    loaded = read_private_pem(path, path.read_bytes())  # encrypted: needs the passphrase
    if not isinstance(loaded, Ed25519PrivateKey):
        raise InvalidInput(f"{path} does not hold an Ed25519 key")
    return SigningKey(loaded)


def public_of_pem(data: bytes) -> str | None:
    """The public half of a PEM's Ed25519 key, or None if it cannot be read here (e.g. it is
    encrypted and no passphrase is set): then only the manifest's signature vouches for it."""
    try:
        loaded = read_private_pem(Path("the key"), data)
    except (NdlError, ValueError, TypeError):
        return None
    if not isinstance(loaded, Ed25519PrivateKey):
        return None
    return b64e(loaded.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw))


def sign(key: SigningKey) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def signed(manifest: dict[str, Any]) -> dict[str, Any]:
        return {**manifest, "signature": key.sign(canonical(manifest))}
    return signed


def check_signature(verified: Verified, expect_key: str | None) -> str:
    """Check the manifest's signature with the key it names; with ``expect_key`` (a
    fingerprint the operator noted when the backup was made) also that it is the right key.
    Returns the public key."""
    manifest = dict(verified.manifest)
    signature, public = manifest.pop("signature", None), manifest.get("public_key")
    if not isinstance(signature, str) or not isinstance(public, str) or \
            not verify_signature(public, signature, canonical(manifest)):
        raise ArchiveError("the archive's manifest is not signed by the key it names: it was "
                           "changed after it was made; nothing was restored; use another copy")
    if expect_key and fingerprint(public) != expect_key.strip().lower():
        raise ArchiveError(f"the archive was signed by key {fingerprint(public)}, not the "
                           f"{expect_key} you expected: it is not your backup (or the key was "
                           "replaced); nothing was restored")
    return public


def check_space(where: Path, need: int) -> None:
    probe = where
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise Conflict(f"restoring needs {need:,} bytes but {probe} has {free:,} free: make "
                       "room, or restore somewhere bigger; nothing was written")


def refuse_unless_force(force: bool, what: str, found: list[str]) -> None:
    if found and not force:
        shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
        raise Conflict(f"{what} is not empty ({shown}): restore into a fresh install (a new "
                       "empty database or folder), or pass --force to replace what is there")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) via a fsynced temporary file renamed into place."""
    private_dir(path.parent, tighten=False)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def work_dir(near: Path) -> Path:
    """A private scratch folder beside ``near`` (same filesystem: renames stay atomic)."""
    private_dir(near, tighten=False)
    d = near / f".ndl-restore-{secrets.token_hex(6)}"
    d.mkdir(mode=0o700)
    return d

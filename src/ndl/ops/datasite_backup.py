"""``ndl backup datasite`` and ``ndl restore datasite``: a datasite's state in one archive.

What it holds: ``datasite.json`` (identity, hub URL, the hub's pinned key), the key files
(``*.pem``; ``exclude_keys`` leaves them out), every SQLite state file at the top of the
folder (answered messages, the privacy budget spent, what controlled jobs released: each
copied with the sqlite3 backup API, so it can run while the datasite does) and each dataset's
``metadata.json``, policy and ``source.json``. The data themselves (``data.parquet``) are left
out unless ``with_data``: they live at the organisation, which backs them up already, and may
be far bigger than the state. Work in progress (``outbox/``, ``jobs/``) and caches (mocks,
Spark) are not kept: the hub offers unfinished work again.

A restore writes every file to a scratch folder inside the target first and moves them into
place only when all of them matched the signed manifest.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from ndl.core.errors import NotFound
from ndl.core.private import private_dir, private_file
from ndl.ops import archive
from ndl.ops._common import (
    BackupResult,
    Progress,
    RestoreResult,
    check_signature,
    check_space,
    existing_key,
    header,
    public_of_pem,
    refuse_unless_force,
    sign,
    work_dir,
    write_atomic,
)
from ndl.ops.archive import ArchiveError

KEY_FILE = "key.pem"
_DATASET_FILES = ("metadata.json", "policy.yaml", "policy.yml", "policy.json", "source.json")


def _snapshot(src: Path, dest: Path) -> None:
    private_file(dest)
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    d = sqlite3.connect(dest)
    try:
        s.backup(d)
    finally:
        d.close()
        s.close()


def backup_datasite(root: Path, out: Path, *, with_data: bool = False,
                    exclude_keys: bool = False, progress: Progress | None = None
                    ) -> BackupResult:
    started = time.monotonic()
    if not (root / "datasite.json").is_file() and not (root / "state.sqlite").is_file():
        raise NotFound(f"{root} holds no datasite (no datasite.json or state.sqlite): give "
                       "the --dir the datasite runs with")
    key = existing_key(root / KEY_FILE, "datasite")
    datasets = sorted(p.parent for p in (root / "datasets").glob("*/metadata.json"))
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None,
                                     prefix=".ndl-backup-") as tmp, \
            archive.ArchiveWriter(out, header("datasite")) as w:
        work = private_dir(Path(tmp))
        if not exclude_keys:
            for p in sorted([*root.glob("*.pem"), *root.glob("*.pem.next")]):
                w.add_bytes(f"keys/{p.name}", p.read_bytes())
        if (root / "datasite.json").is_file():
            w.add_bytes("config/datasite.json", (root / "datasite.json").read_bytes())
        for db in sorted(root.glob("*.sqlite")):
            _snapshot(db, work / db.name)
            w.add_file(f"state/{db.name}", work / db.name)
            (work / db.name).unlink()
            if progress:
                progress("state", (root / db.name).stat().st_size)
        missing_data = []
        for d in datasets:
            for name in _DATASET_FILES:
                if (d / name).is_file():
                    w.add_bytes(f"datasets/{d.name}/{name}", (d / name).read_bytes())
            if with_data and (d / "data.parquet").is_file():
                w.add_file(f"datasets/{d.name}/data.parquet", d / "data.parquet")
                if progress:
                    progress("data", (d / "data.parquet").stat().st_size)
            elif (d / "data.parquet").is_file():
                missing_data.append(d.name)
        cfg = json.loads((root / "datasite.json").read_text("utf-8")) \
            if (root / "datasite.json").is_file() else {}
        path = w.finish({
            "kind": "datasite", "datasite_id": cfg.get("id"), "org": cfg.get("org"),
            "with_data": with_data, "datasets": [d.name for d in datasets],
            "keys_included": not exclude_keys, "public_key": key.public_b64,
            "key_fingerprint": key.fingerprint,
        }, sign(key))
    notes = []
    if missing_data:
        notes.append(f"the data of {len(missing_data)} dataset(s) are not in this archive "
                     "(give --with-data to include them): they stay in the datasite's "
                     "datasets/ folder, which your organisation's own backups must cover")
    if not exclude_keys:
        notes.append("this archive holds the datasite's private keys: keep it as safe as "
                     "the keys themselves (or make it with --exclude-keys)")
    return BackupResult(path, path.stat().st_size, len(w.members), {}, 0, not exclude_keys,
                        key.fingerprint, time.monotonic() - started, None, notes)


def _target(root: Path, name: str) -> Path:
    kind, rest = name.split("/", 1)
    if kind == "datasets":
        return root / "datasets" / rest
    if kind == "config":
        return root / "datasite.json"
    return root / rest  # state/X.sqlite and keys/X.pem live at the top of the folder


def _not_fresh(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    found = [p.name for p in (*root.glob("*.pem"), *root.glob("*.sqlite"),
                              root / "datasite.json") if p.is_file()]
    return found + [f"datasets/{p.parent.name}" for p in root.glob("datasets/*/metadata.json")]


def restore_datasite(path: Path, root: Path, *, force: bool = False,
                     key_file: Path | None = None, expect_key: str | None = None,
                     progress: Progress | None = None) -> RestoreResult:
    started = time.monotonic()
    verified = archive.verify(path, "datasite", progress)  # reads it all, writes nothing
    public = check_signature(verified, expect_key)
    refuse_unless_force(force, str(root), _not_fresh(root))
    has_key = f"keys/{KEY_FILE}" in verified.members
    if not has_key and key_file is None:
        raise ArchiveError(f"this archive holds no datasite key (made with --exclude-keys): "
                           f"give --key PATH to the {KEY_FILE} you kept")
    key_pem = key_file.read_bytes() if key_file is not None else None
    if key_pem is not None and public_of_pem(key_pem) != public:
        raise ArchiveError(f"{key_file} is not the key that signed this backup: give the "
                           f"{KEY_FILE} the datasite had when the backup was made")
    check_space(root, sum(int(v["size"]) for v in verified.members.values()))
    private_dir(root, tighten=False)
    staged = work_dir(root)
    try:
        for member in archive.members(path, verified):
            dest = staged / member.name
            private_dir(dest.parent, tighten=False)
            with dest.open("xb") as out:
                for piece in member.chunks():
                    out.write(piece)
                    if progress:
                        progress(member.name, len(piece))
            member.check()
        if key_pem is not None:
            write_atomic(staged / "keys" / KEY_FILE, key_pem)
        elif public_of_pem((staged / "keys" / KEY_FILE).read_bytes()) not in (public, None):
            raise ArchiveError(f"the archive's {KEY_FILE} is not the key that signed it: "
                               "it was changed; nothing was restored")
        files = 0
        for f in sorted(p for p in staged.rglob("*") if p.is_file()):
            dest = _target(root, str(f.relative_to(staged)))
            private_dir(dest.parent, tighten=False)
            for suffix in ("-wal", "-shm", "-journal"):  # a --force restore's old state
                Path(f"{dest}{suffix}").unlink(missing_ok=True)
            f.replace(dest)
            files += 1
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    (root / "datasets").mkdir(exist_ok=True)
    m = verified.manifest
    notes = []
    lacking = [n for n in m.get("datasets", []) if isinstance(n, str)
               and not (root / "datasets" / n / "data.parquet").exists()
               and not (root / "datasets" / n / "source.json").exists()]
    if lacking:
        notes.append(f"{len(lacking)} dataset(s) have no data here ({', '.join(lacking[:5])}"
                     f"{' ...' if len(lacking) > 5 else ''}): put each one's data.parquet "
                     f"back under {root / 'datasets'}/<name>/ from your own backups")
    return RestoreResult({}, 0, files, None, str(m.get("key_fingerprint", "")),
                         time.monotonic() - started, None, notes)


__all__ = ["backup_datasite", "restore_datasite"]

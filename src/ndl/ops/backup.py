"""``ndl backup hub`` and ``ndl restore hub``: the whole hub in one checked archive.

A backup holds the database (every table of ``Base.metadata`` as JSON lines, from one
consistent snapshot: see :mod:`ndl.ops.db_dump`), the finished blobs (read through the blob
store, so a filesystem or S3 store alike), the key files (``*.pem`` and the web session
secret; ``exclude_keys`` leaves them out) and the settings files in the data folder. The
manifest is signed with the hub's key.

A restore goes into a fresh install only. Nothing is written until the whole archive has been
read and every member's SHA-256 matched the signed manifest; then the database is migrated to
the archive's revision, the rows go in (parents first, in one transaction), PostgreSQL's
sequences move past the restored ids, the blobs and keys are written, the schema is migrated
to this ndl's newest revision, the search index is rebuilt and the register is verified.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy.orm import Session

from ndl.core.db import Database
from ndl.core.errors import Conflict, InternalError, NotFound
from ndl.core.keys import SigningKey
from ndl.core.migrate import upgrade
from ndl.core.private import private_dir
from ndl.federation import key_service
from ndl.federation.blobs import open_store
from ndl.ledger import register
from ndl.ops import archive, db_dump
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

KEY_FILE = "hub-key.pem"
_SECRETS = ("web-secret",)            # besides *.pem: secret files that are keys in effect
_SETTINGS = ("*.json", "*.yaml", "*.yml", "*.toml")


def _database(db_url: str) -> Database:
    if "://" not in db_url and not Path(db_url).expanduser().is_file():
        raise NotFound(f"no hub database at {db_url}: give the --db the hub runs with")
    return Database(db_url)


def _key_files(data_dir: Path) -> list[Path]:
    # hub-key.pem.next: a rotation's new key, written before it takes over.
    return sorted(p for p in data_dir.iterdir() if p.is_file() and
                  (p.name.endswith((".pem", ".pem.next")) or p.name in _SECRETS))


def _settings_files(data_dir: Path) -> list[Path]:
    return sorted({p for pattern in _SETTINGS for p in data_dir.glob(pattern) if p.is_file()})


def backup_hub(db_url: str, data_dir: Path, out: Path, *, blob_store: str = "",
               exclude_keys: bool = False, progress: Progress | None = None) -> BackupResult:
    """Write the hub's backup to ``out`` (atomically: all of it or nothing)."""
    started = time.monotonic()
    key = existing_key(data_dir / KEY_FILE, "hub")
    db = _database(db_url)
    notes: list[str] = []
    try:
        with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None,
                                         prefix=".ndl-backup-") as tmp:
            work = private_dir(Path(tmp))
            dumps, head = _dump(db, work, progress)
            store = open_store(blob_store, data_dir)
            with archive.ArchiveWriter(out, header("hub")) as w:
                keys = [] if exclude_keys else _key_files(data_dir)
                for p in keys:
                    w.add_bytes(f"keys/{p.name}", p.read_bytes())
                for p in _settings_files(data_dir):
                    w.add_bytes(f"settings/{p.name}", p.read_bytes())
                for d in dumps:
                    w.add_file(d.member, work / f"{d.name}.jsonl")
                blobs = 0
                for name in store.names():
                    size = store.size(name)
                    if size is None:
                        continue  # swept since it was listed: it was expiring anyway
                    got = w.add_stream(f"blobs/{name}", size, store.open(name))
                    if got.sha256 != name:
                        raise InternalError(
                            f"blob {name} in the store is damaged (its bytes hash to "
                            f"{got.sha256}); delete it from the store, then back up again")
                    blobs += 1
                    if progress:
                        progress("blobs", size)
                if exclude_keys:
                    notes.append("the hub's keys are NOT in this archive: keep "
                                 f"{data_dir / KEY_FILE} safe; a restore needs it (--key)")
                else:
                    notes.append("this archive holds the hub's private key: keep it as safe "
                                 "as the key itself (or make it with --exclude-keys)")
                path = w.finish({
                    "kind": "hub", "backend": db.backend,
                    "alembic_revision": db_dump.head_revision(),
                    "tables": [{"name": d.name, "columns": d.columns, "rows": d.rows}
                               for d in dumps],
                    "blobs": blobs, "keys_included": not exclude_keys,
                    "public_key": key.public_b64, "key_fingerprint": key.fingerprint,
                    "register_head": list(head),
                    "created": header("hub")["created"],
                }, sign(key))
    finally:
        db.dispose()
    return BackupResult(path, path.stat().st_size, len(w.members),
                        {d.name: d.rows for d in dumps}, blobs, not exclude_keys,
                        key.fingerprint, time.monotonic() - started, head, notes)


def _dump(db: Database, work: Path, progress: Progress | None
          ) -> tuple[list[db_dump.TableDump], tuple[int, str]]:
    with db_dump.snapshot(db, work) as conn:
        rev, head_rev = db_dump.revision_of(conn), db_dump.head_revision()
        if rev != head_rev:
            raise Conflict(
                f"the database is at revision {rev} but this ndl's is {head_rev}: back up "
                "with the ndl version that runs the hub, or start the hub with this one "
                "first (it migrates the database)")
        extra = db_dump.unexpected_tables(conn)
        if extra:
            raise Conflict(f"the database holds tables ndl does not know ({', '.join(extra)})"
                           ": a backup would leave them out; move them elsewhere first")
        dumps = []
        for table in db_dump.tables():
            with (work / f"{table.name}.jsonl").open("wb") as f:
                dumps.append(db_dump.dump_table(conn, table, f, progress))
        head = register.head(Session(bind=conn))
    return dumps, head


# ---------------------------------------------------------------- restore


def _dir_not_fresh(data_dir: Path, store_spec: str) -> list[str]:
    if not data_dir.is_dir():
        return []
    found = [f"{p.name} in {data_dir}" for p in _key_files(data_dir)]
    if store_spec or (data_dir / "blobs" / "store").is_dir():
        if next(iter(open_store(store_spec, data_dir).names()), None) is not None:
            found.append("blobs in the blob store")
    return found


def restore_hub(path: Path, db_url: str, data_dir: Path, *, blob_store: str = "",
                force: bool = False, key_file: Path | None = None,
                expect_key: str | None = None, progress: Progress | None = None
                ) -> RestoreResult:
    """Restore a hub backup into a fresh database and data folder."""
    started = time.monotonic()
    verified = archive.verify(path, "hub", progress)  # reads everything, writes nothing
    public = check_signature(verified, expect_key)
    m = verified.manifest
    rev = str(m.get("alembic_revision", ""))
    db_dump.check_revision(rev)
    tables = {t["name"]: [tuple(c) for c in t["columns"]] for t in m.get("tables", [])}
    rows_expected = {t["name"]: int(t["rows"]) for t in m.get("tables", [])}
    key_pem = _key_to_use(verified, key_file, public)
    refuse_unless_force(force, "the hub's data folder", _dir_not_fresh(data_dir, blob_store))
    db = Database(db_url)
    try:
        refuse_unless_force(force, "the hub database",
                            [f"table {t}" for t in db_dump.existing_tables(db)])
        check_space(data_dir, sum(v["size"] for k, v in verified.members.items()
                                  if k.startswith("blobs/")))
        if force:
            db_dump.drop_everything(db)
        private_dir(data_dir, tighten=False)
        upgrade(db, rev)
        rows, blobs, files = _load(path, verified, db, data_dir, blob_store, tables, public,
                                   progress)
        if key_pem is not None:
            write_atomic(data_dir / KEY_FILE, key_pem)
            files += 1
        for name, want in rows_expected.items():
            if rows.get(name, 0) != want:
                raise ArchiveError(f"table {name}: the manifest says {want} rows but the "
                                   f"archive held {rows.get(name, 0)}: it was changed")
        db.migrate()
        db_dump.rebuild_search(db)
        with db.read() as s:
            # After key rotations, each entry is judged by the keys the hub held at its time.
            report = register.verify(s, key_service.register_keys(key_service.hub_validities(
                s, cast(SigningKey, SimpleNamespace(public_b64=public)))))
        if not report.ok:
            raise InternalError("the restored register does not verify: "
                                + "; ".join(report.problems[:3]))
    finally:
        db.dispose()
    return RestoreResult(rows, blobs, files, rev, m.get("key_fingerprint", ""),
                         time.monotonic() - started, (report.head_seq, report.head_hash))


def _key_to_use(verified: archive.Verified, key_file: Path | None, public: str
                ) -> bytes | None:
    """The PEM to install from --key (None: the archive's own). Checked against the key that
    signed the manifest before anything is written."""
    in_archive = f"keys/{KEY_FILE}" in verified.members
    if key_file is None:
        if not in_archive:
            raise Conflict("this archive holds no hub key (it was made with --exclude-keys): "
                           f"give --key PATH to the {KEY_FILE} you kept")
        return None
    pem = key_file.read_bytes()
    if public_of_pem(pem) != public:
        raise Conflict(f"{key_file} is not the key that signed this backup: give the "
                       f"{KEY_FILE} the hub had when the backup was made")
    return pem


def _load(path: Path, verified: archive.Verified, db: Database, data_dir: Path,
          blob_store: str, tables: dict[str, list[Any]], public: str,
          progress: Progress | None) -> tuple[dict[str, int], int, int]:
    rows: dict[str, int] = {}
    blobs = files = 0
    store = open_store(blob_store, data_dir)
    staged = work_dir(data_dir)
    try:
        with db.write_engine.connect() as conn:
            tx = conn.begin()
            if db.backend == "sqlite":
                conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
            db_dump.clear_tables(conn, [n for n in tables if conn.dialect.has_table(conn, n)])
            for member in archive.members(path, verified):
                name = member.name
                if name.startswith("db/"):
                    table = name.removeprefix("db/").removesuffix(".jsonl")
                    if table not in tables:
                        raise ArchiveError(f"{name} is not a table the manifest lists")
                    rows[table] = db_dump.load_table(
                        conn, table, tables[table],
                        functools.partial(member.readline, db_dump.MAX_LINE), progress)
                    continue
                if tx.is_active and rows:
                    db_dump.reset_sequences(conn, list(rows))
                    tx.commit()
                if name.startswith("blobs/"):
                    sha = name.removeprefix("blobs/")
                    size = store.put(sha, member.chunks())
                    try:
                        member.check()
                    except ArchiveError:
                        store.delete(sha)
                        raise
                    blobs += 1
                    if progress:
                        progress("blobs", size)
                else:  # keys/ and settings/: staged, moved into place at the end
                    data = member.read()
                    member.check()
                    if name == f"keys/{KEY_FILE}" and public_of_pem(data) not in (public, None):
                        raise ArchiveError(f"the archive's {KEY_FILE} is not the key that "
                                           "signed it: it was changed; nothing was restored")
                    write_atomic(staged / name.split("/", 1)[1], data)
            if tx.is_active:
                db_dump.reset_sequences(conn, list(rows))
                tx.commit()
        for f in sorted(staged.iterdir()):
            f.replace(data_dir / f.name)
            files += 1
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return rows, blobs, files


__all__ = ["backup_hub", "restore_hub"]

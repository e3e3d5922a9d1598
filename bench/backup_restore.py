"""Backup and restore of the demo federation: time and size, against the database's own tool.

Generates the demo data (``ndl.demo.synth``), bootstraps the demo's organisations and users,
runs a real hub and the demo's datasites until every one has published, asks a few queries
(so the register and the mailbox hold something), stops them, then times

* ``backup_hub`` (the code behind ``ndl backup hub``) and ``restore_hub`` into a fresh
  database, with ``ndl verify``'s check included in the restore;
* the peer in the same run: the sqlite3 backup API copy (SQLite) or ``pg_dump -Fc`` (PostgreSQL);
* ``backup_datasite`` of one datasite without and with ``--with-data``.

Run: ``.venv/bin/python bench/backup_restore.py [--people 2000] [--db postgresql+psycopg://postgres@127.0.0.1:5432/test]``
(with --db, SQLite and PostgreSQL both run; the script makes and drops its own databases).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from ndl.client import Client
from ndl.demo.network import bootstrap_hub
from ndl.demo.synth import ORGS, generate_demo_data
from ndl.ops.backup import backup_hub, restore_hub
from ndl.ops.datasite_backup import backup_datasite
from ndl.testing import DatasiteProcess, HubProcess, stop_all

os.environ.setdefault("NDL_ALLOW_HTTP_LOOPBACK", "1")  # the bench's hub is on loopback


def _pg_db(base: str, made: list[str]) -> str:
    name = f"ndl_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    made.append(name)
    return base.rsplit("/", 1)[0] + "/" + name


def _populate(root: Path, sites: Path, db_url: str) -> HubProcess:
    tokens = bootstrap_hub(root / "hub", db_url)
    hub = HubProcess(root / "hub", db_url)
    procs: list[DatasiteProcess] = []
    try:
        hub.start()
        for org in ORGS:
            procs.append(DatasiteProcess(sites / org.slug, hub.url, org=org.slug,
                                         token=tokens[org.slug], poll_wait=2).start())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = httpx.get(f"{hub.url}/api/datasets", params={"limit": 200}).json()
            if len({d["datasite_id"] for d in found.get("results", found.get("datasets", []))}
                   ) >= len(ORGS):
                break
            time.sleep(0.5)
        with Client(hub.url) as c:
            for ds in c.search("", tier="open")["results"][:5]:
                c.query(ds["id"])
    finally:
        stop_all(*procs, hub)
    return hub


def _peer(db_url: str, out: Path) -> tuple[float, int, str]:
    t = time.perf_counter()
    if "://" not in db_url:
        src, dst = sqlite3.connect(db_url), sqlite3.connect(out)
        src.backup(dst)
        dst.close()
        src.close()
        return time.perf_counter() - t, out.stat().st_size, "sqlite3 backup API (uncompressed)"
    url = db_url.replace("postgresql+psycopg://", "postgresql://")
    subprocess.run(["pg_dump", "-Fc", "-f", str(out), url], check=True)
    return time.perf_counter() - t, out.stat().st_size, "pg_dump -Fc"


def run(backend: str, people: int, pg_base: str | None, work: Path, made: list[str]) -> None:
    root = work / backend
    sites = root / "sites"
    generate_demo_data(sites, people=people, seed=7)
    db_url = str(root / "hub" / "hub.db") if backend == "sqlite" else _pg_db(pg_base or "", made)
    hub = _populate(root, sites, db_url)
    hub.db.dispose()
    archive = root / "hub.tar.gz"
    made_b = backup_hub(db_url, root / "hub", archive)
    target = str(root / "restored.db") if backend == "sqlite" else _pg_db(pg_base or "", made)
    done = restore_hub(archive, target, root / "restored")
    peer_s, peer_size, peer_name = _peer(db_url, root / "peer.dump")
    rows = sum(made_b.rows.values())
    print(f"\n== {backend}: {rows:,} rows in {len(made_b.rows)} tables "
          f"({made_b.rows.get('datasets', 0)} datasets, {made_b.rows.get('messages', 0)} "
          f"messages), register head {made_b.register_head[0] if made_b.register_head else '?'}")
    print(f"  backup hub   {made_b.seconds:6.2f} s  {made_b.bytes:>12,} bytes "
          f"({made_b.members} members)")
    print(f"  restore hub  {done.seconds:6.2f} s  (checks, migrations, load, search index, "
          "register verify)")
    print(f"  peer         {peer_s:6.2f} s  {peer_size:>12,} bytes  [{peer_name}]")
    site = sites / ORGS[0].slug
    lean = backup_datasite(site, root / "site.tar.gz")
    full = backup_datasite(site, root / "site-data.tar.gz", with_data=True)
    data = sum(p.stat().st_size for p in site.glob("datasets/*/data.parquet"))
    print(f"  datasite {ORGS[0].slug}: {lean.seconds:.2f} s {lean.bytes:,} bytes; "
          f"--with-data {full.seconds:.2f} s {full.bytes:,} bytes (Parquet {data:,} bytes)")


def scale(backend: str, entries: int, blob_mb: int, pg_base: str | None, work: Path,
          made: list[str]) -> None:
    """A hub with ``entries`` register entries and one blob of ``blob_mb`` MiB (no processes):
    how backup and restore grow with the database and the blobs."""
    import hashlib

    from ndl.federation.blobs import FileStore
    from ndl.ledger import register

    root = work / f"scale-{backend}"
    db_url = str(root / "hub" / "hub.db") if backend == "sqlite" else _pg_db(pg_base or "", made)
    hub = HubProcess(root / "hub", db_url)
    for start in range(0, entries, 5000):
        with hub.db.write() as s:
            for i in range(start, min(entries, start + 5000)):
                register.append(s, hub.key, kind="bench.entry", actor="bench",
                                subject=f"entry:{i}", payload={"i": i, "note": "x" * 100})
    hub.db.dispose()
    blob = os.urandom(1024 * 1024) * blob_mb  # incompressible per MiB, repeated
    FileStore(root / "hub" / "blobs" / "store").put(hashlib.sha256(blob).hexdigest(), [blob])
    archive = root / "hub.tar.gz"
    made_b = backup_hub(db_url, root / "hub", archive)
    target = str(root / "restored.db") if backend == "sqlite" else _pg_db(pg_base or "", made)
    done = restore_hub(archive, target, root / "restored")
    peer_s, peer_size, peer_name = _peer(db_url, root / "peer.dump")
    print(f"\n== scale, {backend}: {entries:,} register entries + a {blob_mb} MiB blob")
    print(f"  backup hub   {made_b.seconds:6.2f} s  {made_b.bytes:>12,} bytes")
    print(f"  restore hub  {done.seconds:6.2f} s")
    print(f"  peer (db only) {peer_s:6.2f} s  {peer_size:>12,} bytes  [{peer_name}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--db", default=None, help="a PostgreSQL URL to also run on PostgreSQL")
    ap.add_argument("--scale-entries", type=int, default=0,
                    help="also time a hub with this many register entries (no demo run)")
    ap.add_argument("--blob-mb", type=int, default=64, help="its blob's size in MiB")
    ap.add_argument("--skip-demo", action="store_true", help="only the --scale-entries case")
    args = ap.parse_args()
    made: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="ndl-bench-backup-"))
    try:
        backends = ["sqlite", *(["postgres"] if args.db else [])]
        for backend in [] if args.skip_demo else backends:
            run(backend, args.people, args.db, work, made)
        for backend in backends if args.scale_entries else []:
            scale(backend, args.scale_entries, args.blob_mb, args.db, work, made)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if made and args.db:
            admin = sa.create_engine(args.db, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                for name in made:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()


if __name__ == "__main__":
    main()

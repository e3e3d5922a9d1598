"""Backup -> wipe -> restore -> verify -> query, with a real hub and datasite, on SQLite and
PostgreSQL; and an archive carried from SQLite to PostgreSQL and back.

Each PostgreSQL test gets databases of its own (``CREATE DATABASE ndl_backup_<random>``),
dropped afterwards: a restore needs an empty database, and "wipe" means dropping one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ndl.client import Client
from ndl.core.db import Database
from ndl.federation.blobs import FileStore
from ndl.ops import db_dump
from ndl.testing import DatasiteProcess, HubProcess, granted_project, stop_all
from needs import required

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def ndl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real command line, as an operator runs it."""
    env = {**os.environ, "NDL_ALLOW_HTTP_LOOPBACK": "1"}  # the test hub is on loopback
    done = subprocess.run([sys.executable, "-m", "ndl", *args], capture_output=True, text=True,
                          timeout=300, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"ndl {' '.join(args)} -> {done.returncode}\n{done.stdout}\n"
                             f"{done.stderr}")
    return done


@pytest.fixture
def new_db(tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
    """``new_db(backend, label)``: a URL for an empty database (a SQLite path, or a new
    PostgreSQL database); ``drop`` of each happens at the end."""
    admin = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make(backend: str, label: str) -> str:
        if backend == "sqlite":
            return str(tmp_path / f"{label}.db")
        name = f"ndl_backup_{uuid.uuid4().hex[:10]}"
        try:
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            if required("NDL_REQUIRE_PG"):
                pytest.fail(f"NDL_REQUIRE_PG is set but PostgreSQL is unreachable: {exc}")
            pytest.skip(f"PostgreSQL not reachable at {PG_BASE}")
        made.append(name)
        return PG_BASE.rsplit("/", 1)[0] + "/" + name

    yield make
    with admin.connect() as c:
        for name in made:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def wipe_db(url: str) -> None:
    if "://" not in url:
        for suffix in ("", "-wal", "-shm"):
            Path(url + suffix).unlink(missing_ok=True)
        return
    admin = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        c.exec_driver_sql(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
    admin.dispose()


def head(hub_url: str) -> str:
    with Client(hub_url) as c:
        h = c.register_entries(limit=1)["head"]
    return f"{h['seq']}:{h['hash']}"


def ward_counts(hub_url: str, token: str) -> dict[str, int]:
    with Client(hub_url, token) as c:
        ans = c.query("nhs-trust/ward-population", count_by="ward")
    return {r[0]: r[1] for r in ans.rows}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_backup_wipe_restore_verify_query(backend: str, tmp_path: Path, small_site: Path,
                                          new_db: Callable[[str, str], str]) -> None:
    db = new_db(backend, "hub")
    hub_dir = tmp_path / "hub"
    hub = HubProcess(hub_dir, db, extra_args=["--query-timeout", "10"])
    hub.create_org("nhs-trust", "Northshire NHS Foundation Trust", "nhs")
    researcher = hub.create_user("alice", ["researcher"], accredited=True)
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    blob = FileStore(hub_dir / "blobs" / "store")
    payload = b"a finished blob the hub keeps\n" * 1000
    blob_sha = hashlib.sha256(payload).hexdigest()
    blob.put(blob_sha, [payload])
    site = DatasiteProcess(small_site, "", org="nhs-trust", token=steward, poll_wait=2)
    try:
        hub.start()
        site.hub_url = hub.url
        site.start()
        project = granted_project(hub.url, researcher, ["nhs-trust/ae-attendances"])
        before = ward_counts(hub.url, researcher)
        saved_head = head(hub.url)
    finally:
        stop_all(site, hub)
    site_key = (small_site / "key.pem").read_bytes()
    port = hub.port

    hub_archive, site_archive = tmp_path / "hub.tar.gz", tmp_path / "site.tar.gz"
    out = json.loads(ndl("backup", "hub", "--db", db, "--data-dir", str(hub_dir),
                         "--out", str(hub_archive), "--json").stdout)
    assert out["register_head"] == [int(saved_head.split(":")[0]), saved_head.split(":")[1]]
    assert out["blobs"] == 1 and out["rows"]["grants"] >= 1
    ndl("backup", "datasite", str(small_site), "--out", str(site_archive))

    # Wipe: the database, the hub's whole folder, and the datasite's state (its data stay
    # where they live, as they would at the organisation).
    wipe_db(db)
    shutil.rmtree(hub_dir)
    for p in [*small_site.glob("*.pem"), *small_site.glob("*.sqlite*"),
              small_site / "datasite.json", *small_site.glob("datasets/*/metadata.json")]:
        p.unlink()
    assert not (small_site / "key.pem").exists()

    ndl("restore", "hub", str(hub_archive), "--db", db, "--data-dir", str(hub_dir),
        "--expect-key", out["key_fingerprint"])
    ndl("restore", "datasite", str(site_archive), str(small_site))
    assert (small_site / "key.pem").read_bytes() == site_key  # the same identity
    assert FileStore(hub_dir / "blobs" / "store").size(blob_sha) == len(payload)
    ndl("verify", "--db", db, "--data-dir", str(hub_dir), "--expect-head", saved_head)

    hub2 = HubProcess(hub_dir, db, port=port, extra_args=["--query-timeout", "10"])
    site2 = DatasiteProcess(small_site, f"http://127.0.0.1:{port}", org="nhs-trust",
                            poll_wait=2)  # no token: it must be known by its restored key
    try:
        hub2.start()
        assert head(hub2.url) == saved_head  # nothing lost, nothing added
        ndl("verify", "--hub", hub2.url, "--expect-head", saved_head)
        site2.start()
        assert ward_counts(hub2.url, researcher) == before  # the old token still works
        with Client(hub2.url, researcher) as c:
            assert project in {p["id"] for p in c.my_projects()["projects"]}
    finally:
        stop_all(site2, hub2)


def test_an_archive_moves_from_sqlite_to_postgresql_and_back(
        tmp_path: Path, new_db: Callable[[str, str], str]) -> None:
    src = HubProcess(tmp_path / "a", new_db("sqlite", "a"))
    src.create_org("uni", "A University", "academic")
    src.create_user("bob", ["researcher"], org="uni", accredited=True)
    src.create_user("sam", ["steward"], org="uni")
    src.db.dispose()
    pg = new_db("postgres", "b")
    ndl("backup", "hub", "--db", src.db_url, "--data-dir", str(tmp_path / "a"),
        "--out", str(tmp_path / "a.tar.gz"))
    ndl("restore", "hub", str(tmp_path / "a.tar.gz"), "--db", pg,
        "--data-dir", str(tmp_path / "b"))
    ndl("backup", "hub", "--db", pg, "--data-dir", str(tmp_path / "b"),
        "--out", str(tmp_path / "b.tar.gz"))
    back = str(tmp_path / "c.db")
    ndl("restore", "hub", str(tmp_path / "b.tar.gz"), "--db", back,
        "--data-dir", str(tmp_path / "c"))
    counts = []
    for url in (src.db_url, pg, back):
        db = Database(url)
        with db.read_engine.connect() as c:
            counts.append({t.name: c.execute(sa.select(sa.func.count()).select_from(t))
                           .scalar() for t in db_dump.tables()})
        db.dispose()
    assert counts[0] == counts[1] == counts[2] and counts[0]["users"] == 2
    # PostgreSQL's sequences moved past the restored ids: a new user gets a fresh one.
    hub = HubProcess(tmp_path / "b", pg)
    hub.create_user("carol", ["researcher"])
    hub.db.dispose()
    verified = ndl("verify", "--db", back, "--data-dir", str(tmp_path / "c")).stdout
    assert "register OK" in verified

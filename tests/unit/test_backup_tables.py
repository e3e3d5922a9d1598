"""Backups cover every table, whoever adds one: the archive's tables are Base.metadata's, and
the database holds no table a backup would miss. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import sqlalchemy as sa

from ndl.core.db import Base, Database
from ndl.core.keys import SigningKey
from ndl.core.migrate import all_models
from ndl.ops import db_dump
from ndl.ops.backup import backup_hub, restore_hub
from ndl.ops.datasite_backup import backup_datasite, restore_datasite


def _hub(db_url: str, data_dir: Path) -> Database:
    db = Database(db_url)
    db.migrate()
    SigningKey.load_or_create(data_dir / "hub-key.pem")
    return db


def test_every_table_in_the_metadata_is_in_the_backup(db_url: str, tmp_path: Path) -> None:
    all_models()
    db = _hub(db_url, tmp_path / "hub")
    with db.read_engine.connect() as c:
        in_db = set(sa.inspect(c).get_table_names())
    db.dispose()
    out = tmp_path / "b.tar.gz"
    result = backup_hub(db_url, tmp_path / "hub", out)
    with tarfile.open(out) as t:
        names = set(t.getnames())
        manifest = json.loads(t.extractfile("manifest.json").read())  # type: ignore[union-attr]
    expected = [t.name for t in Base.metadata.sorted_tables]
    assert [t["name"] for t in manifest["tables"]] == expected  # parents first
    assert {f"db/{n}.jsonl" for n in expected} <= names
    assert set(result.rows) == set(expected)
    # Nothing in the database escapes the backup but the derived search index and Alembic's
    # own table (a table a migration creates without a model would fail here).
    missed = {n for n in in_db - set(expected)
              if not n.startswith(("dataset_fts", "dataset_search", "alembic_version"))}
    assert missed == set()


def test_force_replaces_a_hub_and_sequences_continue(db_url: str, tmp_path: Path) -> None:
    from ndl.testing import HubProcess

    hub = HubProcess(tmp_path / "hub", db_url)
    hub.create_org("nhs-trust", "NHS", "nhs")
    hub.create_user("alice", ["researcher"])
    hub.db.dispose()
    out = tmp_path / "b.tar.gz"
    backup_hub(db_url, tmp_path / "hub", out)
    done = restore_hub(out, db_url, tmp_path / "again", force=True)
    assert done.rows["users"] == 1 and done.rows["orgs"] == 1
    again = HubProcess(tmp_path / "again", db_url)
    assert again.key.public_b64 == hub.key.public_b64
    again.create_user("bob", ["researcher"])  # a new id past the restored ones
    with again.db.read() as s:
        ids = s.execute(sa.text("SELECT id FROM users ORDER BY id")).scalars().all()
    again.db.dispose()
    assert len(ids) == 2 and ids[1] > ids[0]


def test_a_datasite_backup_leaves_the_data_out_unless_asked(tmp_path: Path,
                                                            small_site: Path) -> None:
    from ndl.datasite.store import DatasiteStore

    DatasiteStore(small_site).close()
    (small_site / "datasite.json").write_text(json.dumps({"id": "nhs-trust", "org": "nhs-trust"}))
    lean, full = tmp_path / "lean.tar.gz", tmp_path / "full.tar.gz"
    made = backup_datasite(small_site, lean)
    backup_datasite(small_site, full, with_data=True)
    with tarfile.open(lean) as t:
        assert not any(n.endswith("data.parquet") for n in t.getnames())
        assert "state/state.sqlite" in t.getnames() and "keys/key.pem" in t.getnames()
    with tarfile.open(full) as t:
        assert "datasets/ae-attendances/data.parquet" in t.getnames()
    assert any("--with-data" in n for n in made.notes)
    back = restore_datasite(lean, tmp_path / "lean")
    assert (tmp_path / "lean" / "key.pem").read_bytes() == (small_site / "key.pem").read_bytes()
    assert any("data.parquet" in n for n in back.notes)
    restore_datasite(full, tmp_path / "full")
    assert (tmp_path / "full/datasets/ward-population/data.parquet").read_bytes() == \
        (small_site / "datasets/ward-population/data.parquet").read_bytes()
    assert db_dump.MAX_LINE > 0


def test_encrypted_keys_stay_encrypted_in_the_archive(tmp_path: Path,
                                                      monkeypatch: object) -> None:
    import pytest

    from ndl.core.errors import KeyLocked

    mp: pytest.MonkeyPatch = monkeypatch  # type: ignore[assignment]
    mp.setenv("NDL_KEY_PASSPHRASE", "correct horse battery staple")
    db_url = str(tmp_path / "hub.db")
    _hub(db_url, tmp_path / "hub").dispose()
    pem = (tmp_path / "hub" / "hub-key.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    out = tmp_path / "b.tar.gz"
    made = backup_hub(db_url, tmp_path / "hub", out)
    with tarfile.open(out) as t:
        kept = t.extractfile("keys/hub-key.pem").read()  # type: ignore[union-attr]
    assert kept == pem  # byte for byte: still encrypted
    assert b"PRIVATE KEY-----\n" in kept and b"BEGIN PRIVATE KEY" not in kept
    done = restore_hub(out, str(tmp_path / "new.db"), tmp_path / "new")
    assert done.key_fingerprint == made.key_fingerprint
    assert (tmp_path / "new" / "hub-key.pem").read_bytes() == pem
    mp.delenv("NDL_KEY_PASSPHRASE")
    with pytest.raises(KeyLocked, match="NDL_KEY_PASSPHRASE"):  # signing needs the key
        backup_hub(db_url, tmp_path / "hub", tmp_path / "c.tar.gz")
    assert not (tmp_path / "c.tar.gz").exists()


def test_a_backup_that_stops_part_way_leaves_no_archive(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import pytest

    from ndl.federation.blobs import FileStore

    db_url = str(tmp_path / "hub" / "hub.db")
    _hub(db_url, tmp_path / "hub").dispose()
    blob = os.urandom(1024 * 1024) * 96
    import hashlib
    FileStore(tmp_path / "hub" / "blobs" / "store").put(hashlib.sha256(blob).hexdigest(), [blob])
    out = tmp_path / "out" / "hub.tar.gz"
    out.parent.mkdir()

    def crash(step: str, n: int) -> None:
        if step == "blobs":  # the archive is open, its blob written, no manifest yet
            raise KeyboardInterrupt  # an operator's Ctrl-C half way
    with pytest.raises(KeyboardInterrupt):
        backup_hub(db_url, tmp_path / "hub", out, progress=crash)
    assert list(out.parent.iterdir()) == []  # no archive, no temporary file

    # Killed outright: the temporary file may stay (hidden), the archive's name never appears.
    proc = subprocess.Popen([sys.executable, "-m", "ndl", "backup", "hub", "--db", db_url,
                             "--data-dir", str(tmp_path / "hub"), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".part") for p in out.parent.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert all(p.name.startswith(".") for p in out.parent.iterdir())

"""Attacks on a backup archive: each is refused with a clear error before anything is written.

Tampering (a changed row, blob or manifest; a consistent forgery re-signed with another key),
names that climb out of the target (``..``, absolute paths, links), members claiming sizes no
archive could hold, truncation, foreign files, another format version, the wrong kind of
backup, and restoring over an install that is not empty.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ndl.core.errors import Conflict, InvalidInput
from ndl.core.keys import SigningKey
from ndl.federation.blobs import FileStore
from ndl.ops import archive
from ndl.ops.archive import ArchiveError, canonical
from ndl.ops.backup import backup_hub, restore_hub
from ndl.ops.datasite_backup import backup_datasite, restore_datasite
from ndl.testing import HubProcess

BLOB = b"blob bytes " * 500
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
Members = list[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture(scope="module")
def hub_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hubsrc")
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "NHS", "nhs")
    hub.create_user("alice", ["researcher"], accredited=True)
    hub.db.dispose()
    FileStore(root / "hub" / "blobs" / "store").put(BLOB_SHA, [BLOB])
    out = root / "hub.tar.gz"
    backup_hub(hub.db_url, root / "hub", out)
    return out


def read(path: Path) -> Members:
    with tarfile.open(path) as t:
        return [(m, t.extractfile(m).read() if m.isreg() else b"")  # type: ignore[union-attr]
                for m in t.getmembers()]


def write(path: Path, members: Members, gz: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            info = tarfile.TarInfo(info.name) if info.isreg() else info
            if info.isreg():
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def change(path: Path, out: Path, fn: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy the archive, passing each member's bytes through ``fn`` (None drops it)."""
    kept = []
    for info, data in read(path):
        new = fn(info.name, data)
        if new is not None:
            kept.append((info, new))
    return write(out, kept)


def manifest_of(path: Path) -> dict:
    return json.loads(dict((i.name, d) for i, d in read(path))[archive.MANIFEST])


def resign(members: Members, key: SigningKey, edit: Callable[[dict], None] | None = None
           ) -> Members:
    """A consistent forgery: recompute every hash, then sign with ``key``."""
    out = dict((i.name, d) for i, d in members)
    m = json.loads(out[archive.MANIFEST])
    m.pop("signature")
    m["members"] = {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                    for n, d in out.items() if n not in (archive.HEADER, archive.MANIFEST)}
    m["public_key"], m["key_fingerprint"] = key.public_b64, key.fingerprint
    if edit:
        edit(m)
    m["signature"] = key.sign(canonical(m))
    out[archive.MANIFEST] = json.dumps(m).encode()
    return [(i, out[i.name]) for i, _ in members]


def assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "new.db").exists()
    assert not (tmp_path / "new").exists()


def restore(archive_path: Path, tmp_path: Path, **kw: object) -> object:
    return restore_hub(archive_path, str(tmp_path / "new.db"), tmp_path / "new",
                       **kw)  # type: ignore[arg-type]


def _edit_row(name: str, data: bytes) -> bytes:
    return data.replace(b'"alice"', b'"mallory"') if name == "db/users.jsonl" else data


def test_a_changed_row_is_refused_before_anything_is_written(hub_archive: Path,
                                                              tmp_path: Path) -> None:
    bad = change(hub_archive, tmp_path / "bad.tar.gz", _edit_row)
    with pytest.raises(ArchiveError, match=r"db/users.jsonl .*does not match its manifest"):
        restore(bad, tmp_path)
    assert_nothing_written(tmp_path)


def test_a_changed_blob_is_refused(hub_archive: Path, tmp_path: Path) -> None:
    bad = change(hub_archive, tmp_path / "bad.tar.gz",
                 lambda n, d: d[:-1] + b"X" if n.startswith("blobs/") else d)
    with pytest.raises(ArchiveError, match=f"blobs/{BLOB_SHA} .*does not match"):
        restore(bad, tmp_path)
    assert_nothing_written(tmp_path)


def test_a_changed_manifest_is_refused(hub_archive: Path, tmp_path: Path) -> None:
    def edit(name: str, data: bytes) -> bytes:
        if name != archive.MANIFEST:
            return data
        m = json.loads(data)
        m["tables"][0]["rows"] += 1  # hashes still match: only the signature can tell
        return json.dumps(m).encode()

    with pytest.raises(ArchiveError, match="not signed by the key it names"):
        restore(change(hub_archive, tmp_path / "bad.tar.gz", edit), tmp_path)
    assert_nothing_written(tmp_path)


def test_rehashed_rows_with_the_old_signature_are_refused(hub_archive: Path,
                                                          tmp_path: Path) -> None:
    members = [(i, _edit_row(i.name, d)) for i, d in read(hub_archive)]
    forged = resign(members, SigningKey.generate())
    m = json.loads(dict((i.name, d) for i, d in forged)[archive.MANIFEST])
    m["signature"] = manifest_of(hub_archive)["signature"]  # the real hub's signature
    forged = [(i, json.dumps(m).encode() if i.name == archive.MANIFEST else d)
              for i, d in forged]
    with pytest.raises(ArchiveError, match="not signed"):
        restore(write(tmp_path / "bad.tar.gz", forged), tmp_path)
    assert_nothing_written(tmp_path)


def test_a_forgery_signed_with_another_key_is_refused_by_expect_key(
        hub_archive: Path, tmp_path: Path) -> None:
    members = [(i, _edit_row(i.name, d)) for i, d in read(hub_archive)
               if i.name != "keys/hub-key.pem"]
    forged = write(tmp_path / "bad.tar.gz", resign(members, SigningKey.generate()))
    real = manifest_of(hub_archive)["key_fingerprint"]
    with pytest.raises(ArchiveError, match=f"not the {real} you expected"):
        restore(forged, tmp_path, expect_key=real)
    assert_nothing_written(tmp_path)


def test_a_hub_key_that_is_not_the_signer_is_refused(hub_archive: Path,
                                                     tmp_path: Path) -> None:
    other = SigningKey.generate()
    pem = tmp_path / "other.pem"
    SigningKey.load_or_create(pem)
    assert other.fingerprint  # a fresh key, not the hub's
    with pytest.raises(Conflict, match="not the key that signed this backup"):
        restore(hub_archive, tmp_path, key_file=pem)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("name", [
    "../escaped", "/etc/ndl-escaped", "keys/../../escaped", "blobs/../../../escaped",
    "settings/../../escaped", "db/../escaped.jsonl", "db/users.jsonl/../../x", "keys/.hidden",
])
def test_names_that_climb_out_are_refused(hub_archive: Path, tmp_path: Path,
                                          name: str) -> None:
    members = read(hub_archive)
    evil = tarfile.TarInfo(name)
    members.insert(1, (evil, b"pwned"))
    with pytest.raises(ArchiveError, match="no ndl backup holds"):
        restore(write(tmp_path / "bad.tar.gz", members), tmp_path)
    assert_nothing_written(tmp_path)
    assert not (tmp_path.parent / "escaped").exists()
    assert not Path("/etc/ndl-escaped").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_links_and_devices_are_refused(hub_archive: Path, tmp_path: Path, kind: bytes) -> None:
    members = read(hub_archive)
    link = tarfile.TarInfo("keys/evil.pem")
    link.type, link.linkname = kind, "/etc/passwd"
    members.insert(1, (link, b""))
    with pytest.raises(ArchiveError, match="not a plain file"):
        restore(write(tmp_path / "bad.tar.gz", members), tmp_path)
    assert_nothing_written(tmp_path)


def _raw_tar(path: Path, members: list[tuple[str, int, bytes]]) -> Path:
    """An uncompressed tar whose headers may claim sizes their data do not have."""
    buf = io.BytesIO()
    for name, claimed, data in members:
        info = tarfile.TarInfo(name)
        info.size = claimed
        buf.write(info.tobuf(tarfile.PAX_FORMAT))
        buf.write(data + b"\0" * (-len(data) % 512))
    buf.write(b"\0" * 1024)
    path.write_bytes(buf.getvalue())
    return path


def _header() -> bytes:
    return json.dumps({"format": "ndl-backup", "format_version": 1, "kind": "hub",
                       "ndl_version": "0.1.0"}).encode()


@pytest.mark.parametrize("name,claimed", [
    ("keys/hub-key.pem", 10 * 1024**3),        # a key file is small
    (f"blobs/{BLOB_SHA}", 10 * 1024**4),        # 10 TiB from an archive of a few KB
    ("db/users.jsonl", 2**60),
])
def test_huge_member_sizes_are_refused(tmp_path: Path, name: str, claimed: int) -> None:
    bad = _raw_tar(tmp_path / "bad.tar", [(archive.HEADER, len(_header()), _header()),
                                          (name, claimed, b"x" * 100)])
    with pytest.raises(ArchiveError, match=f"{name}' claims {claimed:,} bytes"):
        restore(bad, tmp_path)
    assert_nothing_written(tmp_path)


def test_a_huge_manifest_is_refused(tmp_path: Path) -> None:
    bad = _raw_tar(tmp_path / "bad.tar", [(archive.HEADER, len(_header()), _header()),
                                          (archive.MANIFEST, 2**40, b"{}")])
    with pytest.raises(ArchiveError, match=r"manifest.json claims"):
        restore(bad, tmp_path)


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_a_truncated_archive_is_refused(hub_archive: Path, tmp_path: Path, cut: float) -> None:
    data = hub_archive.read_bytes()
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ArchiveError, match=r"truncated|damaged"):
        restore(bad, tmp_path)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not an archive at all\n" * 10,
                                     b"\x1f\x8b\x08\x00garbage"])
def test_foreign_files_are_refused(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "foreign.tar.gz"
    bad.write_bytes(content)
    with pytest.raises(ArchiveError, match=r"not an ndl backup|damaged|empty"):
        restore(bad, tmp_path)
    assert_nothing_written(tmp_path)


def test_a_foreign_tar_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("README")
    bad = write(tmp_path / "foreign.tar.gz", [(info, b"hello")])
    with pytest.raises(ArchiveError, match=r"does not start with ndl-backup.json"):
        restore(bad, tmp_path)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_another_format_version_is_refused(hub_archive: Path, tmp_path: Path,
                                           version: object) -> None:
    def edit(name: str, data: bytes) -> bytes:
        if name != archive.HEADER:
            return data
        return json.dumps({**json.loads(data), "format_version": version}).encode()

    with pytest.raises(ArchiveError, match=r"format version .* this ndl reads version 1"):
        restore(change(hub_archive, tmp_path / "v.tar.gz", edit), tmp_path)
    assert_nothing_written(tmp_path)


def test_a_member_after_the_manifest_is_refused(hub_archive: Path, tmp_path: Path) -> None:
    members = [*read(hub_archive), (tarfile.TarInfo("settings/late.json"), b"{}")]
    with pytest.raises(ArchiveError, match="after its manifest"):
        restore(write(tmp_path / "bad.tar.gz", members), tmp_path)


def test_a_dropped_member_is_refused(hub_archive: Path, tmp_path: Path) -> None:
    bad = change(hub_archive, tmp_path / "bad.tar.gz",
                 lambda n, d: None if n == "db/orgs.jsonl" else d)
    with pytest.raises(ArchiveError, match=r"lists 'db/orgs.jsonl' but the archive does not"):
        restore(bad, tmp_path)
    assert_nothing_written(tmp_path)


def test_a_hub_archive_is_not_a_datasite_backup(hub_archive: Path, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="is a hub backup, not a datasite backup"):
        restore_datasite(hub_archive, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_restoring_over_a_non_empty_install_is_refused(hub_archive: Path,
                                                       tmp_path: Path) -> None:
    live = HubProcess(tmp_path / "live")  # a database with tables, a data dir with a key
    live.create_org("other", "Other", "other")
    live.db.dispose()
    key_before = (tmp_path / "live" / "hub-key.pem").read_bytes()
    with pytest.raises(Conflict, match=r"not empty .*--force"):
        restore_hub(hub_archive, live.db_url, tmp_path / "live")
    with pytest.raises(Conflict, match="not empty"):  # the data folder alone counts too
        restore_hub(hub_archive, str(tmp_path / "other.db"), tmp_path / "live")
    assert (tmp_path / "live" / "hub-key.pem").read_bytes() == key_before  # untouched
    assert not (tmp_path / "other.db").exists() or (tmp_path / "other.db").stat().st_size == 0
    done = restore_hub(hub_archive, live.db_url, tmp_path / "live", force=True)
    assert done.rows["users"] == 1 and done.blobs == 1


def test_a_datasite_restore_over_a_datasite_is_refused(tmp_path: Path,
                                                       small_site: Path) -> None:
    from ndl.datasite.store import DatasiteStore

    DatasiteStore(small_site).close()
    out = tmp_path / "site.tar.gz"
    backup_datasite(small_site, out)
    with pytest.raises(Conflict, match="not empty"):
        restore_datasite(out, small_site)
    evil = read(out)
    evil.insert(1, (tarfile.TarInfo("datasets/../../escaped.json"), b"{}"))
    with pytest.raises(ArchiveError, match="no ndl backup holds"):
        restore_datasite(write(tmp_path / "bad.tar.gz", evil), tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists() and not (tmp_path.parent / "escaped.json").exists()


def test_an_archive_without_keys_needs_the_key(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "hub")
    hub.db.dispose()
    out = tmp_path / "nokeys.tar.gz"
    result = backup_hub(hub.db_url, tmp_path / "hub", out, exclude_keys=True)
    assert not any(i.name.startswith("keys/") for i, _ in read(out))
    assert not result.keys_included
    with pytest.raises(Conflict, match="--key"):
        restore(out, tmp_path)
    assert_nothing_written(tmp_path)
    done = restore(out, tmp_path, key_file=tmp_path / "hub" / "hub-key.pem")
    assert done.key_fingerprint == hub.key.fingerprint  # type: ignore[attr-defined]


def test_invalid_input_is_the_base_of_archive_errors() -> None:
    assert issubclass(ArchiveError, InvalidInput)  # exit code 2, HTTP 422


def test_the_command_line_says_why_and_exits_with_the_error_code(hub_archive: Path,
                                                                 tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = change(hub_archive, tmp_path / "bad.tar.gz", _edit_row)
    done = subprocess.run([sys.executable, "-m", "ndl", "restore", "hub", str(bad), "--db",
                           str(tmp_path / "new.db"), "--data-dir", str(tmp_path / "new")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == InvalidInput.exit_code
    assert "does not match its manifest" in done.stderr and "Traceback" not in done.stderr
    assert_nothing_written(tmp_path)
    missing = subprocess.run([sys.executable, "-m", "ndl", "backup", "hub", "--data-dir",
                              str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.tar.gz")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 5 and "no hub key" in missing.stderr
    assert not (tmp_path / "x.tar.gz").exists()

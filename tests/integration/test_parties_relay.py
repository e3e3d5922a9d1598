"""End-to-end encryption through a real hub: a datasite seals records to an enclave.

A real ``ndl hub`` and a real ``ndl datasite`` run on loopback. The datasite publishes its
encryption key on start; an enclave registers; the datasite (with the keys from its own
folder) sends the enclave a small sealed payload inline and a larger record set as a sealed
blob; the enclave opens both. Then every byte the hub keeps (its database file with the WAL,
its blob store, its log) is scanned for a marker string that is in the plaintext: it is never
there, while what the enclave decrypts holds it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from ndl.core.keys import SigningKey
from ndl.core.sealed import EncryptionKey
from ndl.federation.party_client import PartyClient
from ndl.testing import DatasiteProcess, HubProcess, stop_all, write_dataset

MARKER = f"NDL-PLAINTEXT-MARKER-{uuid.uuid4().hex}"


@dataclass
class Net:
    hub: HubProcess
    site: DatasiteProcess
    steward: str
    researcher: str


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("parties")
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "Northshire NHS Foundation Trust", "nhs")
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    researcher = hub.create_user("alice", ["researcher"])
    write_dataset(root / "site", "ward-population",
                  pa.table({"ward": ["A", "B"], "population": [100, 7]}), tier="open")
    site: DatasiteProcess | None = None
    ok = False
    try:
        hub.start()
        site = DatasiteProcess(root / "site", hub.url, org="nhs-trust", token=steward,
                               poll_wait=2)
        site.start()
        yield Net(hub, site, steward, researcher)
        ok = True
    finally:
        stop_all(site, hub, show_logs=not ok)


def _published_key(url: str, principal: str, timeout: float = 90.0) -> dict[str, object]:
    """The datasite publishes its key just after registering: wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/parties/{principal}/keys", timeout=10)
        if r.status_code == 200 and r.json().get("encryption_key"):
            data: dict[str, object] = r.json()
            return data
        time.sleep(0.2)
    raise AssertionError(f"{principal} never published an encryption key")


def _hub_bytes_hold(data_dir: Path, needle: bytes) -> list[str]:
    """Every file under the hub's data folder (database, WAL, blob store, log) holding
    ``needle``."""
    return [str(p) for p in sorted(data_dir.rglob("*"))
            if p.is_file() and needle in p.read_bytes()]


def test_a_datasite_seals_records_to_an_enclave_and_the_hub_never_holds_plaintext(
        net: Net, tmp_path: Path) -> None:
    url, site_root = net.hub.url, net.site.root
    published = _published_key(url, "datasite:nhs-trust")
    site_enc = EncryptionKey.load_or_create(site_root / "encryption-key.pem")
    assert published["encryption_key"] == site_enc.public_b64
    assert (site_root / "encryption-key.pem").stat().st_mode & 0o077 == 0

    enclave_dir = tmp_path / "enclave"
    enclave = PartyClient(url, principal="party:enclave-1",
                          signing_key=SigningKey.load_or_create(enclave_dir / "key.pem"),
                          encryption_key=EncryptionKey.load_or_create(
                              enclave_dir / "encryption-key.pem"))
    site = PartyClient(url, principal="datasite:nhs-trust",
                       signing_key=SigningKey.load_or_create(site_root / "key.pem"),
                       encryption_key=site_enc)
    with enclave, site:
        reg = enclave.register(net.steward, kind="enclave", org="nhs-trust", name="Enclave")
        assert reg["created"] and reg["party"]["principal"] == "party:enclave-1"
        # The sender takes the datasite's own key only with the datasite's signature on it.
        assert site.keys_of("datasite:nhs-trust").encryption_key == site_enc.public_b64

        small = f"nhs_number,postcode\n9434765919,{MARKER}\n".encode()
        sent = site.send("party:enclave-1", "linkage.match-keys", small)
        records = tmp_path / "records.csv"
        with records.open("w") as f:
            for i in range(60_000):  # ~3 MB: several 1 MiB chunks, blob upload in chunks
                f.write(f"{i},{MARKER},94347659{i % 100:02d}\n")
        big = site.send_file("party:enclave-1", "linkage.records", records, workdir=tmp_path)
        assert big["size"] > records.stat().st_size

        # What the hub holds now: ciphertext, its hash and size, never the marker.
        data_dir = net.hub.data_dir
        assert _hub_bytes_hold(data_dir, MARKER.encode()) == []
        assert _hub_bytes_hold(data_dir, sent["sha256"].encode()), "the scan must see the rows"
        blob_files = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
        assert any(p.stat().st_size == big["size"] for p in blob_files), blob_files

        got = []
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            got += enclave.receive(wait=5)
        assert sorted(m.purpose for m in got) == ["linkage.match-keys", "linkage.records"]
        inline = next(m for m in got if m.purpose == "linkage.match-keys")
        assert inline.sender == "datasite:nhs-trust" and inline.plaintext == small
        assert MARKER.encode() in inline.plaintext
        blob_msg = next(m for m in got if m.purpose == "linkage.records")
        assert blob_msg.plaintext is None and blob_msg.blob_sha256 == big["sha256"]
        opened = enclave.open_blob(blob_msg, tmp_path / "received.csv")
        assert (tmp_path / "received.csv").read_bytes() == records.read_bytes()
        assert opened.size == records.stat().st_size

        # Nobody else reads the sealed blob: the researcher's token is refused it.
        r = httpx.get(f"{url}/api/blobs/{big['sha256']}", timeout=10,
                      headers={"Authorization": f"Bearer {net.researcher}"})
        assert r.status_code == 404

        assert sorted(enclave.ack([m.message_id for m in got])) == sorted(
            m.message_id for m in got)
        assert enclave.receive(wait=0) == []
        assert _hub_bytes_hold(data_dir, MARKER.encode()) == []

    entries = httpx.get(f"{url}/api/register", params={"limit": 1000}, timeout=10).json()
    kinds = [(e["kind"], e["subject"]) for e in entries["entries"]]
    assert ("party.registered", "party:enclave-1") in kinds
    assert ("party.key_changed", "datasite:nhs-trust") in kinds
    assert MARKER not in str(entries)

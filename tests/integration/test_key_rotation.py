"""Key rotation and revocation across a real hub and two real datasites, with work in flight.

- A datasite's key is rotated (``ndl datasite rotate-key``) while queries to both datasites
  are queued and being answered: none is lost; during the overlap envelopes signed by either
  key are accepted; after it the old key is refused. Revoking a key refuses its signatures at
  once, on every path (poll, reply, a party-signed request).
- The hub's key is rotated (``ndl admin rotate-hub-key``) while both datasites run: both
  follow it without a restart, a grant signed before the rotation still verifies at the
  datasite; once the old hub key is revoked, the datasites refuse what it signed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from ndl.client import Client
from ndl.core.envelope import seal
from ndl.core.errors import EnvelopeRejected, PermissionDenied
from ndl.core.keys import SigningKey, fingerprint
from ndl.federation.blobs import ENVELOPE_HEADER, REQUEST_KIND
from ndl.testing import DatasiteProcess, HubProcess, granted_project, stop_all, write_dataset

ROWS = pa.table({"region": ["North", "South", "East"] * 20, "n": list(range(60))})


@dataclass
class Net:
    hub: HubProcess
    a: DatasiteProcess
    b: DatasiteProcess
    admin: str
    researcher: str


@contextmanager
def network(root: Path) -> Iterator[Net]:
    hub = HubProcess(root / "hub")
    for org in ("nhs-trust", "dfe"):
        hub.create_org(org)
    stewards = {org: hub.create_user(f"steward-{org}", ["steward"], org=org)
                for org in ("nhs-trust", "dfe")}
    admin = hub.create_user("root", ["admin"])
    researcher = hub.create_user("alice", ["researcher"], accredited=True)
    sites = {}
    for org in ("nhs-trust", "dfe"):
        write_dataset(root / org, "rows", ROWS, tier="open")
        write_dataset(root / org, "held", ROWS, tier="safeguarded")
        sites[org] = DatasiteProcess(root / org, hub.url, org=org, token=stewards[org],
                                     poll_wait=2)
    a = b = None
    try:
        hub.start()
        a = sites["nhs-trust"].start()
        b = sites["dfe"].start()
        yield Net(hub, a, b, admin, researcher)
    except BaseException:
        stop_all(a, b, hub, show_logs=True)
        raise
    stop_all(a, b, hub)


def ndl(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NDL_ALLOW_HTTP_LOOPBACK": "1"}
    return subprocess.run([sys.executable, "-m", "ndl", *argv], capture_output=True,
                          text=True, env=env, timeout=120)


def count(hub: HubProcess, site: str) -> int:
    with Client(hub.url, timeout=60) as c:
        answer = c.query(f"{site}/rows", count_by="region")
    return sum(r[-1] for r in answer.rows)


def signed_post(hub: HubProcess, key: SigningKey, sender: str, path: str, kind: str,
                body: dict[str, Any]) -> httpx.Response:
    env = seal(key, sender=sender, recipient="hub", kind=kind, body=body)
    return httpx.post(f"{hub.url}{path}", json=env, timeout=30)


def keys_of(hub: HubProcess, owner: str) -> dict[str, dict[str, Any]]:
    data = httpx.get(f"{hub.url}/api/keys", params={"owner": owner}, timeout=30).json()
    return {k["fingerprint"]: k for k in data["keys"]}


def test_datasite_rotation_with_work_in_flight_then_revocation(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        old = SigningKey.load_or_create(net.a.root / "key.pem")  # a copy, as an attacker or
        # a stale process might still hold it
        answers: list[tuple[str, int]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def asker(site: str) -> None:
            while not stop.is_set():
                try:
                    answers.append((site, count(net.hub, site)))
                except BaseException as exc:
                    errors.append(exc)

        askers = [threading.Thread(target=asker, args=(s,)) for s in
                  ("nhs-trust", "dfe", "nhs-trust", "dfe")]
        for t in askers:
            t.start()
        time.sleep(1.0)
        rotated = ndl("datasite", "rotate-key", str(net.a.root), "--overlap", "20")
        rotated_at = time.monotonic()
        assert rotated.returncode == 0, rotated.stderr + rotated.stdout
        # Envelopes signed by the old key are still accepted during the overlap ...
        during = signed_post(net.hub, old, "nhs-trust", "/api/federation/heartbeat",
                             "heartbeat", {"message_ids": []})
        new = SigningKey.load_or_create(net.a.root / "key.pem")
        assert new.public_b64 != old.public_b64
        by_new = signed_post(net.hub, new, "nhs-trust", "/api/federation/heartbeat",
                             "heartbeat", {"message_ids": []})
        time.sleep(3.0)  # questions keep coming through the switch
        stop.set()
        for t in askers:
            t.join(timeout=120)
        assert during.status_code == 200, during.text
        assert by_new.status_code == 200, by_new.text
        assert not errors, errors[:3]
        assert {s for s, _ in answers} == {"nhs-trust", "dfe"}
        assert all(n == ROWS.num_rows for _, n in answers)  # every answer whole and right
        keys = keys_of(net.hub, "datasite:nhs-trust")
        assert keys[old.fingerprint]["state"] == "retiring"
        assert keys[new.fingerprint]["state"] == "active"

        # ... and refused once it is over, while the datasite answers with its new key.
        time.sleep(max(0.0, 21.0 - (time.monotonic() - rotated_at)))
        after = signed_post(net.hub, old, "nhs-trust", "/api/federation/heartbeat",
                            "heartbeat", {"message_ids": []})
        assert after.status_code == 401, after.text
        assert keys_of(net.hub, "datasite:nhs-trust")[old.fingerprint]["state"] == "retired"
        assert count(net.hub, "nhs-trust") == ROWS.num_rows

        # Revoking the datasite's current key refuses its signatures at once, everywhere.
        with Client(net.hub.url, net.admin) as c:
            c._request("POST", f"/api/admin/keys/{new.fingerprint}/revoke",
                       json={"reason": "key file copied off the server"})
        poll = signed_post(net.hub, new, "nhs-trust", "/api/federation/poll", "poll",
                           {"wait": 0})
        reply = signed_post(net.hub, new, "nhs-trust", "/api/federation/reply", "reply",
                            {"message_id": "x", "ok": True})
        party = signed_post(net.hub, new, "nhs-trust", "/api/federation/party-keys",
                            "party.keys", {"encryption_key": "x"})
        header = seal(new, sender="nhs-trust", recipient="hub", kind=REQUEST_KIND,
                      body={"method": "GET", "path": "/api/blobs/" + "0" * 64, "args": {}})
        download = httpx.get(f"{net.hub.url}/api/blobs/{'0' * 64}", timeout=30, headers={
            ENVELOPE_HEADER: base64.urlsafe_b64encode(json.dumps(header).encode()).decode()})
        for r in (poll, reply, party, download):
            assert r.status_code == 401, (r.request.url, r.text)
        assert "no key valid now" in poll.json()["error"]["message"]
        # The other datasite is untouched.
        assert count(net.hub, "dfe") == ROWS.num_rows
        with Client(net.hub.url) as c:
            kinds = [e["kind"] for e in c.register_entries(limit=1000)["entries"]]
            assert kinds.count("key.rotated") == 1 and kinds.count("key.revoked") == 1
            assert c._request("GET", "/api/register/verify")["ok"]


def test_hub_rotation_is_followed_and_a_revoked_hub_key_is_refused(tmp_path: Path) -> None:
    with network(tmp_path) as net:
        project = granted_project(net.hub.url, net.researcher, ["nhs-trust/held", "dfe/held"])
        old_hub = net.hub.key.public_b64
        with Client(net.hub.url, net.researcher) as c:
            before = {s: c.budget(f"{s}/held", project) for s in ("nhs-trust", "dfe")}
        rotated = ndl("admin", "rotate-hub-key", "--overlap", "1d", "--db", net.hub.db_url,
                      "--data-dir", str(net.hub.data_dir))
        assert rotated.returncode == 0, rotated.stderr + rotated.stdout
        new_hub = SigningKey.load_or_create(net.hub.data_dir / "hub-key.pem").public_b64
        assert new_hub != old_hub
        doc = httpx.get(f"{net.hub.url}/api/federation/hub-key", timeout=30).json()
        assert doc["public_key"] == new_hub  # the running hub switched without a restart

        # Both datasites, still running, open work the hub now signs with its new key...
        for site in ("nhs-trust", "dfe"):
            assert count(net.hub, site) == ROWS.num_rows
        for d in (net.a, net.b):
            ring = json.loads((d.root / "datasite.json").read_text())["hub_keys"]
            assert {k["public_key"] for k in ring} == {old_hub, new_hub}
        # ... and still accept the grant the old key signed before the rotation.
        with Client(net.hub.url, net.researcher) as c:
            for site in ("nhs-trust", "dfe"):
                assert c.budget(f"{site}/held", project)["budget_remaining"] == \
                    before[site]["budget_remaining"]

        revoked = ndl("admin", "revoke-key", fingerprint(old_hub), "--reason",
                      "hub key backup lost", "--db", net.hub.db_url,
                      "--data-dir", str(net.hub.data_dir))
        assert revoked.returncode == 0, revoked.stderr + revoked.stdout
        # The datasites learn of it from their next poll (a statement the new key signed)
        # and refuse the grant the revoked key signed.
        deadline = time.monotonic() + 60
        for d in (net.a, net.b):
            while True:
                ring = json.loads((d.root / "datasite.json").read_text())["hub_keys"]
                if any(k["public_key"] == old_hub and k["revoked_at"] for k in ring):
                    break
                assert time.monotonic() < deadline, d.log()[-3000:]
                time.sleep(0.3)
        with Client(net.hub.url, net.researcher) as c:
            for site in ("nhs-trust", "dfe"):
                with pytest.raises(PermissionDenied, match="hub key valid when"):
                    c.budget(f"{site}/held", project)
        # Work the new key signs is still done; the register still verifies across keys.
        assert count(net.hub, "dfe") == ROWS.num_rows
        with Client(net.hub.url) as c:
            assert c._request("GET", "/api/register/verify")["ok"]
        verify = ndl("verify", "--hub", net.hub.url)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_revoked_hub_key_cannot_start_a_hub(tmp_path: Path) -> None:
    """Rotating back is impossible: a hub whose key file holds a revoked key refuses to
    start, saying what to do."""
    hub = HubProcess(tmp_path / "hub")
    old = hub.key.public_b64
    copy = (tmp_path / "hub" / "hub-key.pem").read_bytes()
    assert ndl("admin", "rotate-hub-key", "--overlap", "0", "--db", hub.db_url,
               "--data-dir", str(hub.data_dir)).returncode == 0
    assert ndl("admin", "revoke-key", fingerprint(old), "--reason", "test", "--db",
               hub.db_url, "--data-dir", str(hub.data_dir)).returncode == 0
    (tmp_path / "hub" / "hub-key.pem").write_bytes(copy)
    with pytest.raises((EnvelopeRejected, Exception)):
        hub.start()
    assert "was revoked" in hub.log()
    hub.db.dispose()

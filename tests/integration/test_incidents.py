"""Incidents and the security log across real processes: a hub (SQLite or PostgreSQL) and a
datasite on loopback, driven through the API and the ``ndl`` CLI as people would.

A member raises an incident naming the datasite's dataset and a project: the datasite
receives the hub-signed notice through its mailbox, checks and keeps it, and acknowledges
it; the project's member and the data's steward see it in their notices; the public register
shows that it happened and nothing of what it was. An admin records the response and closes
it on the hub's machine; the datasite hears of the closure too. Meanwhile a failed sign-in, a
token issued and downloads are in the security log's JSON-lines export, with no secret in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import rfc8785

from ndl.core.keys import verify_signature
from ndl.datasite import notices as kept
from ndl.testing import DatasiteProcess, HubProcess, granted_project

PASSWORD = "correct horse battery staple"
WRONG = "not-the-password-at-all"
SECRET = "Dr Jane Roe copied the ward extract to a personal laptop"
DATASET = "nhs-trust/ae-attendances"
T = TypeVar("T")


@dataclass
class Fed:
    hub: HubProcess
    site: DatasiteProcess
    site_root: Path
    alice: str   # researcher, project member
    bob: str     # researcher who raises the incident
    sam: str     # data steward of nhs-trust
    admin: str
    project: str


@pytest.fixture
def fed(db_url: str, tmp_path: Path, small_site: Path) -> Iterator[Fed]:
    hub = HubProcess(tmp_path / "hub", db_url, extra_args=[
        "--query-timeout", "10", "--lease-seconds", "2", "--share-security-log", "org"])
    hub.create_org("nhs-trust", "Northshire NHS Foundation Trust", "nhs")
    hub.create_org("uni", "A university", "academic")
    alice = hub.create_user("alice", ["researcher"], org="uni", accredited=True,
                            password=PASSWORD)
    bob = hub.create_user("bob", ["researcher"], org="uni")
    sam = hub.create_user("sam", ["steward"], org="nhs-trust")
    admin = hub.create_user("root", ["admin"])
    with hub:
        site = DatasiteProcess(small_site, hub.url, org="nhs-trust", token=sam, poll_wait=2)
        with site:
            project = granted_project(hub.url, alice, [DATASET])
            yield Fed(hub, site, small_site, alice, bob, sam, admin, project)


def api(fed: Fed, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=fed.hub.url, headers=headers, timeout=60)


def ndl(fed: Fed, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NDL_HUB": fed.hub.url,
           "NDL_ALLOW_HTTP_LOOPBACK": "1", "NDL_CONFIG_DIR": str(fed.hub.data_dir / "cfg"),
           **({"NDL_TOKEN": token} if token else {}),
           **{k: v for k, v in os.environ.items() if k.startswith("PG")}}
    return subprocess.run([sys.executable, "-m", "ndl", *args], capture_output=True,
                          text=True, timeout=180, env=env)


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def eventually(look: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = look()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout:g} s")


def _hub_key(fed: Fed) -> str:
    key = json.loads((fed.site_root / "datasite.json").read_text())["hub_key"]
    return str(key if isinstance(key, str) else key[0])


def _site_notice(fed: Fed, incident: int, event: str) -> kept.ReceivedNotice | None:
    return next((n for n in kept.received(fed.site_root)
                 if n.incident == incident and n.event == event), None)


def test_an_incident_reaches_its_datasite_and_people_and_the_register_keeps_its_secret(
        fed: Fed) -> None:
    made = json.loads(ok(ndl(
        fed, "incident", "raise", "--title", "Ward extract on a laptop", "--severity", "high",
        "--description", SECRET, "--dataset", DATASET, "--project", fed.project, "--json",
        token=fed.bob)))
    iid = made["id"]
    assert made["datasites_told"] == ["nhs-trust"] and made["description"] == SECRET

    # The datasite took the notice from its mailbox, checked the hub's signature, kept it.
    got = eventually(lambda: _site_notice(fed, iid, "raised"), "the datasite's notice")
    assert got.severity == "high" and got.touches == [f"dataset {DATASET}"]
    signed = {"incident": got.incident, "event": got.event, "severity": got.severity,
              "state": got.state, "title": got.title, "touches": got.touches, "at": got.at}
    assert verify_signature(_hub_key(fed), got.signature, rfc8785.dumps(signed))
    listed = json.loads(ok(ndl(fed, "datasite", "notices", "--dir", str(fed.site_root),
                               "--json")))
    assert [n["incident"] for n in listed] == [iid]

    # ... and acknowledged it: the admin sees the answer on the incident.
    def acked() -> bool:
        with api(fed, fed.admin) as http:
            view = http.get(f"/api/incidents/{iid}").json()
        return any(n["recipient_kind"] == "datasite" and n.get("acknowledged")
                   for n in view["notices"])
    eventually(acked, "the datasite's acknowledgement")

    # The project's member and the data's steward are told; they see what, not the detail.
    mine = json.loads(ok(ndl(fed, "notices", "--json", token=fed.alice)))
    assert [(n["incident"], n["event"]) for n in mine] == [(iid, "raised")]
    assert "member of project" in mine[0]["why"]
    with api(fed, fed.sam) as http:
        assert [n["incident"] for n in http.get("/api/notices").json()["notices"]] == [iid]
        seen = http.get(f"/api/incidents/{iid}").json()
    assert "description" not in seen and seen["touches"]["dataset"] == [DATASET]
    with api(fed, fed.alice) as http:
        page = http.get("/notices")
    assert page.status_code == 200 and "Ward extract on a laptop" in page.text
    assert SECRET not in page.text

    # The public register: that it happened, how severe, and nothing else.
    with api(fed) as http:
        entries = http.get("/api/register", params={"kind": "incident.raised"}).json()
    (entry,) = entries["entries"]
    assert entry["subject"] == f"incident:{iid}" and entry["payload"]["severity"] == "high"
    text = json.dumps(entry)
    for private in (SECRET, "laptop", "bob", "alice", "sam"):
        assert private not in text

    # The response is recorded and linked on the hub's machine, then the incident closes.
    db = ["--db", fed.hub.db_url, "--data-dir", str(fed.hub.data_dir)]
    with api(fed, fed.alice) as http:
        grant_id = http.get(f"/api/projects/{fed.project}").json()["grants"][0]["id"]
    with api(fed, fed.sam) as http:
        revoked = http.post(f"/api/grants/{grant_id}/revoke",
                            json={"reason": "Incident: data on a laptop."})
        assert revoked.status_code == 200, revoked.text
    out = ok(ndl(fed, "admin", "incident", "act", str(iid), "--action", "grant_revocation",
                 "--subject", f"grant:{grant_id}", *db))
    assert "register entry" in out
    ok(ndl(fed, "admin", "incident", "close", str(iid), *db))
    eventually(lambda: _site_notice(fed, iid, "closed"), "the closing notice")
    with api(fed, fed.bob) as http:
        final = http.get(f"/api/incidents/{iid}").json()
    assert final["state"] == "closed"
    (action,) = final["actions"]
    assert action["action"] == "grant_revocation" and action["register_seq"]
    with api(fed) as http:
        linked = http.get("/api/register", params={"after": action["register_seq"] - 1,
                                                   "limit": 1}).json()["entries"][0]
        closed = http.get("/api/register", params={"kind": "incident.closed"}).json()
    assert linked["kind"] == "grant.revoked" and linked["hash"] == action["register_hash"]
    assert [e["subject"] for e in closed["entries"]] == [f"incident:{iid}"]


def _export(fed: Fed, tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / "security.jsonl"
    ok(ndl(fed, "admin", "security-log", "--out", str(out), "--db", fed.hub.db_url,
           "--data-dir", str(fed.hub.data_dir), *args))
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_sign_in_failure_token_and_downloads_are_in_the_security_log(
        fed: Fed, tmp_path: Path) -> None:
    with api(fed) as http:
        refused = http.post("/api/auth/login", json={"username": "alice", "password": WRONG})
        signed_in = http.post("/api/auth/login",
                              json={"username": "alice", "password": PASSWORD})
        assert refused.status_code == 401 and signed_in.status_code == 200
        token = signed_in.json()["token"]
        rows = http.get("/api/datasets/nhs-trust/ward-population/rows",
                        params={"format": "json"})
        csv = http.get("/api/datasets/nhs-trust/ward-population/rows",
                       params={"format": "csv"})
        assert rows.status_code == 200 and csv.status_code == 200, csv.text

    events = _export(fed, tmp_path)
    kinds = [(e["kind"], e["actor"]) for e in events]
    assert ("auth.sign_in_failed", "user:alice") in kinds
    assert ("auth.sign_in", "user:alice") in kinds
    assert ("auth.token_issued", "user:alice") in kinds
    served = next(e for e in events if e["kind"] == "transfer.rows_served")
    assert served["subject"] == "dataset:nhs-trust/ward-population"
    assert served["org"] == "nhs-trust" and served["details"]["rows"] == 3
    assert served["source"] == "127.0.0.1"
    delivered = next(e for e in events if e["kind"] == "transfer.result_delivered")
    assert delivered["details"]["kind"] == "export"
    failed = next(e for e in events if e["kind"] == "auth.sign_in_failed")
    assert failed["source"] == "127.0.0.1" and failed["outcome"] == "failed"
    raw = (tmp_path / "security.jsonl").read_text()
    for secret in (PASSWORD, WRONG, token, fed.alice, fed.admin):
        assert secret not in raw

    # The chain holds, and the export just saved (as a SIEM would keep it) still matches.
    assert all(len(e["hash"]) == 64 for e in events)
    saved = tmp_path / "saved.jsonl"
    saved.write_text((tmp_path / "security.jsonl").read_text())
    assert "unchanged" in ok(ndl(fed, "admin", "security-log", "--verify", str(saved),
                                 "--db", fed.hub.db_url, "--data-dir", str(fed.hub.data_dir)))

    only_auth = _export(fed, tmp_path, "--kind", "auth")
    assert only_auth and all(e["kind"].startswith("auth.") for e in only_auth)

    # The same over HTTP for an admin, as JSON lines; the export itself is logged.
    with api(fed, fed.admin) as http:
        streamed = http.get("/api/admin/security-log", params={"kind": "transfer"})
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(x) for x in streamed.text.splitlines()]
        assert {e["kind"] for e in lines} >= {"transfer.rows_served",
                                              "transfer.result_delivered"}
    assert any(e["kind"] == "admin.security_log_export" for e in _export(fed, tmp_path))

    # Shared with the federation (this hub: --share-security-log org): the datasite's steward
    # gets the events about its own organisation only, here none of Alice's (uni's) sign-ins.
    with api(fed, fed.sam) as http:
        shared = [json.loads(x) for x in http.get("/api/security-log").text.splitlines()]
    assert shared and {e["org"] for e in shared} == {"nhs-trust"}
    assert any(e["kind"] == "transfer.rows_served" for e in shared)
    assert not any(e["actor"] == "user:alice" and e["kind"].startswith("auth.")
                   for e in shared)
    with api(fed, fed.alice) as http:
        assert http.get("/api/security-log").status_code == 403
        assert http.get("/api/admin/security-log").status_code == 403

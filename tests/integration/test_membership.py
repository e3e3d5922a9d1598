"""Joining, leaving and deleting, end to end: a real hub and two real datasite processes.

The NHS trust's datasite is registered by its data steward (approved in the same act); the
DfE's is started with an operator's token that is no steward's, so it joins ``pending`` and
is refused until a DfE steward approves it. Both report signed status every 2 seconds. Then
the DfE's retires (its entries leave the catalogue, its grants end, the NHS trust's are
untouched), an NHS dataset is withdrawn and deleted at its datasite (a signed deletion
record in the register), a project is closed, and the NHS site's status goes stale once it
stops. The tests run in order and share the federation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import rfc8785

from ndl.client import Client
from ndl.core.errors import Conflict
from ndl.core.keys import verify_signature
from ndl.testing import DatasiteProcess, HubProcess, stop_all, write_dataset

SIGNED = ("v", "kind", "sender", "recipient", "nonce", "iat", "exp", "body")
PROJECT = dict(title="Care and schooling", legal_basis="public-task", end_date="2099-01-01",
               purpose="Understand how emergency care use relates to school attendance.",
               lay_summary="Counts by area to plan children's services.")


@dataclass
class Fed:
    hub: HubProcess
    nhs: DatasiteProcess
    dfe: DatasiteProcess
    nhs_root: Path
    dfe_root: Path
    tokens: dict[str, str]

    def client(self, who: str) -> Client:
        return Client(self.hub.url, self.tokens[who])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ndl(fed: Fed, who: str, *args: str) -> str:
    """Run the ``ndl`` CLI as ``who``; its output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "ndl", *args], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NDL_HUB": fed.hub.url,
             "NDL_TOKEN": fed.tokens[who], "NDL_ALLOW_HTTP_LOOPBACK": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def signature_ok(env: dict[str, Any], public_key: str) -> bool:
    return verify_signature(public_key, env["sig"],
                            rfc8785.dumps({k: env[k] for k in SIGNED}))


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    root = tmp_path_factory.mktemp("membership")
    nhs_root, dfe_root = root / "nhs", root / "dfe"
    regions = pa.table({"region": ["North"] * 30 + ["London"] * 20})
    write_dataset(nhs_root, "ae-attendances", regions, title="A&E attendances")
    write_dataset(nhs_root, "old-stats", regions, tier="open", title="Old statistics")
    write_dataset(dfe_root, "pupils", regions, title="Pupils by region")
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "NHS trust", "nhs")
    hub.create_org("dfe", "Department for Education", "education")
    tokens = {
        "alice": hub.create_user("alice", ["researcher"], accredited=True),
        "nina": hub.create_user("nina", ["steward"], org="nhs-trust"),
        "dan": hub.create_user("dan", ["steward"], org="dfe"),
        "ollie": hub.create_user("ollie", ["researcher"], org="dfe"),  # the DfE's operator
        "admin": hub.create_user("root", ["admin"]),
    }
    env = {"NDL_STATUS_EVERY": "2"}
    hub.start()
    nhs = DatasiteProcess(nhs_root, hub.url, org="nhs-trust", token=tokens["nina"],
                          poll_wait=2, env=env)
    dfe = DatasiteProcess(dfe_root, hub.url, org="dfe", token=tokens["ollie"], poll_wait=2,
                          env=env)
    ok = False
    try:
        nhs.start()
        dfe.start(wait_online=False)
        yield Fed(hub, nhs, dfe, nhs_root, dfe_root, tokens)
        ok = True
    finally:
        stop_all(dfe, nhs, hub, show_logs=not ok)


def _site(fed: Fed, site: str) -> dict[str, Any]:
    sites = httpx.get(f"{fed.hub.url}/api/datasites", timeout=10).json()["datasites"]
    return next((s for s in sites if s["id"] == site), {})


def _ids(fed: Fed) -> set[str]:
    with Client(fed.hub.url) as c:
        return {d["id"] for d in c.search(limit=100)["results"]}


def test_a_pending_datasite_is_refused_until_a_steward_approves_it(fed: Fed) -> None:
    pending = wait_for("the DfE site to join", lambda: _site(fed, "dfe") or None)
    assert pending["state"] == "pending" and pending["online"] is False
    assert "approve-datasite dfe" in pending["standing"]
    page = httpx.get(f"{fed.hub.url}/datasites/dfe", timeout=10).text
    assert "waiting for approval" in page and 'id="approve"' not in page  # signed out
    # Its publication and polls are refused, saying who must approve.
    wait_for("a refusal in the datasite's log", lambda: "waiting for approval" in fed.dfe.log())
    assert "a data steward of 'dfe'" in fed.dfe.log()
    time.sleep(1)
    assert not any(i.startswith("dfe/") for i in _ids(fed))
    # A steward of another organisation may not approve it; the DfE's own steward may.
    with fed.client("nina") as nina, pytest.raises(Exception, match="data steward of 'dfe'"):
        nina.approve_datasite("dfe")
    assert "datasite dfe approved" in ndl(fed, "dan", "steward", "approve-datasite", "dfe")
    fed.dfe.wait_online(90)
    wait_for("the DfE's dataset in the catalogue", lambda: "dfe/pupils" in _ids(fed), 90)
    kinds = [e["kind"] for e in httpx.get(f"{fed.hub.url}/api/register", params={
        "kind": "datasite.approved"}).json()["entries"] if e["subject"] == "dfe"]
    assert kinds == ["datasite.approved"]


def test_each_datasite_reports_a_signed_status(fed: Fed) -> None:
    def reported() -> dict[str, Any] | None:
        r = httpx.get(f"{fed.hub.url}/api/datasites/nhs-trust/status", timeout=10).json()
        return r if r.get("report") else None

    st = wait_for("the NHS site's status", reported)
    rep = st["report"]
    assert rep["self_check"]["ok"] is True and rep["self_check"]["datasets_checked"] == 2
    assert rep["sandbox_mode"] == "strict" and rep["engine"] == "duckdb"
    assert len(rep["policy_hash"]) == 64 and len(rep["config_hash"]) == 64
    assert rep["software_version"] and st["stale"] is False
    page = httpx.get(f"{fed.hub.url}/datasites/nhs-trust", timeout=10).text
    assert rep["policy_hash"] in page and 'id="stale"' not in page
    # Signed by the datasite's own key: anyone can check it.
    assert st["envelope"]["sender"] == "nhs-trust" and st["envelope"]["kind"] == "status"
    assert signature_ok(st["envelope"], st["public_key"])
    assert not signature_ok({**st["envelope"], "body": {**rep, "sandbox_mode": "weaker"}},
                            st["public_key"])
    # Both shown to the federation in the list, and refreshed every few seconds.
    listed = _site(fed, "dfe")
    assert listed["state"] == "approved"
    shown = {s["id"]: s for s in json.loads(ndl(fed, "alice", "compliance", "--json"))}
    assert shown["nhs-trust"]["report"]["self_check"]["ok"] is True
    first = st["reported_at"]
    wait_for("a newer report", lambda: (reported() or {}).get("reported_at", first) > first)


def _project_with_grants(fed: Fed, datasets: list[str]) -> str:
    with fed.client("alice") as alice:
        pid = str(alice.create_project(**PROJECT)["id"])  # type: ignore[arg-type]
        req = alice.request_access(pid, datasets)
        assert {i["state"] for i in req["items"]} == {"granted"}, req
    return pid


def _grants(fed: Fed, pid: str) -> dict[str, dict[str, Any]]:
    with fed.client("alice") as alice:
        return {g["dataset"]: g for g in alice.project(pid)["grants"]}


def test_retiring_a_datasite_withdraws_its_entries_and_ends_its_grants(fed: Fed) -> None:
    pid = _project_with_grants(fed, ["dfe/pupils", "nhs-trust/ae-attendances"])
    with fed.client("nina") as nina, pytest.raises(Exception, match="data steward of 'dfe'"):
        nina.retire_datasite("dfe", "Not mine to retire.")
    with fed.client("admin") as admin:
        done = admin.retire_datasite("dfe", "The department leaves the federation.")
    assert done["withdrawn"] == ["dfe/pupils"] and done["grants_ended"] == 1
    # Gone from search, DCAT and Croissant listings; still found by id, marked withdrawn.
    assert "dfe/pupils" not in _ids(fed) and "nhs-trust/ae-attendances" in _ids(fed)
    dcat = httpx.get(f"{fed.hub.url}/api/catalogue/dcat", timeout=10)
    assert dcat.status_code == 200
    assert "dfe/pupils" not in dcat.text and "ae-attendances" in dcat.text
    entry = httpx.get(f"{fed.hub.url}/api/datasets/dfe/pupils", timeout=10).json()
    assert entry["withdrawn"]["at"] and "leaves the federation" in entry["withdrawn"]["reason"]
    grants = _grants(fed, pid)
    assert grants["dfe/pupils"]["state"] == "revoked"
    assert grants["nhs-trust/ae-attendances"]["state"] == "active"  # the other untouched
    # Its key is refused from now on, and its data stay at home.
    assert _site(fed, "dfe")["state"] == "retired"
    # (Its keys are revoked at the key service, which refuses it before the retired state.)
    wait_for("the retired site refused", lambda: "keys were revoked" in fed.dfe.log()
             or "was retired on" in fed.dfe.log())
    assert (fed.dfe_root / "datasets" / "pupils" / "data.parquet").exists()
    kinds = {e["kind"] for e in httpx.get(f"{fed.hub.url}/api/register", params={
        "limit": 1000}).json()["entries"]}
    assert {"datasite.retired", "dataset.withdrawn", "grant.revoked", "key.revoked"} <= kinds
    with fed.client("alice") as alice, pytest.raises(Conflict, match="withdrawn"):
        alice.request_access(pid, ["dfe/pupils"])


def test_withdraw_then_delete_a_dataset_at_its_datasite(fed: Fed) -> None:
    ds = "nhs-trust/old-stats"
    with Client(fed.hub.url) as anyone:
        assert anyone.query(ds, count_by="region")  # answered while live
    with fed.client("nina") as nina:
        with pytest.raises(Conflict, match="withdraw it first"):
            nina.delete_dataset(ds)
        nina.withdraw_dataset(ds, "Superseded by a newer release.")
        with Client(fed.hub.url) as anyone, pytest.raises(Conflict, match="withdrawn on"):
            anyone.query(ds, count_by="region")
        assert ds not in _ids(fed)
        asked = nina.delete_dataset(ds)
        assert asked["state"] == "requested"

        def deleted() -> dict[str, Any] | None:
            recs = nina.dataset_deletions(ds)["deletions"]
            return recs[0] if recs and recs[0]["state"] == "deleted" else None

        rec = wait_for("the signed deletion record", deleted, 60)
    assert not (fed.nhs_root / "datasets" / "old-stats").exists()
    assert (fed.nhs_root / "datasets" / "ae-attendances" / "data.parquet").exists()
    env = rec["record"]
    assert env["sender"] == "nhs-trust" and env["kind"] == "dataset.deleted"
    files = {f["path"].split("/")[-1] for f in env["body"]["files"]}
    assert {"data.parquet", "metadata.json"} <= files
    nhs_key = _site(fed, "nhs-trust")["public_key"]
    assert signature_ok(env, nhs_key)
    entries = httpx.get(f"{fed.hub.url}/api/register", params={
        "kind": "dataset.deleted"}).json()["entries"]
    assert [(e["subject"], e["actor"]) for e in entries] == [(ds, "datasite:nhs-trust")]
    assert entries[0]["payload"]["files"] == len(env["body"]["files"])
    page = httpx.get(f"{fed.hub.url}/datasets/{ds}", timeout=10).text
    assert 'id="withdrawn"' in page and "deleted at the datasite" in page


def test_closing_a_project_revokes_its_grants(fed: Fed) -> None:
    pid = _project_with_grants(fed, ["nhs-trust/ae-attendances"])
    with fed.client("nina") as nina, pytest.raises(Exception, match="project's lead"):
        nina.close_project(pid, "Not my project.")
    said = ndl(fed, "alice", "project", "close", pid, "--reason", "The study is finished.")
    assert f"project {pid} closed: 1 grants revoked" in said
    with fed.client("alice") as alice:
        with pytest.raises(Conflict, match="closed"):
            alice.request_access(pid, ["nhs-trust/ae-attendances"])
    assert _grants(fed, pid)["nhs-trust/ae-attendances"]["state"] == "revoked"
    entries = httpx.get(f"{fed.hub.url}/api/register", params={
        "kind": "project.closed"}).json()["entries"]
    assert [e["subject"] for e in entries] == [pid]


def test_a_stopped_datasite_status_goes_stale(fed: Fed) -> None:
    assert _site(fed, "nhs-trust")["stale"] is False
    fed.nhs.stop()
    # Reports every 2 s: stale once none came for 2 x 2 s + 5 s.
    wait_for("the NHS status to go stale", lambda: _site(fed, "nhs-trust")["stale"], 30)
    page = httpx.get(f"{fed.hub.url}/datasites/nhs-trust", timeout=10).text
    assert 'id="stale"' in page and "passed" in page and "ndl " in page

"""The access process end to end: projects, one request across organisations, policies,
steward decisions, grants, revocation reaching the datasite, time-to-access, the wishlist."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import text

from ndl.client import Client
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ndl.testing import DatasiteProcess, HubProcess, write_dataset


@dataclass
class Library:
    hub: HubProcess
    alice: str      # accredited researcher
    bob: str        # researcher, not accredited
    nhs: str        # steward, nhs-trust
    dfe: str        # steward, dfe
    dfe2: str       # second steward, dfe
    dual: str       # researcher *and* dfe steward

    def client(self, token: str) -> Client:
        return Client(self.hub.url, token)


PROJECT = dict(title="Children's health and schooling",
               purpose="Understand how emergency care use relates to school attainment.",
               lay_summary="Counts by area to plan children's services.",
               legal_basis="public-task", end_date="2099-01-01")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("access")
    nhs_site, dfe_site = root / "nhs", root / "dfe"
    regions = ["North East"] * 30 + ["London"] * 15
    write_dataset(nhs_site, "ae-attendances", pa.table({"region": regions}), title="A&E")
    write_dataset(dfe_site, "pupils", pa.table({"region": regions}), tier="controlled",
                  title="Pupils")
    write_dataset(dfe_site, "exclusions", pa.table({"region": regions}), tier="controlled",
                  title="Exclusions")
    (dfe_site / "datasets" / "exclusions" / "policy.yaml").write_text(
        "approvals_required: 2\ngrant_days: 30\n")
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "NHS trust", "nhs")
    hub.create_org("dfe", "Department for Education", "education")
    lib = Library(
        hub=hub,
        alice=hub.create_user("alice", ["researcher"], accredited=True),
        bob=hub.create_user("bob", ["researcher"]),
        nhs=hub.create_user("nina", ["steward"], org="nhs-trust"),
        dfe=hub.create_user("dan", ["steward"], org="dfe"),
        dfe2=hub.create_user("dora", ["steward"], org="dfe"),
        dual=hub.create_user("dual", ["researcher", "steward"], org="dfe", accredited=True),
    )
    with hub, DatasiteProcess(nhs_site, hub.url, org="nhs-trust", token=lib.nhs, poll_wait=2), \
            DatasiteProcess(dfe_site, hub.url, org="dfe", token=lib.dfe, poll_wait=2):
        yield lib


def _project(c: Client, **changes: object) -> str:
    return str(c.create_project(**{**PROJECT, **changes})["id"])  # type: ignore[arg-type]


def test_one_request_two_orgs_auto_grant_and_steward_approval_then_revocation(
    lib: Library,
) -> None:
    with lib.client(lib.alice) as alice:
        pid = _project(alice)
        req = alice.request_access(pid, ["nhs-trust/ae-attendances", "dfe/pupils"])
        states = {i["dataset"]: i["state"] for i in req["items"]}
        assert states == {"nhs-trust/ae-attendances": "granted", "dfe/pupils": "pending"}
        # Granted means usable now, in the one form the tier allows: private questions.
        left = alice.budget("nhs-trust/ae-attendances", pid)["budget_remaining"]
        assert left["researcher"] > 0
        # ... and never exact counts, grant or not.
        with pytest.raises(PermissionDenied, match="only for open data"):
            alice.query("nhs-trust/ae-attendances", count_by="region", project=pid)
    with lib.client(lib.dfe) as dan:
        queue = [i for i in dan.steward_queue() if i["project"]["id"] == pid]
        assert [i["dataset"] for i in queue] == ["dfe/pupils"]
        assert dan.decide(queue[0]["id"], "approve", "Sound purpose.")["state"] == "granted"
    with lib.client(lib.alice) as alice:
        project = alice.project(pid)
        assert {g["dataset"]: g["state"] for g in project["grants"]} == {
            "nhs-trust/ae-attendances": "active", "dfe/pupils": "active"}
        # Controlled data: an active grant still gives no exact answers (jobs come later).
        with pytest.raises(PermissionDenied, match="controlled data"):
            alice.query("dfe/pupils", project=pid)
        nhs_grant = next(g["id"] for g in project["grants"]
                         if g["dataset"] == "nhs-trust/ae-attendances")
    with lib.client(lib.nhs) as nina:
        assert nina.revoke_grant(nhs_grant, "Project breached its terms.")["state"] == "revoked"
    with lib.client(lib.alice) as alice, pytest.raises(PermissionDenied, match="no active grant"):
        alice.budget("nhs-trust/ae-attendances", pid)
    # The datasite was told too and keeps its own list of revoked grants.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        import sqlite3
        with sqlite3.connect(lib.hub.data_dir.parent / "nhs" / "state.sqlite") as db:
            if db.execute("SELECT 1 FROM revoked_grants WHERE grant_id = ?",
                          (nhs_grant,)).fetchone():
                break
        time.sleep(0.2)
    else:
        pytest.fail("the revocation never reached the datasite")


def test_unaccredited_researchers_are_routed_to_a_steward(lib: Library) -> None:
    with lib.client(lib.bob) as bob:
        pid = _project(bob)
        item = bob.request_access(pid, ["nhs-trust/ae-attendances"])["items"][0]
    assert item["state"] == "pending" and "accredited" in item["reason"]


def test_two_approvers_policy(lib: Library) -> None:
    with lib.client(lib.alice) as alice:
        pid = _project(alice)
        item = alice.request_access(pid, ["dfe/exclusions"])["items"][0]
    assert item["approvals_required"] == 2
    with lib.client(lib.dfe) as dan:
        assert dan.decide(item["id"], "approve")["state"] == "pending"
        with pytest.raises(Conflict, match="already decided"):
            dan.decide(item["id"], "approve")
    with lib.client(lib.dfe2) as dora:
        assert dora.decide(item["id"], "approve", "Second approval.")["state"] == "granted"
        with pytest.raises(Conflict, match="already granted"):
            dora.decide(item["id"], "reject", "Too late now.")


def test_stewards_cannot_approve_their_own_project_or_other_orgs(lib: Library) -> None:
    with lib.client(lib.dual) as dual:
        pid = _project(dual)
        item = dual.request_access(pid, ["dfe/pupils"])["items"][0]
        with pytest.raises(PermissionDenied, match="member of this project"):
            dual.decide(item["id"], "approve")
    with lib.client(lib.nhs) as nina, pytest.raises(PermissionDenied, match="dfe"):
        nina.decide(item["id"], "approve")
    with lib.client(lib.alice) as alice, pytest.raises(PermissionDenied, match="steward"):
        alice.decide(item["id"], "approve")


def test_rejection_needs_a_reason_and_is_recorded(lib: Library) -> None:
    with lib.client(lib.alice) as alice:
        pid = _project(alice)
        item = alice.request_access(pid, ["dfe/pupils"])["items"][0]
    with lib.client(lib.dfe) as dan:
        with pytest.raises(InvalidInput, match="reason"):
            dan.decide(item["id"], "reject", "")
        assert dan.decide(item["id"], "reject", "No legal gateway for this.")["state"] == \
            "rejected"
    with lib.client(lib.alice) as alice:
        entries = alice.register_entries(limit=1000)["entries"]
    rejected = [e for e in entries if e["kind"] == "request.rejected"]
    assert rejected[-1]["payload"]["reason"] == "No legal gateway for this."
    assert all("alice" not in str(e) for e in entries if e["kind"].startswith("request."))


@pytest.mark.parametrize("body,field", [
    ({"purpose": "too short"}, "purpose"),
    ({"legal_basis": "vibes"}, "legal_basis"),
    ({"end_date": "2001-01-01"}, "end_date"),
    ({"purpose_category": "marketing"}, "purpose_category"),
    ({"members": ["nobody-here"]}, "members"),
])
def test_bad_projects_get_field_errors(lib: Library, body: dict, field: str) -> None:
    with lib.client(lib.alice) as alice, pytest.raises(InvalidInput, match=field):
        alice.create_project(**{**PROJECT, **body})


def test_bad_requests(lib: Library) -> None:
    with lib.client(lib.alice) as alice:
        pid = _project(alice)
        with pytest.raises(NotFound):
            alice.request_access(pid, ["dfe/no-such-data"])
        alice.request_access(pid, ["dfe/pupils"])
        with pytest.raises(Conflict, match="already has a pending"):
            alice.request_access(pid, ["dfe/pupils"])
    with lib.client(lib.bob) as bob, pytest.raises(PermissionDenied, match="not a member"):
        bob.request_access(pid, ["nhs-trust/ae-attendances"])


def test_no_approval_after_the_project_ended(lib: Library) -> None:
    with lib.client(lib.alice) as alice:
        pid = _project(alice)
        item = alice.request_access(pid, ["dfe/pupils"])["items"][0]
    with lib.hub.db.write() as s:
        s.execute(text("UPDATE projects SET end_date = '2000-01-01' WHERE id = :p"), {"p": pid})
    with lib.client(lib.dfe) as dan, pytest.raises(Conflict, match="ended"):
        dan.decide(item["id"], "approve")


def test_racing_approvals_grant_once(lib: Library) -> None:
    with lib.client(lib.alice) as alice:
        pid = _project(alice)
        item = alice.request_access(pid, ["dfe/pupils"])["items"][0]
    results: list[str] = []

    def approve(token: str) -> None:
        with lib.client(token) as c:
            try:
                results.append(c.decide(item["id"], "approve", "ok")["state"])
            except Conflict:
                results.append("conflict")

    threads = [threading.Thread(target=approve, args=(t,)) for t in (lib.dfe, lib.dfe2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "granted"]
    with lib.client(lib.alice) as alice:
        grants = [g for g in alice.project(pid)["grants"] if g["dataset"] == "dfe/pupils"]
    assert len(grants) == 1


def test_time_to_access_is_measured_by_tier_and_org(lib: Library) -> None:
    with lib.client(lib.alice) as alice:
        m = alice.time_to_access()
    assert m["by_tier"]["safeguarded"]["decided"] >= 1
    assert m["by_org"]["dfe"]["decided"] >= 1
    assert m["overall"]["median_hours"] is not None and m["overall"]["median_hours"] >= 0


def test_wishlist_votes_comments_and_publication_link(lib: Library, tmp_path: Path) -> None:
    with lib.client(lib.bob) as bob:
        wish = bob._request("POST", "/api/wishes", json={
            "title": "School absence by ward", "description": "Absence rates per ward and term.",
            "orgs": ["dfe"], "tier_needed": "open"})
        for _ in range(2):  # voting twice still counts once
            votes = bob._request("POST", f"/api/wishes/{wish['id']}/vote", json={"up": True})
        assert votes["votes"] == 1
        bob._request("POST", f"/api/wishes/{wish['id']}/comments", json={"text": "Yes please"})
        with pytest.raises(PermissionDenied):
            bob._request("POST", f"/api/wishes/{wish['id']}/state",
                         json={"state": "planned", "dataset": "dfe/absence"})
    with lib.client(lib.alice) as alice:
        alice._request("POST", f"/api/wishes/{wish['id']}/vote", json={"up": True})
    with lib.client(lib.dfe) as dan:
        planned = dan._request("POST", f"/api/wishes/{wish['id']}/state",
                               json={"state": "planned", "dataset": "dfe/absence"})
        assert planned["state"] == "planned"
    # The DfE publishes the dataset the wish named; the wish links to it by itself.
    dfe_site = lib.hub.data_dir.parent / "dfe"
    write_dataset(dfe_site, "absence", pa.table({"ward": ["A", "B"]}), tier="open",
                  title="School absence")
    deadline = time.monotonic() + 15
    with Client(lib.hub.url) as anon:
        while time.monotonic() < deadline:
            got = anon._request("GET", f"/api/wishes/{wish['id']}")
            if got["state"] == "published":
                break
            time.sleep(0.2)
        dash = anon._request("GET", "/api/orgs/dfe/dashboard")
    assert got["state"] == "published" and got["dataset"] == "dfe/absence"
    assert got["votes"] == 2 and got["comments"][0]["text"] == "Yes please"
    assert dash["wishes"] >= 1 and dash["wish_votes"] >= 2 and dash["requests"] >= 1
    assert any(d["id"] == "dfe/pupils" and d["grants_active"] >= 1 for d in dash["per_dataset"])

"""A small real library for the authorisation matrix: one hub, two organisations' datasites,
a user for every role, and the projects, requests, grants and wish the matrix acts on.

Everything is made through the real API (``ndl.client.Client``) except the users and
organisations, which an operator makes with ``ndl`` admin commands before anyone can sign in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from ndl.client import Client
from ndl.testing import DatasiteProcess, HubProcess, write_dataset

ROLES = ("anonymous", "researcher", "other_researcher", "steward_A", "steward_B",
         "output_checker", "admin")
PASSWORD = "correct horse battery staple"
ORG_A, ORG_B = "org-a", "org-b"
OPEN, SAFE, CTRL, CTRL_PENDING = (f"{ORG_A}/open-data", f"{ORG_A}/safe-data",
                                  f"{ORG_A}/ctrl-data", f"{ORG_A}/ctrl-second")
CTRL_B = f"{ORG_B}/ctrl-b"
PROJECT = dict(purpose="Measure how emergency care use varies by region, for planning.",
               lay_summary="Counts of visits by area, to plan services.",
               legal_basis="public-task", end_date="2099-12-31")


@dataclass
class Library:
    """The running library and the ids the matrix fills its paths and bodies with."""

    hub: HubProcess
    tokens: dict[str, str | None]
    ids: dict[str, Any] = field(default_factory=dict)

    def token(self, role: str) -> str | None:
        return self.tokens[role]

    def client(self, role: str) -> Client:
        return Client(self.hub.url, self.tokens[role])

    def id(self, name: str, role: str) -> Any:
        """``name`` for ``role``: a role-specific value (``name@role``) if there is one."""
        return self.ids.get(f"{name}@{role}", self.ids[name])


def _sites(root: Path) -> tuple[Path, Path]:
    n = 50
    # Enough columns and values that a mock can avoid every real row (the datasite refuses
    # to mock a table whose every possible row is a real one).
    regions = pa.table({"region": ["North East"] * 30 + ["London"] * 20,
                        "age": [18 + (i * 7) % 70 for i in range(n)],
                        "acuity": [i % 5 + 1 for i in range(n)]})
    site_a, site_b = root / ORG_A, root / ORG_B
    write_dataset(site_a, "open-data", regions, tier="open", title="Open regions")
    write_dataset(site_a, "safe-data", regions, tier="safeguarded", title="Safeguarded regions")
    write_dataset(site_a, "ctrl-data", regions, tier="controlled", title="Controlled regions")
    write_dataset(site_a, "ctrl-second", regions, tier="controlled", title="Second controlled")
    write_dataset(site_b, "ctrl-b", regions, tier="controlled", title="Org B controlled")
    return site_a, site_b


def _users(hub: HubProcess) -> dict[str, str | None]:
    hub.create_org(ORG_A, "Organisation A", "nhs")
    hub.create_org(ORG_B, "Organisation B", "education")
    tokens: dict[str, str | None] = {"anonymous": None}
    tokens["researcher"] = hub.create_user("researcher", ["researcher"], accredited=True,
                                           password=PASSWORD)
    tokens["other_researcher"] = hub.create_user("other_researcher", ["researcher"],
                                                 accredited=True)
    tokens["steward_A"] = hub.create_user("steward_a", ["steward"], org=ORG_A)
    tokens["steward_B"] = hub.create_user("steward_b", ["steward"], org=ORG_B)
    tokens["output_checker"] = hub.create_user("checker", ["output_checker"])
    tokens["admin"] = hub.create_user("admin", ["admin"])
    hub.create_user("accreditee", ["researcher"])  # the accreditation endpoint's subject
    return tokens


def _project(c: Client, title: str) -> str:
    return str(c.create_project(title=title, **PROJECT)["id"])


def _granted(c: Client, project: str, dataset: str) -> str:
    """Request a safeguarded dataset for an accredited researcher: granted at once."""
    item = c.request_access(project, [dataset])["items"][0]
    assert item["state"] == "granted", item
    grants = c.project(project)["grants"]
    return str(next(g["id"] for g in grants if g["dataset"] == dataset))


def _wait_for_mock(lib: Library, dataset: str, timeout: float = 30.0) -> None:
    """Datasites send mocks of non-open datasets a moment after publishing them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{lib.hub.url}/api/datasets/{dataset}/mock", params={"limit": 1},
                      headers={"Authorization": f"Bearer {lib.token('researcher')}"})
        if r.status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"no mock of {dataset} reached the hub within {timeout:g} s")


def _set_up_access(lib: Library) -> None:
    ids = lib.ids
    with lib.client("researcher") as alice:
        ids["P"] = _project(alice, "Project P")
        items = {i["dataset"]: i for i in alice.request_access(ids["P"], [SAFE, CTRL])["items"]}
        assert items[SAFE]["state"] == "granted" and items[CTRL]["state"] == "pending", items
        ids["ctrl_item"] = items[CTRL]["id"]
    with lib.client("steward_A") as steward:
        assert steward.decide(ids["ctrl_item"], "approve", "Sound purpose.")["state"] == \
            "granted"
    with lib.client("researcher") as alice:
        # A request naming only organisation A, left pending for the decision endpoint.
        req = alice.request_access(ids["P"], [CTRL_PENDING])
        ids["request"], ids["item"] = req["id"], req["items"][0]["id"]
        # Grants no other row relies on, one for each role that may revoke.
        ids["grant@steward_A"] = _granted(alice, _project(alice, "Revoked by a steward"), SAFE)
        ids["grant@admin"] = _granted(alice, _project(alice, "Revoked by an admin"), SAFE)
        # The grant every other role tries to revoke: nobody may, so it stays active.
        ids["grant_project"] = _project(alice, "Never revoked")
        ids["grant"] = _granted(alice, ids["grant_project"], SAFE)
    with lib.client("other_researcher") as bob:
        ids["Q"] = _project(bob, "Project Q")
        wish = bob._request("POST", "/api/wishes", json={
            "title": "Regions by month", "description": "Monthly counts by region.",
            "orgs": [ORG_A], "tier_needed": "safeguarded"})
        ids["wish"] = wish["id"]
        # An incident Bob raised about organisation A's dataset: he, A's stewards and admins
        # see it; the others are told nothing of it.
        ids["incident"] = bob.raise_incident(
            title="A table left unprotected", description="Seen on a shared drive.",
            severity="high", datasets=[SAFE])["id"]
    with lib.client("researcher") as alice:
        for name in ("coordination", "coordination_to_cancel"):
            made = alice._request("POST", "/api/coordinations", json={
                "purpose": "Link two datasets", "parties": [f"datasite:{ORG_A}"],
                "approvals_needed": 1, "params_sha256": "0" * 64})
            ids[name] = made["id"]
        # References on project P: one for each role that may revoke one, one nobody may.
        for name in ("reference@researcher", "reference@admin", "reference"):
            ids[name] = alice.add_project_reference(
                ids["P"], kind="dpia", issuer="Trust DPO", reference=name,
                expires_on=f"{date.today().year + 2}-01-01")["id"]
    # Evidence about the accreditation endpoint's subject, for the revocation endpoint.
    with lib.client("admin") as admin:
        ids["evidence"] = admin.add_evidence(
            "accreditee", kind="safe-researcher-training", issuer="ONS",
            reference="SRT-1", expires_on=f"{date.today().year + 2}-01-01")["id"]


JOB_MANIFEST = f"""
name = "regions"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["{CTRL}"]
context = "Visits by region, for planning."

[[outputs]]
name = "by_region"
kind = "table"
description = "Rows by region"

[[outputs]]
name = "chart"
kind = "figure"
description = "A bar chart"
"""
JOB_CODE = f"""import matplotlib.pyplot as plt
from ndl import job
job.table("by_region", job.dataset("{CTRL}", as_="pandas"), by=["region"])
fig = plt.figure()
plt.bar([1, 2], [3, 4])
job.figure("chart", fig)
"""
JOB_FILES = {"ndl-job.toml": JOB_MANIFEST, "analysis.py": JOB_CODE}


def _job(lib: Library) -> str:
    with lib.client("researcher") as alice:
        made = alice._request("POST", "/api/jobs", json={"project": lib.ids["P"],
                                                          "files": JOB_FILES})
    return str(made["id"])


def _ran(lib: Library, job_id: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    with lib.client("researcher") as alice:
        while time.monotonic() < deadline:
            view = alice._request("GET", f"/api/jobs/{job_id}")
            if view["state"] in ("awaiting_output_check", "failed"):
                break
            time.sleep(0.2)
    assert view.get("state") == "awaiting_output_check", view


def _set_up_jobs(lib: Library) -> None:
    """Jobs in each state the matrix needs: waiting for review (to read, to reject, to
    cancel), waiting for output checking, and released."""
    ids = lib.ids
    for name in ("job", "job_to_review", "job_to_cancel", "job_to_cancel@researcher",
                 "job_to_cancel@admin",
                 "checked_job", "released_job"):
        ids[name] = _job(lib)
    with lib.client("steward_A") as steward:
        for name in ("checked_job", "released_job"):
            steward._request("POST", f"/api/jobs/{ids[name]}/review",
                             json={"decision": "approve", "reasons": "aggregates"})
    for name in ("checked_job", "released_job"):
        _ran(lib, ids[name])
    with lib.client("output_checker") as checker:
        checker._request("POST", f"/api/jobs/{ids['released_job']}/output-check",
                         json={"decision": "approve", "reasons": ""})
        ids["job_code"] = checker._request("GET", f"/api/jobs/{ids['released_job']}"
                                           )["code_sha256"]
    with lib.client("researcher") as alice:
        ids["job_code_unpublished"] = alice._request(
            "POST", "/api/jobs", json={"project": ids["P"], "files": {
                **JOB_FILES, "analysis.py": JOB_CODE + "# another version\n"}})["code_sha256"]


def _finished_export(lib: Library, role: str | None) -> str:
    """An export of the open dataset by ``role`` (None: nobody signed in), waited for, so the
    rows that read or follow it see a final item (an event stream then ends)."""
    with Client(lib.hub.url, lib.token(role) if role else None) as c:
        view = c.submit_work("export", OPEN, {"format": "csv", "limit": 5})
        done = c.wait_work(view.id, timeout=120, progress=False)
    assert done.state == "succeeded", done
    return view.id


def _spare_tokens(lib: Library) -> None:
    """A token of each signed-in role's own for the revoke-a-token row to revoke."""
    for role, token in lib.tokens.items():
        if token is None:
            continue
        r = httpx.post(f"{lib.hub.url}/api/auth/tokens", json={"name": "spare"},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        lib.ids[f"spare_token@{role}"] = r.json()["id"]
    lib.ids["spare_token"] = lib.ids["spare_token@researcher"]


@contextmanager
def running_library(root: Path) -> Iterator[Library]:
    """Start the hub and both datasites, set up the access records, and yield the library."""
    site_a, site_b = _sites(root)
    hub = HubProcess(root / "hub", extra_args=["--query-timeout", "15"])
    lib = Library(hub=hub, tokens=_users(hub))
    with hub:
        a = DatasiteProcess(site_a, hub.url, org=ORG_A, token=lib.token("steward_A"),
                            poll_wait=2).start(wait_online=False)
        b = DatasiteProcess(site_b, hub.url, org=ORG_B, token=lib.token("steward_B"),
                            poll_wait=2).start(wait_online=False)
        try:
            a.wait_online()
            b.wait_online()
            _wait_for_catalogue(lib, [OPEN, SAFE, CTRL, CTRL_PENDING, CTRL_B])
            _set_up_access(lib)
            lib.ids["work"] = _finished_export(lib, "researcher")
            lib.ids["anon_work"] = _finished_export(lib, None)
            _spare_tokens(lib)
            _wait_for_mock(lib, SAFE)
            _set_up_jobs(lib)
            yield lib
        finally:
            a.stop()
            b.stop()


def _wait_for_catalogue(lib: Library, datasets: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    missing = list(datasets)
    while time.monotonic() < deadline:
        missing = [d for d in missing
                   if httpx.get(f"{lib.hub.url}/api/datasets/{d}").status_code != 200]
        if not missing:
            return
        time.sleep(0.2)
    raise AssertionError(f"never published: {missing}")


__all__ = ["CTRL", "CTRL_B", "CTRL_PENDING", "OPEN", "ORG_A", "ORG_B", "PASSWORD", "ROLES",
           "SAFE", "Library", "running_library"]

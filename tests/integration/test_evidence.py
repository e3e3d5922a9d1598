"""Evidence on people and references on projects, through a real hub and datasite.

A dataset's policy requires accredited-researcher evidence of every member; another requires
a DPIA reference of the project. Without them a request is refused with the fix; once
recorded it proceeds; once they lapse the granted data can no longer be used, and the
refusal says which to renew. Evidence about to lapse is shown for renewal (the API, `ndl
evidence list`, the account page) and the hub's housekeeping records a reminder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import select, update

from ndl.access import evidence
from ndl.access.models import Evidence, User
from ndl.access.project_models import ProjectReference
from ndl.access.service import Operator
from ndl.client import Client
from ndl.core.errors import PermissionDenied
from ndl.testing import DatasiteProcess, HubProcess, write_dataset

TODAY = date.today()
ACCREDITED = "nhs-trust/ae-attendances"
NEEDS_DPIA = "nhs-trust/admissions"
CONTROLLED = "nhs-trust/pupils"
JOB_TOML = f"""
name = "regions"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["{CONTROLLED}"]
context = "Rows by region, for planning."

[[outputs]]
name = "by_region"
kind = "table"
description = "Rows by region"
"""
JOB_CODE = f"""from ndl import job
job.table("by_region", job.dataset("{CONTROLLED}", as_="pandas"), by=["region"])
"""
PROJECT = dict(title="Emergency care use",
               purpose="Understand how emergency care use varies by region and season.",
               lay_summary="Counts by region.", legal_basis="public-task",
               end_date=(TODAY + timedelta(days=700)).isoformat())


@dataclass
class Net:
    hub: HubProcess
    admin: str
    rex: str        # researcher, no evidence at first
    remi: str       # researcher whose accreditation lapses in 10 days
    jo: str         # researcher who submits a job
    sam: str        # data steward of nhs-trust
    root: Path

    def client(self, token: str) -> Client:
        return Client(self.hub.url, token)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("evidence")
    site = root / "nhs"
    regions = pa.table({"region": ["North East"] * 30 + ["London"] * 15})
    write_dataset(site, "ae-attendances", regions, title="A&E")
    write_dataset(site, "admissions", regions, title="Admissions")
    write_dataset(site, "pupils", regions, tier="controlled", title="Pupils")
    (site / "datasets" / "pupils" / "policy.yaml").write_text(
        "auto_approve: {}\nrequires:\n  evidence: [accredited-researcher]\n")
    (site / "datasets" / "ae-attendances" / "policy.yaml").write_text(
        "auto_approve: {}\nrequires:\n  evidence: [accredited-researcher]\n")
    (site / "datasets" / "admissions" / "policy.yaml").write_text(
        "auto_approve: {}\nrequires:\n  references: [dpia]\n")
    hub = HubProcess(root / "hub")
    hub.create_org("nhs-trust", "NHS trust", "nhs")
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    net = Net(hub, admin=hub.create_user("ada", ["admin"]),
              rex=hub.create_user("rex", ["researcher"]),
              remi=hub.create_user("remi", ["researcher"]),
              jo=hub.create_user("jo", ["researcher"]), sam=steward, root=root)
    # Before the hub starts, so its first housekeeping round finds it due.
    with hub.db.write() as s:
        evidence.add_evidence(s, hub.key, Operator("test"), "remi", evidence.NewEvidence(
            kind="accredited-researcher", issuer="UK Statistics Authority",
            reference="DEA-REMI", expires_on=TODAY + timedelta(days=10)))
    with hub, DatasiteProcess(site, hub.url, org="nhs-trust", token=steward, poll_wait=2):
        yield net


def _lapse(net: Net, model: type[Evidence] | type[ProjectReference], row_id: int) -> None:
    with net.hub.db.write() as s:
        s.execute(update(model).where(model.id == row_id)
                  .values(expires_on=TODAY - timedelta(days=1)))


def test_accreditation_is_checked_at_request_and_again_at_use(net: Net) -> None:
    with net.client(net.rex) as rex:
        pid = rex.create_project(**PROJECT)["id"]  # type: ignore[arg-type]
        with pytest.raises(PermissionDenied) as refused:
            rex.request_access(pid, [ACCREDITED])
        assert "rex holds no valid accredited-researcher evidence" in str(refused.value)
        assert "ndl admin evidence add rex --kind accredited-researcher" in str(refused.value)
        assert rex.project(pid)["requests"] == []  # the refusal recorded nothing
    with net.client(net.admin) as ada:
        made = ada.add_evidence("rex", kind="accredited-researcher",
                                issuer="UK Statistics Authority", reference="DEA-0042",
                                expires_on=(TODAY + timedelta(days=365)).isoformat())
        assert made["state"] == "valid" and made["recorded_by"] == "admin"
    with net.client(net.rex) as rex:
        item = rex.request_access(pid, [ACCREDITED])["items"][0]
        assert item["state"] == "granted"
        assert rex.budget(ACCREDITED, pid)["budget_remaining"]["researcher"] > 0
        # The accreditation lapses: the grant is still active, but using it is refused.
        _lapse(net, Evidence, made["id"])
        with pytest.raises(PermissionDenied) as refused:
            rex.budget(ACCREDITED, pid)
        assert f"rex's accredited-researcher evidence expired on " \
               f"{TODAY - timedelta(days=1)}: renew it" in str(refused.value)
        assert {g["state"] for g in rex.project(pid)["grants"]} == {"active"}
        with pytest.raises(PermissionDenied, match="expired on"):
            rex.private_query(ACCREDITED, project=pid, sql="SELECT COUNT(*) AS n FROM data",
                              rho=0.1)
    # Renewed evidence restores use.
    with net.client(net.admin) as ada:
        ada.add_evidence("rex", kind="accredited-researcher", issuer="UK Statistics Authority",
                         reference="DEA-0042-R", expires_on=(TODAY + timedelta(days=400)
                                                             ).isoformat())
    with net.client(net.rex) as rex:
        assert rex.budget(ACCREDITED, pid)["budget_remaining"]["researcher"] > 0


def test_a_required_project_reference_is_checked_at_request_and_at_use(net: Net) -> None:
    with net.client(net.remi) as remi:
        pid = remi.create_project(**PROJECT)["id"]  # type: ignore[arg-type]
        with pytest.raises(PermissionDenied) as refused:
            remi.request_access(pid, [NEEDS_DPIA])
        assert f"project {pid} holds no valid dpia reference" in str(refused.value)
        assert f"ndl project add-reference {pid} --kind dpia" in str(refused.value)
        ref = remi.add_project_reference(pid, kind="dpia", issuer="Trust DPO",
                                         reference="DPIA-2026-17",
                                         expires_on=(TODAY + timedelta(days=90)).isoformat())
        assert remi.request_access(pid, [NEEDS_DPIA])["items"][0]["state"] == "granted"
        assert remi.budget(NEEDS_DPIA, pid)["budget_remaining"]["project"] > 0
        _lapse(net, ProjectReference, ref["id"])
        with pytest.raises(PermissionDenied) as refused:
            remi.budget(NEEDS_DPIA, pid)
        assert f"project {pid}'s dpia 'DPIA-2026-17' expired on" in str(refused.value)
        assert "renew it" in str(refused.value)
        assert [r["state"] for r in remi.project_references(pid)["references"]] == ["expired"]
    # Another researcher (not the lead) may not record the project's references.
    with net.client(net.rex) as rex, pytest.raises(PermissionDenied, match="only the lead"):
        rex.add_project_reference(pid, kind="dpia", issuer="Rex", reference="Y",
                                  expires_on=(TODAY + timedelta(days=9)).isoformat())


def test_a_job_is_refused_at_submission_and_at_approval_once_evidence_lapses(net: Net) -> None:
    bundle = net.root / "job"
    bundle.mkdir()
    (bundle / "ndl-job.toml").write_text(JOB_TOML)
    (bundle / "analysis.py").write_text(JOB_CODE)
    with net.client(net.admin) as ada:
        ada.add_evidence("jo", kind="accredited-researcher", issuer="UK Statistics Authority",
                         reference="DEA-JOBS", expires_on=(TODAY + timedelta(days=300)
                                                           ).isoformat())
    with net.client(net.jo) as jo:
        pid = jo.create_project(**PROJECT)["id"]  # type: ignore[arg-type]
        assert jo.request_access(pid, [CONTROLLED])["items"][0]["state"] == "granted"
        job = jo.submit_job(bundle, project=pid)
        assert job.state == "awaiting_review"
    with net.hub.db.write() as s:  # every accreditation jo holds lapses
        s.execute(update(Evidence).where(Evidence.user_id == select(User.id).where(
            User.username == "jo").scalar_subquery()).values(
            expires_on=TODAY - timedelta(days=1)))
    with net.client(net.sam) as sam, pytest.raises(PermissionDenied, match="expired on"):
        sam.review_job(job.id, "approve", "Code reads only what it says.")
    with net.client(net.jo) as jo:
        assert jo.job(job.id).state == "awaiting_review"  # the approval changed nothing
        with pytest.raises(PermissionDenied, match="jo's accredited-researcher evidence"):
            jo.submit_job(bundle, project=pid)


def test_evidence_about_to_lapse_is_shown_and_reminded(net: Net) -> None:
    deadline = time.monotonic() + 30
    with net.client(net.remi) as remi:
        while True:
            rows = remi.evidence()["evidence"]
            if rows[0]["reminded"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert [(r["reference"], r["renew"], r["days_left"], r["reminded"]) for r in rows] == [
        ("DEA-REMI", True, 10, True)]
    with net.hub.db.read() as s:
        remi_id = s.scalar(select(User.id).where(User.username == "remi"))
    entries = httpx.get(f"{net.hub.url}/api/register", params={"kind": "evidence.reminder"}).json()
    reminders = [e for e in entries["entries"] if e["kind"] == "evidence.reminder"]
    assert [e["subject"] for e in reminders] == [f"user#{remi_id}"]
    assert "DEA-REMI" not in str(reminders)  # the register has the kind and day, no reference
    cli = subprocess.run(
        [sys.executable, "-m", "ndl", "evidence", "list"], capture_output=True, text=True,
        timeout=120, env={**os.environ, "NDL_HUB": net.hub.url, "NDL_TOKEN": net.remi,
                          "COLUMNS": "200"}, check=False)
    assert cli.returncode == 0, cli.stderr
    assert "RENEW: lapses in 10 days" in cli.stdout
    assert f"Reminder: remi's accredited-researcher evidence lapses on " \
           f"{TODAY + timedelta(days=10)}" in cli.stdout
    with net.client(net.remi) as remi:
        pid = remi.create_project(**PROJECT)["id"]  # type: ignore[arg-type]
        remi.add_project_reference(pid, kind="ethics-approval", issuer="HRA REC",
                                   reference="REC-55",
                                   expires_on=(TODAY + timedelta(days=5)).isoformat())
    page = httpx.get(f"{net.hub.url}/account",
                     headers={"Authorization": f"Bearer {net.remi}"})
    assert page.status_code == 200
    assert 'id="renewal-due"' in page.text and "DEA-REMI" in page.text
    assert "Data steward" not in page.text and "Researcher" in page.text
    assert 'id="references-due"' in page.text and "REC-55" in page.text


def test_the_federation_baseline_applies_to_every_dataset_of_a_tier(net: Net) -> None:
    """Last in the module: it changes what every safeguarded dataset requires."""
    with net.client(net.rex) as rex:
        pid = next(p["id"] for p in rex.my_projects()["projects"]
                   if any(g["dataset"] == ACCREDITED and g["state"] == "active"
                          for g in rex.project(p["id"])["grants"]))
        assert rex.budget(ACCREDITED, pid)["budget_remaining"]["researcher"] > 0
    admin = httpx.Client(base_url=net.hub.url,
                         headers={"Authorization": f"Bearer {net.admin}"}, timeout=30)
    with admin:
        r = admin.put("/api/evidence/baseline", json={
            "tier": "safeguarded", "evidence": ["information-governance-training"]})
        assert r.status_code == 200, r.text
        with net.client(net.rex) as rex:
            assert rex.evidence_baseline()["baseline"][0] == {
                "tier": "safeguarded", "evidence": ["information-governance-training"],
                "references": []}
            with pytest.raises(PermissionDenied,
                               match="no valid information-governance-training evidence"):
                rex.budget(ACCREDITED, pid)
        admin.put("/api/evidence/baseline", json={"tier": "safeguarded"})
    with net.client(net.rex) as rex:
        assert rex.budget(ACCREDITED, pid)["budget_remaining"]["researcher"] > 0

"""Controlled jobs end to end, with a real hub and a real datasite running jobs in bubblewrap.

alice submits an analysis of controlled data; the organisation's steward reviews the code (with
a diff against what was approved before) and approves; the datasite runs it in the sandbox,
recomputes the tables from evidence, suppresses a small cell and rounds the rest; an output
checker (never the author) releases it; alice downloads the ZIP. Every step is in the register
with the code's hash, and the code is then public. The same code later runs at once (approved
code, by policy); a dataset whose policy wants two blind reviews gets them; a failing job
tells alice where, never what value it failed on.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pytest

from ndl.jobs import service
from ndl.testing import DatasiteProcess, HubProcess, write_dataset

ORG = "dfe"
CTRL, CTRL2 = f"{ORG}/pupils", f"{ORG}/pupils-two-reviews"
PROJECT = dict(title="Attainment gap", purpose="Free school meals by SEN status, to target "
               "support for disadvantaged pupils.", lay_summary="Counts by group.",
               legal_basis="public-task", end_date="2099-12-31", purpose_category="research")
MANIFEST = """
name = "fsm-by-sen"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["{dataset}"]
context = "Pupils by SEN status and free school meals, for the attainment report."

[[outputs]]
name = "fsm_by_sen"
kind = "table"
description = "Pupils by SEN status and FSM eligibility"
"""
CODE = """
from ndl import job

pupils = job.dataset("{dataset}", as_="pandas")
job.table("fsm_by_sen", pupils, by=["sen_status", "fsm"])
"""


def bundle(dataset: str = CTRL, code: str = CODE) -> dict[str, str]:
    return {"ndl-job.toml": MANIFEST.format(dataset=dataset),
            "analysis.py": code.format(dataset=dataset)}


def _pupils() -> pa.Table:
    # EHC plan & FSM has 4 pupils: under the threshold of 10, so it must be suppressed (and,
    # as the only small cell in its lines, another cell with it).
    groups = {("None", False): 120, ("None", True): 61, ("SEN support", False): 33,
              ("SEN support", True): 27, ("EHC plan", False): 13, ("EHC plan", True): 4}
    sen, fsm, score = [], [], []
    for (s, f), n in groups.items():
        sen += [s] * n
        fsm += [f] * n
        score += [100 + (i % 17) for i in range(n)]
    return pa.table({"sen_status": sen, "fsm": fsm, "score": score})


@dataclass
class Lib:
    hub: HubProcess
    tokens: dict[str, str]
    project: str

    def call(self, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.hub.url}{path}", timeout=60,
                             headers={"Authorization": f"Bearer {self.tokens[who]}"}, **kw)

    def ok(self, who: str, method: str, path: str, **kw: Any) -> Any:
        r = self.call(who, method, path, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json()

    def wait(self, who: str, job_id: str, states: set[str], timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        view = None
        while time.monotonic() < deadline:
            view = self.ok(who, "GET", f"/api/jobs/{job_id}")
            if view["state"] in states:
                return view
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} never reached {states}: {view}")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, sandbox_strict: object) -> Iterator[Lib]:
    root = tmp_path_factory.mktemp("jobs")
    site = root / ORG
    write_dataset(site, "pupils", _pupils(), tier="controlled", title="Pupils")
    two = write_dataset(site, "pupils-two-reviews", _pupils(), tier="controlled",
                        title="Pupils (two reviews)")
    (two / "policy.yaml").write_text("jobs:\n  output_reviews: 2\n", "utf-8")
    hub = HubProcess(root / "hub")
    with hub:
        hub.create_org(ORG, "Department for Education", "education")
        hub.create_org("nhs", "NHS England", "nhs")
        tokens = {
            "alice": hub.create_user("alice", ["researcher"], accredited=True),
            "bob": hub.create_user("bob", ["researcher"], accredited=True),
            "steward": hub.create_user("steward", ["steward"], org=ORG),
            "other_steward": hub.create_user("nhs-steward", ["steward"], org="nhs"),
            "checker": hub.create_user("checker", ["output_checker"]),
            "checker2": hub.create_user("checker2", ["output_checker"]),
        }
        site_proc = DatasiteProcess(site, hub.url, org=ORG, token=tokens["steward"],
                                    poll_wait=2).start()
        try:
            lib = Lib(hub, tokens, "")
            _wait_catalogue(lib, [CTRL, CTRL2])
            lib.project = lib.ok("alice", "POST", "/api/projects", json=PROJECT)["id"]
            req = lib.ok("alice", "POST", f"/api/projects/{lib.project}/requests",
                         json={"datasets": [CTRL, CTRL2]})
            for item in req["items"]:
                lib.ok("steward", "POST", f"/api/requests/items/{item['id']}/decision",
                       json={"decision": "approve", "reason": "Sound purpose."})
            yield lib
        finally:
            site_proc.stop()


def _wait_catalogue(lib: Lib, ids: list[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(httpx.get(f"{lib.hub.url}/api/datasets/{d}").status_code == 200 for d in ids):
            return
        time.sleep(0.2)
    raise AssertionError("datasets never reached the catalogue")


def _register(lib: Lib, subject: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{lib.hub.url}/api/register", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [e for e in r.json()["entries"] if e["subject"] == subject]


def test_submit_review_run_check_release_download(lib: Lib) -> None:
    job = lib.ok("alice", "POST", "/api/jobs", json={"project": lib.project,
                                                     "files": bundle()})
    assert job["state"] == "awaiting_review"
    sha = job["code_sha256"]
    # Before approval the code is not public, and alice cannot read outputs that don't exist.
    assert httpx.get(f"{lib.hub.url}/api/jobs/code/{sha}").status_code == 404
    queue = lib.ok("steward", "GET", "/api/jobs/review-queue")["jobs"]
    assert [j["id"] for j in queue] == [job["id"]]
    diff = lib.ok("steward", "GET", f"/api/jobs/{job['id']}/diff")
    assert diff["against"] is None and "+job.table(\"fsm_by_sen\"" in diff["diff"]
    # The author is no steward; a steward of another organisation may not review it.
    assert lib.call("alice", "POST", f"/api/jobs/{job['id']}/review",
                    json={"decision": "approve"}).status_code in (403, 404)
    assert lib.call("other_steward", "POST", f"/api/jobs/{job['id']}/review",
                    json={"decision": "approve"}).status_code in (403, 404)
    lib.ok("steward", "POST", f"/api/jobs/{job['id']}/review",
           json={"decision": "approve", "reasons": "Aggregates only."})
    done = lib.wait("alice", job["id"], {"awaiting_output_check", "failed"})
    assert done["state"] == "awaiting_output_check", done
    report = done["report"]
    assert report["sandbox"] == "bubblewrap" and report["code_sha256"] == sha
    (table,) = report["outputs"]
    assert table["status"] == "checked" and table["suppressed"] >= 2
    rules = {f["rule"] for f in table["findings"]}
    assert {"threshold", "secondary"} <= rules
    # Cell labels are values the job chose: alice sees none before release; checkers do.
    assert {tuple(f["cell"]) for f in table["findings"]} == {(service.HIDDEN_CELL,)}
    as_checker = lib.ok("checker", "GET", f"/api/jobs/{job['id']}")["report"]["outputs"][0]
    assert ["EHC plan", "True"] in [f["cell"] for f in as_checker["findings"]]
    # Not released yet: alice may not download; the author is never the checker.
    assert lib.call("alice", "GET", f"/api/jobs/{job['id']}/outputs").status_code == 422
    assert [j["id"] for j in lib.ok("checker", "GET", "/api/jobs/output-queue")["jobs"]] == \
        [job["id"]]
    files = lib.ok("checker", "GET", f"/api/jobs/{job['id']}/outputs/files")["files"]
    assert {f["name"] for f in files} == {"fsm_by_sen.csv", "log.txt", "report.json"}
    released = lib.ok("checker", "POST", f"/api/jobs/{job['id']}/output-check",
                      json={"decision": "approve", "reasons": ""})
    assert released["state"] == "released"
    r = lib.call("alice", "GET", f"/api/jobs/{job['id']}/outputs")
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        rows = z.read("fsm_by_sen.csv").decode().splitlines()
        assert json.loads(z.read("report.json"))["code_sha256"] == sha
    cells = {tuple(row.split(",")[:2]): row.split(",")[2] for row in rows[1:]}
    assert cells[("EHC plan", "True")] == "[suppressed]"
    assert sum(v == "[suppressed]" for v in cells.values()) >= 2
    assert all(v == "[suppressed]" or int(v) % 5 == 0 for v in cells.values())
    assert cells[("None", "False")] == "120"
    # The code is public now, and every step is in the register with its hash.
    assert httpx.get(f"{lib.hub.url}/api/jobs/code/{sha}").json()["files"] == bundle()
    kinds = [e["kind"] for e in _register(lib, job["id"])]
    for kind in ("job.submitted", "job.reviewed", "job.approved", "job.ran",
                 "job.output_checked", "job.released"):
        assert kind in kinds, kinds
    assert all(e["payload"].get("code_sha256") == sha for e in _register(lib, job["id"])
               if e["kind"].startswith("job."))


def test_approved_code_runs_at_once_and_other_projects_cannot_see(lib: Lib) -> None:
    job = lib.ok("alice", "POST", "/api/jobs", json={"project": lib.project,
                                                     "files": bundle()})
    # The code's hash was approved for this project before: the policy runs it at once.
    assert job["state"] in ("approved", "running") and job["auto_approved"] is True
    assert lib.call("bob", "GET", f"/api/jobs/{job['id']}").status_code == 404
    done = lib.wait("alice", job["id"], {"awaiting_output_check", "failed"})
    assert done["state"] == "awaiting_output_check"


def test_two_blind_reviews(lib: Lib) -> None:
    job = lib.ok("alice", "POST", "/api/jobs", json={"project": lib.project,
                                                     "files": bundle(CTRL2)})
    lib.ok("steward", "POST", f"/api/jobs/{job['id']}/review",
           json={"decision": "approve", "reasons": ""})
    lib.wait("alice", job["id"], {"awaiting_output_check"})
    first = lib.ok("checker", "POST", f"/api/jobs/{job['id']}/output-check",
                   json={"decision": "approve", "reasons": ""})
    assert first["state"] == "awaiting_output_check"
    # The second checker does not see the first's decision before giving their own.
    seen = lib.ok("checker2", "GET", f"/api/jobs/{job['id']}")
    assert seen["output_decisions"] == []
    again = lib.call("checker", "POST", f"/api/jobs/{job['id']}/output-check",
                     json={"decision": "approve", "reasons": ""})
    assert again.status_code == 409
    second = lib.ok("checker2", "POST", f"/api/jobs/{job['id']}/output-check",
                    json={"decision": "approve", "reasons": ""})
    assert second["state"] == "released" and len(second["output_decisions"]) == 2


def test_a_failing_job_says_where_never_what(lib: Lib) -> None:
    code = CODE + "\nraise KeyError(str(pupils['score'].iloc[0]) + '-SECRET')\n"
    job = lib.ok("alice", "POST", "/api/jobs", json={"project": lib.project,
                                                     "files": bundle(code=code)})
    lib.ok("steward", "POST", f"/api/jobs/{job['id']}/review",
           json={"decision": "approve", "reasons": ""})
    done = lib.wait("alice", job["id"], {"failed"})
    assert "KeyError" in done["error"] and "analysis.py line" in done["error"]
    # The line of code is alice's own; the value it failed on (100, read from the data) is not.
    assert "100-SECRET" not in json.dumps(done)
    logs = lib.ok("alice", "GET", f"/api/jobs/{job['id']}/logs")["lines"]
    assert "100-SECRET" not in json.dumps(logs) and any("KeyError" in line for line in logs)


def test_jobs_cannot_be_queued_as_plain_work(lib: Lib) -> None:
    r = lib.call("alice", "POST", "/api/work", json={
        "kind": "job", "dataset": CTRL, "params": {"files": bundle()}})
    assert r.status_code == 422 and "ndl submit" in r.json()["error"]["message"]


def test_the_run_is_recorded_when_it_ends_without_anyone_looking(lib: Lib) -> None:
    code = CODE + "\n# recorded on finish\n"
    job = lib.ok("alice", "POST", "/api/jobs", json={"project": lib.project,
                                                     "files": bundle(code=code)})
    lib.ok("steward", "POST", f"/api/jobs/{job['id']}/review",
           json={"decision": "approve", "reasons": ""})
    # Only the public register is read (never the job, which would move it on itself), for
    # less time than the hub's housekeeping period: the datasite's finish moves the job on.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not [
            e for e in _register(lib, job["id"]) if e["kind"] == "job.ran"]:
        time.sleep(0.3)
    ran = [e for e in _register(lib, job["id"]) if e["kind"] == "job.ran"]
    assert ran and ran[0]["payload"]["outcome"] == "awaiting_output_check", ran

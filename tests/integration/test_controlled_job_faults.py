"""Controlled jobs when things go wrong: a datasite killed mid-job, a job that loops for ever,
one that eats memory. Real hub and datasite processes; jobs in bubblewrap.

A kill -9 mid-job re-runs the job once the datasite is back, and it is recorded and released
once; a looping job is stopped at the datasite's wall-time limit while another job runs
beside it; a memory blow-up kills only the job.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from ndl.testing import DatasiteProcess, HubProcess, write_dataset

ORG, DATA = "dfe", "dfe/pupils"
PROJECT = dict(title="Faults", purpose="Free school meals by SEN status, to target support "
               "for disadvantaged pupils.", lay_summary="Counts by group.",
               legal_basis="public-task", end_date="2099-12-31", purpose_category="research")
MANIFEST = f"""
name = "fault"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["{DATA}"]
context = "A test of faults."

[[outputs]]
name = "counts"
kind = "table"
description = "Rows by SEN status"
"""
TABLE = f"""
from ndl import job
job.table("counts", job.dataset("{DATA}", as_="pandas"), by=["sen_status"])
"""


@dataclass
class Lib:
    hub: HubProcess
    site_dir: Path
    site: DatasiteProcess
    tokens: dict[str, str]
    project: str = ""

    def ok(self, who: str, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.hub.url}{path}", timeout=60,
                          headers={"Authorization": f"Bearer {self.tokens[who]}"}, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json()

    def approved_job(self, code: str) -> str:
        job = self.ok("alice", "POST", "/api/jobs", json={
            "project": self.project, "files": {"ndl-job.toml": MANIFEST, "analysis.py": code}})
        if job["state"] == "awaiting_review":
            self.ok("steward", "POST", f"/api/jobs/{job['id']}/review",
                    json={"decision": "approve", "reasons": "test"})
        return str(job["id"])

    def wait(self, job_id: str, pred: Any, timeout: float = 120) -> Any:
        deadline, view = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            view = self.ok("alice", "GET", f"/api/jobs/{job_id}")
            if pred(view):
                return view
            time.sleep(0.2)
        raise AssertionError(f"job {job_id}: condition never met: {view}")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, sandbox_strict: object) -> Iterator[Lib]:
    root = tmp_path_factory.mktemp("faults")
    site_dir = root / ORG
    n = 200
    write_dataset(site_dir, "pupils", pa.table({
        "sen_status": ["None", "SEN support", "EHC plan", "None"] * (n // 4),
        "score": list(range(n))}), tier="controlled")
    # Short limits so a looping or greedy job is stopped quickly.
    (site_dir / "datasite.json").write_text(json.dumps({"job_limits": {
        "wall_seconds": 8, "memory_bytes": 768 * 1024**2}}))
    hub = HubProcess(root / "hub")
    with hub:
        hub.create_org(ORG, "Department for Education", "education")
        tokens = {"alice": hub.create_user("alice", ["researcher"], accredited=True),
                  "steward": hub.create_user("steward", ["steward"], org=ORG)}
        site = DatasiteProcess(site_dir, hub.url, org=ORG, token=tokens["steward"],
                               poll_wait=2).start()
        lib = Lib(hub, site_dir, site, tokens)
        try:
            deadline = time.monotonic() + 60
            while httpx.get(f"{hub.url}/api/datasets/{DATA}").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            lib.project = lib.ok("alice", "POST", "/api/projects", json=PROJECT)["id"]
            req = lib.ok("alice", "POST", f"/api/projects/{lib.project}/requests",
                         json={"datasets": [DATA]})
            lib.ok("steward", "POST", f"/api/requests/items/{req['items'][0]['id']}/decision",
                   json={"decision": "approve", "reason": "ok"})
            yield lib
        finally:
            lib.site.stop()


def _register(lib: Lib, job_id: str, kind: str) -> list[dict[str, Any]]:
    entries = httpx.get(f"{lib.hub.url}/api/register", params={"limit": 1000}).json()["entries"]
    return [e for e in entries if e["subject"] == job_id and e["kind"] == kind]


def test_kill_9_mid_job_reruns_once_and_records_once(lib: Lib) -> None:
    job_id = lib.approved_job("import time\ntime.sleep(3)\n" + TABLE)
    lib.wait(job_id, lambda v: v["state"] == "running")
    assert lib.site.proc is not None
    lib.site.proc.send_signal(signal.SIGKILL)
    lib.site.proc.wait()
    lib.site = DatasiteProcess(lib.site_dir, lib.hub.url, org=ORG,
                               token=lib.tokens["steward"], poll_wait=2).start()
    done = lib.wait(job_id, lambda v: v["state"] in ("awaiting_output_check", "failed"),
                    timeout=180)
    assert done["state"] == "awaiting_output_check", done
    assert len(_register(lib, job_id, "job.ran")) == 1
    with sqlite3.connect(lib.site_dir / "releases.sqlite") as db:
        (n,) = db.execute("SELECT COUNT(*) FROM sdc_release WHERE job_id = ?",
                          (job_id,)).fetchone()
    assert n == 1


def test_a_looping_job_is_stopped_while_another_runs(lib: Lib) -> None:
    loop = lib.approved_job("while True:\n    pass\n" + TABLE)
    lib.wait(loop, lambda v: v["state"] == "running")
    other = lib.approved_job(TABLE + "# another\n")
    done = lib.wait(other, lambda v: v["state"] in ("awaiting_output_check", "failed"))
    assert done["state"] == "awaiting_output_check", done
    assert lib.ok("alice", "GET", f"/api/jobs/{loop}")["state"] == "running"
    stopped = lib.wait(loop, lambda v: v["state"] == "failed", timeout=60)
    assert "time limit" in stopped["error"], stopped
    assert lib.site.proc is not None and lib.site.proc.poll() is None


def test_a_memory_blow_up_kills_only_the_job(lib: Lib) -> None:
    greedy = lib.approved_job("blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n"
                              + TABLE)
    stopped = lib.wait(greedy, lambda v: v["state"] == "failed", timeout=90)
    assert "memory" in stopped["error"] or "MemoryError" in stopped["error"], stopped
    assert lib.site.proc is not None and lib.site.proc.poll() is None
    after = lib.approved_job(TABLE + "# after the blow-up\n")
    assert lib.wait(after, lambda v: v["state"] in ("awaiting_output_check", "failed")
                    )["state"] == "awaiting_output_check"

"""Without bubblewrap a datasite refuses controlled jobs, unless its operator chose the weaker
mode: then jobs run, and the job's report, its pages and the register all say so.

Two real datasites of one hub: one started strict on a PATH with no ``bwrap`` (as on a
machine without bubblewrap), one started with ``--sandbox weaker``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pytest

from ndl.testing import DatasiteProcess, HubProcess, write_dataset

PROJECT = dict(title="Modes", purpose="Free school meals by SEN status, to target support "
               "for disadvantaged pupils.", lay_summary="Counts by group.",
               legal_basis="public-task", end_date="2099-12-31", purpose_category="research")


def _bundle(dataset: str) -> dict[str, str]:
    return {"ndl-job.toml": f"""
name = "modes"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["{dataset}"]
context = "Sandbox modes."

[[outputs]]
name = "counts"
kind = "table"
description = "Rows by group"
""", "analysis.py": f"""from ndl import job
job.table("counts", job.dataset("{dataset}", as_="pandas"), by=["group"])
"""}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, dict[str, str],
                                                                      str]]:
    root = tmp_path_factory.mktemp("modes")
    table = pa.table({"group": ["a", "b"] * 30, "x": list(range(60))})
    for org in ("strict-site", "weak-site"):
        write_dataset(root / org, "data", table, tier="controlled")
    no_bwrap = root / "bin"
    no_bwrap.mkdir()  # a PATH holding no bwrap: this datasite cannot find bubblewrap
    hub = HubProcess(root / "hub")
    with hub:
        tokens = {"alice": hub.create_user("alice", ["researcher"], accredited=True)}
        for org in ("strict-site", "weak-site"):
            hub.create_org(org, org, "nhs")
            tokens[org] = hub.create_user(f"steward-{org}", ["steward"], org=org)
        sites = [
            DatasiteProcess(root / "strict-site", hub.url, org="strict-site",
                            token=tokens["strict-site"], poll_wait=2,
                            env={"PATH": str(no_bwrap)}).start(),
            DatasiteProcess(root / "weak-site", hub.url, org="weak-site",
                            token=tokens["weak-site"], poll_wait=2, sandbox="weaker").start(),
        ]
        try:
            ids = ["strict-site/data", "weak-site/data"]
            deadline = time.monotonic() + 60
            while any(httpx.get(f"{hub.url}/api/datasets/{d}").status_code != 200 for d in ids):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            h = {"Authorization": f"Bearer {tokens['alice']}"}
            project = httpx.post(f"{hub.url}/api/projects", json=PROJECT, headers=h).json()["id"]
            req = httpx.post(f"{hub.url}/api/projects/{project}/requests",
                             json={"datasets": ids}, headers=h).json()
            for item in req["items"]:
                org = item["dataset"].split("/")[0]
                r = httpx.post(f"{hub.url}/api/requests/items/{item['id']}/decision",
                               json={"decision": "approve", "reason": "ok"},
                               headers={"Authorization": f"Bearer {tokens[org]}"})
                assert r.status_code == 200, r.text
            yield hub, tokens, project
        finally:
            for s in sites:
                s.stop()


def _run(hub: HubProcess, tokens: dict[str, str], project: str, org: str) -> dict[str, Any]:
    h = {"Authorization": f"Bearer {tokens['alice']}"}
    job = httpx.post(f"{hub.url}/api/jobs", json={"project": project,
                                                  "files": _bundle(f"{org}/data")},
                     headers=h).json()
    r = httpx.post(f"{hub.url}/api/jobs/{job['id']}/review",
                   json={"decision": "approve", "reasons": "ok"},
                   headers={"Authorization": f"Bearer {tokens[org]}"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        view: dict[str, Any] = httpx.get(f"{hub.url}/api/jobs/{job['id']}", headers=h).json()
        if view["state"] in ("awaiting_output_check", "failed"):
            return view
        time.sleep(0.3)
    raise AssertionError(f"job never finished: {view}")


def test_no_bubblewrap_refuses_the_job_with_the_fix(
        hub: tuple[HubProcess, dict[str, str], str]) -> None:
    view = _run(*hub, "strict-site")
    assert view["state"] == "failed"
    assert "bubblewrap" in view["error"] and "--sandbox weaker" in view["error"], view
    assert view["report"] is None  # nothing ran, nothing to check


def test_the_weaker_mode_runs_and_says_so_everywhere(
        hub: tuple[HubProcess, dict[str, str], str]) -> None:
    server, tokens, _ = hub
    view = _run(*hub, "weak-site")
    assert view["state"] == "awaiting_output_check", view
    assert view["sandbox"] == "weaker" and view["report"]["sandbox"] == "weaker"
    assert any("WEAKER" in line for line in view["report"]["safe_log"])
    entries = httpx.get(f"{server.url}/api/register", params={"limit": 1000}).json()["entries"]
    ran = [e for e in entries if e["subject"] == view["id"] and e["kind"] == "job.ran"]
    assert ran and ran[0]["payload"]["sandbox"] == "weaker"
    page = httpx.get(f"{server.url}/jobs/{view['id']}",
                     headers={"Authorization": f"Bearer {tokens['alice']}"})
    assert page.status_code == 200 and "WITHOUT the bubblewrap sandbox" in page.text

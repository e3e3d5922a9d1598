"""The demo's controlled job, end to end and for real.

alice submits the example bundle (free school meals by SEN status, on ``dfe/pupils``); the
DfE's steward reviews the code and approves it; the DfE datasite runs it in its sandbox; the
disclosure checks suppress the small cells; oscar, an output checker, releases the outputs;
alice downloads them. Re-runs of the demo reuse the job.
"""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ndl.core.errors import SandboxUnavailable, UpstreamTimeout
from ndl.jobs import example


@dataclass(frozen=True)
class DemoJob:
    id: str
    state: str
    suppressed: int
    cells: int
    sandbox: str
    outputs: Path | None
    error: str = ""


def sandbox_mode() -> tuple[str, str]:
    """The demo datasites' sandbox: strict when bubblewrap works here; otherwise the weaker
    mode, chosen out loud (the tour and every job page say so), with the fix."""
    from ndl.jobs.sandbox import open_sandbox
    try:
        open_sandbox("strict")
    except SandboxUnavailable as exc:
        return "weaker", (f"controlled jobs run WITHOUT the bubblewrap sandbox in this demo "
                          f"({exc.message})")
    return "strict", ""


def run_demo_job(hub_url: str, root: Path, project: str, password: str,
                 timeout: float = 180.0) -> DemoJob:
    from ndl.client import Client

    marker = root / "hub" / "demo-job"
    out = root / "job-outputs"
    if marker.exists():
        with Client(hub_url, allow_http_loopback=True) as alice:
            alice.login("alice", f"{password}-alice")
            return _summary(alice._request("GET", f"/api/jobs/{marker.read_text().strip()}"),
                            out)
    with Client(hub_url, allow_http_loopback=True) as alice:
        alice.login("alice", f"{password}-alice")
        job = alice._request("POST", "/api/jobs", json={"project": project,
                                                         "files": example.files()})
    marker.write_text(job["id"])
    with Client(hub_url, allow_http_loopback=True) as steward:
        steward.login("steward-dfe", f"{password}-steward-dfe")
        steward._request("POST", f"/api/jobs/{job['id']}/review", json={
            "decision": "approve", "reasons": "Counts through ndl.job.table only; no row "
                                              "leaves."})
    with Client(hub_url, allow_http_loopback=True) as alice:
        alice.login("alice", f"{password}-alice")
        view = _wait(alice, job["id"], timeout)
    if view["state"] != "awaiting_output_check":
        return _summary(view, out)
    with Client(hub_url, allow_http_loopback=True) as oscar:
        oscar.login("oscar", f"{password}-oscar")
        oscar._request("POST", f"/api/jobs/{job['id']}/output-check", json={
            "decision": "approve", "reasons": "Small cells suppressed; counts rounded."})
    with Client(hub_url, allow_http_loopback=True) as alice:
        alice.login("alice", f"{password}-alice")
        r = alice._http.get(f"/api/jobs/{job['id']}/outputs",
                            headers={"Authorization": f"Bearer {alice.token}"})
        r.raise_for_status()
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            for name in z.namelist():  # flat names written by the runner; checked anyway
                if "/" not in name and not name.startswith("."):
                    (out / name).write_bytes(z.read(name))
        return _summary(alice._request("GET", f"/api/jobs/{job['id']}"), out)


def _wait(client: Any, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view: dict[str, Any] = client._request("GET", f"/api/jobs/{job_id}")
        if view["state"] in ("awaiting_output_check", "failed", "cancelled"):
            return view
        time.sleep(0.3)
    raise UpstreamTimeout(f"the demo's job {job_id} did not finish within {timeout:g} s")


def _summary(view: dict[str, Any], out: Path) -> DemoJob:
    report = view.get("report") or {}
    outputs = report.get("outputs") or []
    return DemoJob(id=view["id"], state=view["state"],
                   suppressed=sum(int(o.get("suppressed") or 0) for o in outputs),
                   cells=sum(int(o.get("cells") or 0) for o in outputs),
                   sandbox=str(report.get("sandbox") or "?"),
                   outputs=out if view["state"] == "released" else None,
                   error=str(view.get("error") or ""))

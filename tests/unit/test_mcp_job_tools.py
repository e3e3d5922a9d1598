"""The job MCP tools against an in-process hub, each caller with their own token.

The MCP server runs in-process (``mcp.Client(server)``); its library reaches the hub's app
through ``httpx.ASGITransport``, as ``/mcp`` inside the hub does. Job rows are written as the
hub holds them after a run (see ``test_web_job_pages``); ``submit_job`` goes through the real
submission path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.types import CallToolResult
from sqlalchemy import select
from test_web_job_pages import OUTPATIENT, make_job, seeded  # noqa: F401 - the module's seed
from test_web_pages import hub_app

from ndl.access import accounts
from ndl.access.models import User
from ndl.access.project_models import Project
from ndl.jobs import checking, service
from ndl.jobs.models import Job
from ndl.mcp import HubLibrary, create_server

T = TypeVar("T")
BASE = "http://hub.test"
MANIFEST = f'''name = "waits"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["{OUTPATIENT}"]
context = "Waits by clinic, for the annual report."

[[outputs]]
name = "waits"
kind = "table"
description = "Appointments by clinic"
'''
ANALYSIS = '''from ndl import job

rows = job.dataset("nhs-trust/outpatient-appointments", as_="pandas")
job.table("waits", rows, by=["diagnosis_code"])
'''


@pytest.fixture
def app(seeded: Path, tmp_path: Path) -> Iterator[FastAPI]:  # noqa: F811
    app = hub_app(seeded, tmp_path / "hub")
    yield app
    app.state.hub.db.dispose()


def token(app: FastAPI, name: str) -> str:
    with app.state.hub.db.write() as s:
        user = s.scalars(select(User).where(User.username == name)).one()
        return accounts.issue_token(s, user, name="mcp-test")


def project_id(app: FastAPI) -> str:
    with app.state.hub.db.read() as s:
        return str(s.scalars(select(Project.id)).one())


def call(app: FastAPI, who: str | None, tool: str, args: dict[str, Any]) -> CallToolResult:
    async def body(client: Client) -> CallToolResult:
        return await client.call_tool(tool, args)

    return _with_client(app, token(app, who) if who else None, body)


def _with_client(app: FastAPI, tok: str | None,
                 body: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        transport = httpx.ASGITransport(app=app)
        async with HubLibrary(BASE, tok, transport=transport) as lib, \
                Client(create_server(lib)) as client:
            return await body(client)

    return anyio.run(main)


def ok(res: CallToolResult) -> dict[str, Any]:
    assert not res.is_error, res.content
    assert res.structured_content is not None
    return res.structured_content


def error_text(res: CallToolResult) -> str:
    assert res.is_error, res.structured_content
    block = res.content[0]
    assert block.type == "text"
    return block.text


def test_the_job_tools_are_listed_and_only_submit_writes(app: FastAPI) -> None:
    async def tools(client: Client) -> Any:
        return (await client.list_tools()).tools

    listed = {t.name: t for t in _with_client(app, None, tools)}
    assert {"submit_job", "job_status", "list_jobs", "read_job_outputs", "job_code"} <= set(
        listed)
    assert listed["submit_job"].annotations is not None
    assert listed["submit_job"].annotations.read_only_hint is False
    for name in ("job_status", "list_jobs", "read_job_outputs", "job_code"):
        t = listed[name]
        assert t.annotations is not None and t.annotations.read_only_hint is True, name
        assert t.output_schema and t.output_schema.get("type") == "object", name


def test_submit_job_on_granted_data_and_refusals(app: FastAPI) -> None:
    files = {"ndl-job.toml": MANIFEST, "analysis.py": ANALYSIS}
    got = ok(call(app, "alice", "submit_job", {"project": project_id(app), "files": files}))
    assert got["state"] == "awaiting_review" and got["job_id"].startswith("job-")
    assert got["page_url"] == f"{BASE}/jobs/{got['job_id']}"
    with app.state.hub.db.read() as s:
        job = s.get(Job, got["job_id"])
        assert job is not None and job.requester == "alice"
    # Bob is on no project with a grant; a steward is no researcher; a bad bundle says why.
    assert "project" in error_text(call(app, "bob", "submit_job",
                                        {"project": project_id(app), "files": files}))
    assert "researcher" in error_text(call(app, "nina", "submit_job",
                                           {"project": project_id(app), "files": files}))
    assert "ndl-job.toml" in error_text(call(app, "alice", "submit_job", {
        "project": project_id(app), "files": {"analysis.py": ANALYSIS}}))
    assert error_text(call(app, None, "submit_job", {"project": project_id(app),
                                                     "files": files}))


def test_job_status_and_list_are_the_projects(app: FastAPI) -> None:
    job = make_job(app, state="awaiting_output_check", outputs=True, sandbox="weaker")
    got = ok(call(app, "alice", "job_status", {"job_id": job.id}))
    assert got["state"] == "awaiting_output_check" and got["code_sha256"] == job.code_sha256
    assert got["warning"] and "WITHOUT the bubblewrap sandbox" in got["warning"]
    waits = next(o for o in got["outputs"] if o["name"] == "waits")
    assert waits["findings"][0]["rule"] == "threshold"
    # Cell labels are values the job chose: hidden from the researcher until release.
    assert waits["findings"][0]["cell"] == service.HIDDEN_CELL
    assert [j["job_id"] for j in ok(call(app, "alice", "list_jobs", {}))["jobs"]] == [job.id]
    assert ok(call(app, "bob", "list_jobs", {}))["jobs"] == []
    assert "no job" in error_text(call(app, "bob", "job_status", {"job_id": job.id}))
    assert "not valid" in error_text(call(app, "alice", "job_status", {"job_id": "../api/me"}))


def test_outputs_are_read_only_once_released(app: FastAPI) -> None:
    job = make_job(app, state="awaiting_output_check", outputs=True)
    # Neither the author nor a checker reads unreleased outputs through the tool.
    assert "not released" in error_text(call(app, "alice", "read_job_outputs",
                                             {"job_id": job.id}))
    assert "not released" in error_text(call(app, "oscar", "read_job_outputs",
                                             {"job_id": job.id}))
    with app.state.hub.db.read() as s:
        oscar = accounts.principal_of(s.scalars(select(User).where(User.username == "oscar"))
                                      .one())
    checking.decide(app.state.hub, oscar, job.id, decision="approve", comments="")
    got = ok(call(app, "alice", "read_job_outputs", {"job_id": job.id}))
    texts = {f["name"]: f["text"] for f in got["files"]}
    assert texts["waits.csv"].startswith("clinic,count") and got["figures"] == ["chart.png"]
    assert "no job" in error_text(call(app, "bob", "read_job_outputs", {"job_id": job.id}))


def test_job_code_is_public_once_approved(app: FastAPI) -> None:
    private = make_job(app)
    public = make_job(app, files={"analysis.py": "print('approved')\n"}, published=True)
    assert "no code" in error_text(call(app, None, "job_code", {"sha256": private.code_sha256}))
    assert ok(call(app, "alice", "job_code", {"sha256": private.code_sha256}))["files"]
    got = ok(call(app, None, "job_code", {"sha256": public.code_sha256}))
    assert got["published"] is True and got["files"] == {"analysis.py": "print('approved')\n"}

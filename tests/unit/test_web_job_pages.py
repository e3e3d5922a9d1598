"""The controlled-tier job pages in-process: my jobs, one job, its code, the steward's review
and the output checker's page, through the forms a browser would post.

No job runs here: each test writes the job's row (and, for outputs, a ZIP blob) the way the
hub would have after the datasite ran it, then drives the pages.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import zipfile
from collections.abc import Callable
from datetime import date, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from test_web_access_pages import token_for
from test_web_pages import PASSWORD, seed_catalogue

from ndl.access import accounts, projects
from ndl.access import requests as access
from ndl.access.accounts import Principal
from ndl.access.models import User
from ndl.access.project_models import Project, RequestItem
from ndl.core.db import utcnow
from ndl.federation.blob_models import Blob
from ndl.federation.work_models import WorkItem
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings, HubState
from ndl.jobs.models import Job, JobCode, OutputReview

OUTPATIENT = "nhs-trust/outpatient-appointments"  # controlled, held by nhs-trust
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
CODE = {"ndl-job.toml": 'name = "waits"\n',
        "analysis.py": "import ndl.job\n# counts by clinic\nprint('hello')\n"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalogue, the people who touch a job, and alice's project with a grant on the
    controlled outpatient data (hashed once per module)."""
    folder = tmp_path_factory.mktemp("jobs-hub")
    template = create_app(HubSettings(db_url=str(folder / "hub.db"), data_dir=folder))
    seed_jobs_hub(template.state.hub)
    template.state.hub.db.dispose()
    return folder


def seed_jobs_hub(state: HubState) -> None:
    """Seed a hub's database (SQLite or PostgreSQL) as ``seeded`` holds it."""
    seed_catalogue(state.db, state.key)
    with state.db.write() as s:
        for name, roles, org in (
            ("alice", ["researcher"], None), ("bob", ["researcher"], None),
            ("nina", ["steward"], "nhs-trust"), ("dan", ["steward"], "dfe"),
            ("oscar", ["output_checker"], None), ("olga", ["output_checker"], None),
        ):
            user = accounts.create_user(s, name, roles=roles, org_id=org, password=PASSWORD)
            user.accredited = True
    with state.db.write() as s:
        alice, nina = (_principal(s, n) for n in ("alice", "nina"))
        project = projects.create_project(
            s, state.key, alice, title="Outpatient waits",
            purpose="How long people wait for outpatient appointments, by clinic.",
            purpose_category="research", lay_summary="Waits by clinic.",
            legal_basis="public-task", end_date=date.today() + timedelta(days=365))
        req = access.submit_request(s, state.key, alice, project.id, [OUTPATIENT])
        item = s.scalars(select(RequestItem).where(RequestItem.request_id == req.id)).one()
        if item.state == "pending":
            access.decide_item(s, state.key, nina, item.id, approve=True, reason="fine")
        assert project.id


Login = Callable[[str], Any]


def _principal(s: Any, name: str) -> Principal:
    user = s.scalars(select(User).where(User.username == name)).one()
    return Principal(user.id, user.username, frozenset(user.role_names), user.org_id)


def _project(app: FastAPI) -> str:
    with app.state.hub.db.read() as s:
        return str(s.scalars(select(Project.id)).one())


def report(job_id: str, code_sha: str, *, sandbox: str = "bubblewrap",
           detail: str = "fewer than 10 people") -> dict[str, Any]:
    return {"job_id": job_id, "code_sha256": code_sha, "environment": "python-data",
            "sandbox": sandbox, "policy": {"threshold": 10}, "datasets": [OUTPATIENT],
            "outputs": [{"name": "waits", "kind": "table", "file": "waits.csv",
                         "made_by": "helper", "status": "review",
                         "description": "Waits by clinic", "cells": 4, "suppressed": 1,
                         "findings": [{"cell": ["clinic=eye", "count"], "rule": "threshold",
                                       "action": "suppressed", "detail": detail}]},
                        {"name": "chart", "kind": "figure", "file": "chart.png",
                         "made_by": "job", "status": "review", "description": "A chart"}],
            "safe_log": ["ran analysis.py in 0.4 s"]}


def outputs_zip(rep: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("waits.csv", "clinic,count\neye,\nbone,<b>42</b>\n")
        z.writestr("chart.png", PNG)
        z.writestr("notes.txt", "<script>alert('notes')</script>")
        z.writestr("report.json", json.dumps(rep))
    return buf.getvalue()


def make_job(app: FastAPI, *, state: str = "awaiting_review", files: dict[str, str] | None = None,
             sandbox: str = "bubblewrap", outputs: bool = False, reviews: int = 1,
             detail: str = "fewer than 10 people", published: bool = False) -> Job:
    """A job row as the hub holds it in ``state`` (with a report and outputs if asked)."""
    hub = app.state.hub
    files = files or CODE
    code_sha = sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    job_id = f"job-{secrets.token_hex(8)}"
    rep = report(job_id, code_sha, sandbox=sandbox, detail=detail)
    with hub.db.write() as s:
        if s.get(JobCode, code_sha) is None:
            s.add(JobCode(sha256=code_sha, files=files,
                          published_at=utcnow() if published else None))
            s.flush()  # the job's row names the code: keep the insert order
        job = Job(id=job_id, project_id=_project(app), requester="alice", name="waits",
                  language="python", environment="python-data", datasets=[OUTPATIENT],
                  org_id="nhs-trust", datasite_id="nhs-trust", code_sha256=code_sha,
                  manifest={"context": "For the <i>annual</i> report.",
                            "outputs": [{"name": "waits", "kind": "table",
                                         "description": "Waits by clinic"}]},
                  state=state, output_reviews=reviews,
                  report=rep if outputs else None)
        if outputs:
            data = outputs_zip(rep)
            digest = sha256(data).hexdigest()
            hub.blobs.store.put(digest, [data])
            s.add(Blob(sha256=digest, size=len(data), kind="result",
                       media_type="application/zip", owner="datasite:nhs-trust",
                       expires_at=utcnow() + timedelta(days=1)))
            job.result_sha256, job.result_size = digest, len(data)
        s.add(job)
        s.flush()
        s.expunge(job)
    return job


def job_state(app: FastAPI, job_id: str) -> str:
    with app.state.hub.db.read() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.state


def post(client: Any, page: str, action: str, data: dict[str, str]) -> Any:
    token = token_for(client.get(page).text, action)
    return client.post(action, data={**data, "csrf_token": token}, follow_redirects=False)


# --- who sees what ---------------------------------------------------------------------------

def test_my_jobs_lists_the_projects_jobs_and_only_theirs(app: FastAPI, login: Login) -> None:
    job = make_job(app)
    page = login("alice").get("/jobs")
    assert page.status_code == 200 and f'id="job-{job.id}"' in page.text
    assert "waiting for a data steward to review the code" in page.text.lower()
    assert OUTPATIENT in page.text
    assert job.id not in login("bob").get("/jobs").text
    anon = login("").get("/jobs", follow_redirects=False)
    assert anon.status_code == 303 and anon.headers["location"].startswith("/sign-in")


def test_a_job_page_is_its_projects_and_stewards_and_not_found_for_others(
        app: FastAPI, login: Login) -> None:
    job = make_job(app)
    for name in ("alice", "nina"):
        page = login(name).get(f"/jobs/{job.id}")
        assert page.status_code == 200, name
        assert f'href="/jobs/code/{job.code_sha256}"' in page.text
        assert "python-data" in page.text
    for name in ("bob", "dan", "oscar"):  # outsider, another org's steward, checker (no outputs)
        assert login(name).get(f"/jobs/{job.id}").status_code == 404, name
    assert login("alice").get("/jobs/job-nope").status_code == 404


def test_the_author_sees_cancel_and_a_member_cannot_be_forged_into_it(
        app: FastAPI, login: Login) -> None:
    job = make_job(app)
    alice = login("alice")
    page = alice.get(f"/jobs/{job.id}").text
    assert 'id="cancel-job"' in page
    assert 'id="cancel-job"' not in login("nina").get(f"/jobs/{job.id}").text
    # Without the session's token the post is refused and nothing changes.
    bad = alice.post(f"/jobs/{job.id}/cancel", data={"csrf_token": "x"},
                     follow_redirects=False)
    assert bad.status_code == 403 and job_state(app, job.id) == "awaiting_review"
    done = post(alice, f"/jobs/{job.id}", f"/jobs/{job.id}/cancel", {})
    assert done.status_code == 303 and job_state(app, job.id) == "cancelled"
    assert 'id="cancel-job"' not in alice.get(f"/jobs/{job.id}").text


def test_a_running_job_refreshes_itself_and_shows_progress(app: FastAPI, login: Login) -> None:
    job = make_job(app, state="approved")
    page = login("alice").get(f"/jobs/{job.id}").text
    assert 'http-equiv="refresh"' in page and 'id="job-progress"' in page
    done = make_job(app, state="failed")
    assert 'http-equiv="refresh"' not in login("alice").get(f"/jobs/{done.id}").text


def test_the_weaker_sandbox_is_announced_on_every_page_of_the_job(
        app: FastAPI, login: Login) -> None:
    weak = make_job(app, state="awaiting_output_check", outputs=True, sandbox="weaker")
    strict = make_job(app, state="awaiting_output_check", outputs=True)
    for who, path in (("alice", ""), ("oscar", "/check")):
        page = login(who).get(f"/jobs/{weak.id}{path}").text
        assert 'id="weaker-sandbox"' in page and "WITHOUT the bubblewrap sandbox" in page
        assert 'id="weaker-sandbox"' not in login(who).get(f"/jobs/{strict.id}{path}").text


# --- the steward's review --------------------------------------------------------------------

def test_code_to_review_is_for_the_datas_stewards(app: FastAPI, login: Login) -> None:
    job = make_job(app)
    assert f'id="queued-{job.id}"' in login("nina").get("/code-to-review").text
    assert f'id="queued-{job.id}"' not in login("dan").get("/code-to-review").text
    assert login("alice").get("/code-to-review").status_code == 403
    assert login("nina").get(f"/jobs/{job.id}/review").status_code == 200
    assert login("alice").get(f"/jobs/{job.id}/review").status_code == 403  # the author
    assert login("dan").get(f"/jobs/{job.id}/review").status_code == 404    # another org
    assert login("bob").get(f"/jobs/{job.id}/review").status_code == 404


def test_review_shows_code_diff_context_and_declared_outputs(app: FastAPI, login: Login) -> None:
    job = make_job(app)
    page = login("nina").get(f"/jobs/{job.id}/review").text
    assert "# counts by clinic" in page and 'id="diff-new"' in page
    assert "+import ndl.job" in page  # every line is new: nothing approved before
    assert "For the &lt;i&gt;annual&lt;/i&gt; report." in page
    assert "Waits by clinic" in page and 'id="review-form"' in page


def test_approving_the_code_queues_the_job_and_publishes_the_code(
        app: FastAPI, login: Login) -> None:
    job = make_job(app)
    assert login("").get(f"/jobs/code/{job.code_sha256}").status_code == 404  # not yet public
    nina = login("nina")
    r = post(nina, f"/jobs/{job.id}/review", f"/jobs/{job.id}/review", {"decision": "approve"})
    assert r.status_code == 303 and r.headers["location"] == "/code-to-review?done=approve"
    assert job_state(app, job.id) == "approved"
    with app.state.hub.db.read() as s:
        assert s.scalars(select(WorkItem).where(WorkItem.kind == "job")).first() is not None
    assert login("").get(f"/jobs/code/{job.code_sha256}").status_code == 200
    register = login("").get("/register?kind=job.approved").text
    assert f'href="/jobs/code/{job.code_sha256}"' in register
    assert f"code {job.code_sha256[:12]}" in register


def test_rejecting_without_reasons_is_shown_on_the_form(app: FastAPI, login: Login) -> None:
    job = make_job(app)
    nina = login("nina")
    r = post(nina, f"/jobs/{job.id}/review", f"/jobs/{job.id}/review", {"decision": "reject"})
    assert r.status_code == 422 and "govuk-error-summary" in r.text
    assert "Say why the code is rejected" in r.text
    assert job_state(app, job.id) == "awaiting_review"
    forged = nina.post(f"/jobs/{job.id}/review", data={"decision": "approve"},
                       follow_redirects=False)
    assert forged.status_code == 403 and job_state(app, job.id) == "awaiting_review"


# --- the output checker's page ---------------------------------------------------------------

def test_the_checker_sees_each_file_and_the_findings(app: FastAPI, login: Login) -> None:
    job = make_job(app, state="awaiting_output_check", outputs=True)
    assert f'id="queued-{job.id}"' in login("oscar").get("/outputs-to-check").text
    page = login("oscar").get(f"/jobs/{job.id}/check").text
    assert "<th scope=\"col\" class=\"govuk-table__header\">clinic</th>" in page
    assert "&lt;b&gt;42&lt;/b&gt;" in page and "<b>42</b>" not in page  # CSV cells escaped
    assert f'src="/jobs/{job.id}/figures/chart.png"' in page
    assert "&lt;script&gt;alert(&#39;notes&#39;)&lt;/script&gt;" in page
    assert "clinic=eye \u00d7 count" in page and "threshold" in page and "suppressed" in page
    assert "Waits by clinic" in page and 'id="check-form"' in page
    # Not the author's, not another researcher's, not a steward's to check.
    assert login("alice").get(f"/jobs/{job.id}/check").status_code == 404
    assert login("alice").get("/outputs-to-check").status_code == 403
    assert login("nina").get(f"/jobs/{job.id}/check").status_code == 404


def test_figures_are_served_as_png_and_only_to_those_who_may_read_them(
        app: FastAPI, login: Login) -> None:
    job = make_job(app, state="awaiting_output_check", outputs=True)
    r = login("oscar").get(f"/jobs/{job.id}/figures/chart.png")
    assert r.status_code == 200 and r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert login("oscar").get(f"/jobs/{job.id}/figures/notes.txt").status_code == 404
    assert login("oscar").get(f"/jobs/{job.id}/figures/none.png").status_code == 404
    assert login("alice").get(f"/jobs/{job.id}/figures/chart.png").status_code == 422
    assert login("bob").get(f"/jobs/{job.id}/figures/chart.png").status_code == 404


def test_approving_the_outputs_releases_them_to_the_project(app: FastAPI, login: Login) -> None:
    job = make_job(app, state="awaiting_output_check", outputs=True)
    assert 'id="download-outputs"' not in login("alice").get(f"/jobs/{job.id}").text
    oscar = login("oscar")
    r = post(oscar, f"/jobs/{job.id}/check", f"/jobs/{job.id}/check", {"decision": "approve"})
    assert r.status_code == 303 and r.headers["location"].startswith("/outputs-to-check")
    assert job_state(app, job.id) == "released"
    page = login("alice").get(f"/jobs/{job.id}").text
    assert f'href="/api/jobs/{job.id}/outputs"' in page and 'id="download-outputs"' in page
    assert 'id="download-outputs"' not in login("bob").get("/jobs").text


def test_returning_needs_comments(app: FastAPI, login: Login) -> None:
    job = make_job(app, state="awaiting_output_check", outputs=True)
    r = post(login("oscar"), f"/jobs/{job.id}/check", f"/jobs/{job.id}/check",
             {"decision": "return"})
    assert r.status_code == 422 and "govuk-error-summary" in r.text
    assert job_state(app, job.id) == "awaiting_output_check"


def test_blind_review_hides_the_other_checkers_decision(app: FastAPI, login: Login) -> None:
    job = make_job(app, state="awaiting_output_check", outputs=True, reviews=2)
    with app.state.hub.db.write() as s:
        s.add(OutputReview(job_id=job.id, checker="olga", decision="approve",
                           comments="olga-private-view"))
    oscar = login("oscar")
    page = oscar.get(f"/jobs/{job.id}/check").text
    assert "olga-private-view" not in page and 'id="output-decisions"' not in page
    assert "olga-private-view" not in oscar.get(f"/jobs/{job.id}").text
    post(oscar, f"/jobs/{job.id}/check", f"/jobs/{job.id}/check", {"decision": "approve"})
    assert job_state(app, job.id) == "released"
    assert "olga-private-view" in oscar.get(f"/jobs/{job.id}/check").text


# --- escaping --------------------------------------------------------------------------------

def test_code_and_findings_are_escaped(app: FastAPI, login: Login) -> None:
    evil = {"analysis.py": "print('</code></pre><script>alert(1)</script>')\n"}
    job = make_job(app, state="awaiting_review", files=evil)
    for who, path in (("nina", f"/jobs/{job.id}/review"), ("alice",
                                                          f"/jobs/code/{job.code_sha256}")):
        page = login(who).get(path).text
        assert "<script>alert(1)</script>" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
    found = make_job(app, state="awaiting_output_check", outputs=True,
                     detail="<script>alert('finding')</script>")
    page = login("alice").get(f"/jobs/{found.id}").text
    assert "<script>alert('finding')</script>" not in page
    assert "&lt;script&gt;alert(&#39;finding&#39;)&lt;/script&gt;" in page


# --- navigation and the dataset page ---------------------------------------------------------

def test_the_header_links_each_person_to_their_queue(login: Login) -> None:
    def links(name: str) -> set[str]:
        html = login(name).get("/").text
        return set(re.findall(r'href="(/jobs|/code-to-review|/outputs-to-check)"', html))

    assert links("alice") == {"/jobs"}
    assert links("nina") == {"/jobs", "/code-to-review"}
    assert links("oscar") >= {"/jobs", "/outputs-to-check"} and "/code-to-review" not in links(
        "oscar")
    assert links("") == set()


def test_a_controlled_dataset_says_how_to_run_code_on_it(login: Login) -> None:
    page = login("").get(f"/datasets/{OUTPATIENT}").text
    section = page[page.index('id="run-code"'):]
    assert "ndl job init" in section and "ndl run my-job --mock" in section
    assert "ndl submit my-job --project" in section
    assert 'id="run-code"' not in login("").get("/datasets/nhs-trust/ambulance-handovers").text


def test_the_org_dashboard_counts_jobs_that_ran_on_its_data(app: FastAPI) -> None:
    """Controlled jobs are a use of the data too (the dashboard once said 0 for ever)."""
    from ndl.ledger import register
    from ndl.wishlist.service import dashboard

    hub = app.state.hub
    ran, waiting = make_job(app, state="released", outputs=True), make_job(app)
    with hub.db.write() as s:
        register.append(s, hub.key, kind="job.ran", actor="datasite:nhs-trust", subject=ran.id,
                        payload={"code_sha256": ran.code_sha256, "outcome": "released"})
    with hub.db.read() as s:
        got = dashboard(s, "nhs-trust")
    assert got["jobs"] == 1 and waiting.id != ran.id
    per = {d["id"]: d["jobs"] for d in got["per_dataset"]}
    assert per[OUTPATIENT] == 1 and sum(per.values()) == 1

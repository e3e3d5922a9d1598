"""``ndl run --mock``, ``ndl submit`` and ``ndl job ...``: what the terminal says, the files
written and the exit codes. ``run --mock`` uses the real runner and sandbox; hub commands run
against an in-process hub (the real routes and services) or, for downloads, a mock hub."""

from __future__ import annotations

import hashlib
import io
import re
import stat
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from test_mock_run import pupils, write_bundle
from test_web_job_pages import OUTPATIENT, seeded  # noqa: F401  (alice's project + grant)
from typer.testing import CliRunner

import ndl.cli  # noqa: F401  (registers every command on the app)
from ndl.access import accounts
from ndl.access.models import User
from ndl.access.project_models import Project
from ndl.cli import job_cmds
from ndl.cli.app import app
from ndl.client import Client
from ndl.core.errors import InvalidInput, JobFailed, UpstreamTimeout
from ndl.hubclient import _jobs, extract_outputs

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

JID = "job-1a2b3c4d5e6f7a8b"


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def said(res: Any) -> str:
    return " ".join(res.output.split())


@pytest.fixture
def cache(tmp_path: Path) -> dict[str, str]:
    """No saved token (so no hub is asked) and a private cache for mock runs."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "NDL_CONFIG_DIR": str(tmp_path / "cfg"),
            "NDL_TOKEN": ""}


# -- ndl run ----------------------------------------------------------------------------------

def test_run_without_mock_says_real_data_runs_only_at_the_datasite(tmp_path: Path) -> None:
    res = run("run", str(write_bundle(tmp_path / "b")))
    assert res.exit_code == InvalidInput.exit_code
    assert "real data runs only at the datasite" in said(res) and "ndl submit" in said(res)


def test_init_then_run_mock_with_data_prints_the_report_and_unpacks_outputs(
        tmp_path: Path, cache: dict[str, str]) -> None:
    bundle = tmp_path / "fsm"
    res = run("job", "init", str(bundle))
    assert res.exit_code == 0, res.output
    assert (bundle / "ndl-job.toml").is_file() and (bundle / "analysis.py").is_file()
    assert f"ndl run {bundle} --mock" in said(res)
    data = tmp_path / "pupils.parquet"
    # The example counts by SEN status and by sex, each with FSM (the demo pupils' columns).
    rows = pupils()
    pq.write_table(rows.append_column("fsm_eligible", rows["fsm"]).append_column(
        "sex", pa.array(["F"] * rows.num_rows)), data)
    out = tmp_path / "outputs"
    res = run("run", str(bundle), "--mock", "--data", f"dfe/pupils={data}", "--out", str(out),
              env=cache)
    assert res.exit_code == 0, res.output
    text = said(res)
    assert "safe log" in text and "full log" in text
    # The report table: the small cell, the rule and what was done, and the output's status
    # (a narrower console, fixed by whichever test first made it, wraps the finding's words
    # onto the next row of the table, between empty cells).
    assert re.search(r"EHC plan / True\W+suppressed \(threshold\):[\s│]+fewer[\s│]+than[\s│]+"
                     r"10[\s│]+contributors", text), text
    assert re.search(r"fsm_by_sen\W+checked", text)
    released = (out / "fsm_by_sen.csv").read_text()
    assert "EHC plan,True,[suppressed]" in released
    assert {p.name for p in out.iterdir()} == {"fsm_by_sen.csv", "fsm_by_sex.csv",
                                               "report.json", "log.txt"}
    # Run again: it starts again from the same bundle, and init refuses to overwrite it.
    again = run("job", "init", str(bundle))
    assert again.exit_code == 6 and "already holds ndl-job.toml" in said(again)


def test_run_mock_as_json(tmp_path: Path, cache: dict[str, str]) -> None:
    import json

    data = tmp_path / "p.parquet"
    pq.write_table(pupils(), data)
    res = run("run", str(write_bundle(tmp_path / "b")), "--mock", "--data",
              f"dfe/pupils={data}", "--out", str(tmp_path / "o"), "--json", env=cache)
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout[res.stdout.index("{"):])
    assert body["ok"] and body["report"]["outputs"][0]["suppressed"] >= 1


def test_a_failing_job_exits_9_with_the_safe_error(tmp_path: Path,
                                                   cache: dict[str, str]) -> None:
    data = tmp_path / "p.parquet"
    pq.write_table(pupils(), data)
    bundle = write_bundle(tmp_path / "b", by='["no_such_column"]')
    res = run("run", str(bundle), "--mock", "--data", f"dfe/pupils={data}",
              "--out", str(tmp_path / "o"), env=cache)
    assert res.exit_code == JobFailed.exit_code == 9, res.output
    assert "the job failed with JobError at analysis.py line 6" in said(res)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("file", "text", "words"), [
    ("analysis.py", "def f(:\n", "analysis.py line 1: invalid syntax"),
    ("ndl-job.toml", 'name = "x"\n', "ndl-job.toml is not valid: language: field required"),
    ("ndl-job.toml", "name = \n", "ndl-job.toml is not valid TOML"),
])
def test_bundle_errors_name_the_file_and_line_and_nothing_is_sent(
        tmp_path: Path, cache: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        file: str, text: str, words: str) -> None:
    bundle = write_bundle(tmp_path / "b")
    (bundle / file).write_text(text, "utf-8")
    res = run("run", str(bundle), "--mock", env=cache)
    assert res.exit_code == InvalidInput.exit_code, res.output
    assert words.lower() in said(res).lower()
    seen: list[httpx.Request] = []

    def hub(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    monkeypatch.setattr(job_cmds, "_client", lambda *_: Client(
        "http://hub.test", "ndl_t", transport=httpx.MockTransport(hub)))
    res = run("submit", str(bundle), "--project", "p-1a2b3c4d")
    assert res.exit_code == InvalidInput.exit_code and words.lower() in said(res).lower()
    assert seen == []


# -- ZIP extraction -----------------------------------------------------------------------------

def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info, data in entries:
            z.writestr(info, data)
    return buf.getvalue()


def _link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("entry", "why"), [
    ("../evil.txt", "leaves the folder"),
    ("ok/../../evil.txt", "leaves the folder"),
    ("/tmp/evil.txt", "leaves the folder"),
    ("C:/evil.txt", "leaves the folder"),
    ("..\\evil.txt", "leaves the folder"),
    (_link("link"), "symbolic link"),
])
def test_zip_extraction_refuses_entries_that_escape(tmp_path: Path,
                                                    entry: zipfile.ZipInfo | str,
                                                    why: str) -> None:
    archive = tmp_path / "outputs.zip"
    archive.write_bytes(_zip([("fine.csv", b"a\n1\n"), (entry, b"/etc/passwd")]))
    folder = tmp_path / "deep" / "out"
    with pytest.raises(InvalidInput, match=why):
        extract_outputs(archive, folder)
    assert not folder.exists()  # nothing, not even the harmless entry, was written
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_zip_extraction_writes_plain_entries(tmp_path: Path) -> None:
    archive = tmp_path / "o.zip"
    archive.write_bytes(_zip([("t.csv", b"a\n1\n"), ("sub/n.txt", b"hi")]))
    written = extract_outputs(archive, tmp_path / "out")
    assert sorted(p.name for p in written) == ["n.txt", "t.csv"]
    assert (tmp_path / "out" / "sub" / "n.txt").read_bytes() == b"hi"


def _job(state: str, **extra: Any) -> dict[str, Any]:
    return {"id": JID, "name": "fsm-by-sen", "project": "p-1a2b3c4d", "requester": "ada",
            "language": "python", "environment": "python-data", "datasets": ["dfe/pupils"],
            "org": "dfe", "code_sha256": "ab" * 32, "state": state, "state_words": state,
            "created_at": "2026-12-05T16:00:00+00:00",
            "updated_at": "2026-12-05T16:00:00+00:00", **extra}


def _serving(blob: bytes, seen: list[str] | None = None) -> Client:
    sha = hashlib.sha256(blob).hexdigest()

    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request.url.path)
        if request.url.path.endswith("/outputs"):
            return httpx.Response(200, content=blob)
        return httpx.Response(200, json=_job("released", outputs_sha256=sha,
                                             outputs_size=len(blob)))

    return Client("http://hub.test", "ndl_t", transport=httpx.MockTransport(answer))


def test_job_outputs_downloads_checks_and_unpacks(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _zip([("fsm_by_sen.csv", b"sen,fsm,count\n"), ("report.json", b"{}")])
    monkeypatch.setattr(job_cmds, "_client", lambda *_: _serving(blob))
    out = tmp_path / "o"
    res = run("job", "outputs", JID, "--out", str(out), "--no-progress")
    assert res.exit_code == 0, res.output
    assert (out / "fsm_by_sen.csv").read_bytes() == b"sen,fsm,count\n"
    assert (out / "outputs.zip").read_bytes() == blob
    assert "fsm_by_sen.csv" in said(res)


def test_job_outputs_refuses_an_evil_zip(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _zip([("../evil.txt", b"x")])
    monkeypatch.setattr(job_cmds, "_client", lambda *_: _serving(blob))
    res = run("job", "outputs", JID, "--out", str(tmp_path / "o"), "--no-progress")
    assert res.exit_code == InvalidInput.exit_code and "leaves the folder" in said(res)
    assert not (tmp_path / "evil.txt").exists()


def test_a_malformed_job_id_is_refused_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(job_cmds, "_client", lambda *_: _serving(b"", seen))
    for args in (["status", "../../me"], ["logs", "job-x/../y"], ["cancel", "JOB-1"]):
        res = run("job", *args)
        assert res.exit_code == InvalidInput.exit_code, res.output
        assert "job ids look like" in said(res)
    assert seen == []


# -- waiting ----------------------------------------------------------------------------------

def test_wait_job_stops_where_a_person_must_act(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_jobs, "JOB_POLL_SECONDS", 0.0)
    states = iter(["queued", "running", "running", "awaiting_output_check", "released"])
    polls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        polls.append(request.url.path)
        return httpx.Response(200, json=_job(next(states)))

    c = Client("http://hub.test", "t", transport=httpx.MockTransport(answer))
    view = c.wait_job(JID, progress=False)
    assert view.state == "awaiting_output_check" and len(polls) == 4


def test_wait_job_times_out_saying_how_to_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_jobs, "JOB_POLL_SECONDS", 0.0)
    c = Client("http://hub.test", "t", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=_job("running"))))
    with pytest.raises(UpstreamTimeout, match=f"ndl job status {JID}"):
        c.wait_job(JID, timeout=0.05, progress=False)


# -- against an in-process hub ----------------------------------------------------------------

@pytest.fixture
def tokens(app: FastAPI) -> dict[str, str]:
    out = {}
    with app.state.hub.db.write() as s:
        for name in ("alice", "nina", "oscar"):
            user = s.query(User).filter(User.username == name).one()
            out[name] = accounts.issue_token(s, user, name="test")
    return out


@pytest.fixture
def as_user(app: FastAPI, tokens: dict[str, str],
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with TestClient(app) as http:
        def use(name: str) -> None:
            monkeypatch.setattr(job_cmds, "_client",
                                lambda *_: Client.over(http, tokens[name]))  # type: ignore[arg-type]
        yield use


def test_submit_follow_review_and_cancel_through_the_hub(
        app: FastAPI, as_user: Any, tmp_path: Path) -> None:
    with app.state.hub.db.read() as s:
        project = str(s.query(Project.id).one()[0])
    bundle = write_bundle(tmp_path / "b", dataset=OUTPATIENT)
    as_user("alice")
    res = run("submit", str(bundle), "--project", project)
    assert res.exit_code == 0, res.output
    m = re.search(r"submitted job (job-[0-9a-f]+)", said(res))
    assert m, res.output
    jid = m.group(1)
    assert "waiting for a data steward" in said(res)
    assert f"next: a data steward of nhs-trust reviews the code; follow it with " \
           f"'ndl job status {jid}'" in said(res)
    status = run("job", "status", jid)
    assert status.exit_code == 0 and OUTPATIENT in said(status)
    listed = run("job", "list")
    assert listed.exit_code == 0 and jid in listed.output
    logs = run("job", "logs", jid)
    assert logs.exit_code == 0 and jid in logs.output
    diff = run("job", "diff", jid)
    assert diff.exit_code == 0 and "+job.table(" in diff.output
    # The steward sees it in the queue, by role; the output checker's queue is empty.
    as_user("nina")
    queue = run("job", "queue")
    assert queue.exit_code == 0 and jid in queue.output and "code to review" in said(queue)
    refused = run("job", "review", jid, "--approve", "--reject")
    assert refused.exit_code == InvalidInput.exit_code and "exactly one" in said(refused)
    no_reason = run("job", "review", jid, "--reject")
    assert no_reason.exit_code == InvalidInput.exit_code and "say why" in said(no_reason)
    as_user("oscar")
    empty = run("job", "queue")
    assert empty.exit_code == 0 and "no outputs to check" in said(empty)
    as_user("alice")
    cancelled = run("job", "cancel", jid)
    assert cancelled.exit_code == 0 and "cancelled" in said(cancelled)
    again = run("job", "cancel", jid)
    assert again.exit_code == 6  # Conflict: already cancelled
    envs = run("job", "environments")
    assert envs.exit_code == 0 and "python-data" in envs.output and "pandas" in envs.output

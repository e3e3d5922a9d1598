"""``ndl download`` and ``ndl work``: what the terminal says and the exit codes, against a
mock hub (the real one is in tests/integration/test_work_export.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_work_client import BLOB, DONE, WID, MockHub, sse, view
from typer.testing import CliRunner

import ndl.cli  # noqa: F401  (registers every command on the app)
from ndl.cli import work_cmds
from ndl.cli.app import app
from ndl.client import Client
from ndl.core.errors import Cancelled, InvalidInput, PermissionDenied, UpstreamTimeout
from ndl.hubclient import _long


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_long, "POLL_SECONDS", 0.0)
    monkeypatch.setattr(_long.time, "sleep", lambda s: None)


def use(monkeypatch: pytest.MonkeyPatch, hub: Any) -> None:
    monkeypatch.setattr(work_cmds, "_client", lambda *_: Client(
        "http://hub.test", "ndl_t", transport=httpx.MockTransport(hub)))


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_download_saves_the_file_and_says_what_it_is(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    use(monkeypatch, MockHub(events=sse(view(), view("running", 0.5, "half"), DONE)))
    out = tmp_path / "w.parquet"
    res = run("download", "la/wards", "--out", str(out), "--no-progress")
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == BLOB
    assert f"queued as work item {WID}" in res.output
    assert "300,000 rows" in res.output and "1.3 MB" in res.output


@pytest.mark.parametrize(("final", "error", "words"), [
    (view("failed", error={"code": "permission_denied",
                           "message": "la/wards is safeguarded data"}), PermissionDenied,
     "failed: la/wards is safeguarded data"),
    (view("cancelled"), Cancelled, "was cancelled"),
    (view("expired"), UpstreamTimeout, "expired before it finished"),
])
def test_work_that_did_not_succeed_says_so_and_exits_non_zero(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, final: dict[str, Any],
        error: type[Exception], words: str) -> None:
    use(monkeypatch, MockHub(events=sse(view(), final)))
    res = run("download", "la/wards", "--out", str(tmp_path / "x"), "--no-progress")
    assert res.exit_code == error.exit_code != 0, res.output  # type: ignore[attr-defined]
    assert words in " ".join(res.output.split())
    assert list(tmp_path.iterdir()) == []
    res = run("work", "wait", WID, "--no-progress")
    assert res.exit_code == error.exit_code  # type: ignore[attr-defined]


def test_ctrl_c_stops_waiting_and_says_how_to_come_back(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    hub = MockHub()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            raise KeyboardInterrupt
        return hub(request)

    use(monkeypatch, answer)
    res = run("download", "la/wards", "--no-progress")
    assert res.exit_code == 130
    said = " ".join(res.output.split())
    assert f"ndl work wait {WID}" in said and f"ndl work cancel {WID}" in said


def test_limits_and_formats_are_checked_before_anything_is_sent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hub = MockHub()
    use(monkeypatch, hub)
    for args in (["--limit", "0"], ["--limit", "-3"], ["--limit", "many"],
                 ["--format", "xlsx"]):
        res = run("download", "la/wards", *args)
        assert res.exit_code == 2, (args, res.output)
    assert hub.seen == []


def test_a_malformed_id_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = MockHub()
    use(monkeypatch, hub)
    for cmd in ("show", "wait", "cancel", "fetch"):
        res = run("work", cmd, "../../me")
        assert res.exit_code == InvalidInput.exit_code, res.output
        assert "work ids are UUIDs" in " ".join(res.output.split())
    assert hub.seen == []


def test_show_and_list(monkeypatch: pytest.MonkeyPatch) -> None:
    class Listing(MockHub):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/api/work":
                return httpx.Response(200, json={"work": [DONE, view("running", 0.25)]})
            return super().__call__(request)

    use(monkeypatch, Listing())
    shown = run("work", "show", WID)
    assert shown.exit_code == 0
    for words in ("succeeded", "100%", "wards.parquet", f"ndl work fetch {WID}"):
        assert words in shown.output
    listed = run("work", "list")
    assert listed.exit_code == 0 and "2 work items" in listed.output
    assert listed.output.count(WID) == 2 and "25%" in listed.output
    as_json = run("work", "show", WID, "--json")
    assert json.loads(as_json.output)["result"]["sha256"] == DONE["result"]["sha256"]


def test_cancel_says_whether_it_changed_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    class Cancelling(MockHub):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/cancel"):
                return httpx.Response(200, json=view("cancelled"))
            return super().__call__(request)

    use(monkeypatch, Cancelling(polls=[view("running", 0.4)]))
    assert "is cancelled" in run("work", "cancel", WID).output
    use(monkeypatch, Cancelling(polls=[view("cancelled")]))
    assert "already finished (cancelled); nothing changed" in run("work", "cancel", WID).output

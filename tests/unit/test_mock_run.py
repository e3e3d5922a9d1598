"""``ndl.jobs.mock_run``: the datasite's runner on mock data, local files or the hub's mock.

Runs the real runner in the real sandbox (bubblewrap here; the weaker mode is exercised by
making the strict one unavailable, as on a machine without bubblewrap).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from test_web_pages import AE, seeded  # noqa: F401  (the seeded hub, with a mock of AE)

from ndl.access import accounts
from ndl.access.models import User
from ndl.client import Client
from ndl.core.errors import InvalidInput, SandboxUnavailable, UpstreamUnavailable
from ndl.jobs import mock_run, sandbox
from ndl.jobs.mock_run import WEAKER_NOTICE, parse_data_args, run_mock

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

MANIFEST = """
name = "fsm-by-sen"
language = "python"
entry = "analysis.py"
environment = "python-data"
datasets = ["{dataset}"]
context = "Pupils by SEN status and free school meals."

[[outputs]]
name = "fsm_by_sen"
kind = "table"
description = "Pupils by SEN status and FSM eligibility"
"""
CODE = """
from ndl import job

pupils = job.dataset("{dataset}", as_="pandas")
print("rows seen:", len(pupils))
job.table("fsm_by_sen", pupils, by={by})
"""


def pupils() -> pa.Table:
    # EHC plan & FSM has 4 pupils: under the default threshold of 10.
    groups = {("None", False): 120, ("None", True): 61, ("SEN support", False): 33,
              ("SEN support", True): 27, ("EHC plan", False): 13, ("EHC plan", True): 4}
    sen: list[str] = []
    fsm: list[bool] = []
    for (s, f), n in groups.items():
        sen += [s] * n
        fsm += [f] * n
    return pa.table({"sen_status": sen, "fsm": fsm})


def write_bundle(folder: Path, dataset: str = "dfe/pupils",
                 by: str = '["sen_status", "fsm"]', code: str = CODE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ndl-job.toml").write_text(MANIFEST.format(dataset=dataset), "utf-8")
    (folder / "analysis.py").write_text(code.format(dataset=dataset, by=by), "utf-8")
    return folder


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "pupils.parquet"
    pq.write_table(pupils(), path)
    return path


def _released(archive: Path) -> dict[str, str]:
    with zipfile.ZipFile(archive) as z:
        return {n: z.read(n).decode() for n in z.namelist()}


def test_a_local_parquet_runs_through_the_real_runner_and_a_small_cell_is_suppressed(
        tmp_path: Path, parquet: Path) -> None:
    said: list[str] = []
    out = run_mock(write_bundle(tmp_path / "b"), data={"dfe/pupils": parquet}, client=None,
                   workdir=tmp_path / "work", say=said.append)
    assert out.ok, out.error
    assert out.report is not None and out.report.mock
    (table,) = out.report.outputs
    threshold = [f for f in table.findings if f.rule == "threshold"]
    assert [f.cell for f in threshold] == [["EHC plan", "True"]]
    assert table.suppressed >= 1 and table.cells == 6
    assert out.archive is not None
    files = _released(out.archive)
    assert "EHC plan,True,[suppressed]" in files["fsm_by_sen.csv"]
    assert ",4\n" not in files["fsm_by_sen.csv"]  # the true small count never appears
    assert "rows seen: 258" in out.full_log  # mock data: the job's own output is shown
    # Only the outputs' ZIP is kept: the run's folders are gone.
    assert not any((tmp_path / "work" / "runs").iterdir())


def test_a_csv_is_read_as_the_dataset(tmp_path: Path) -> None:
    csv = tmp_path / "pupils.csv"
    pcsv.write_csv(pupils(), csv)
    out = run_mock(write_bundle(tmp_path / "b"), data={"dfe/pupils": csv}, client=None,
                   workdir=tmp_path / "work", say=lambda s: None)
    assert out.ok, out.error
    assert out.report is not None and out.report.outputs[0].cells == 6


def test_without_bubblewrap_it_runs_weaker_and_says_so(
        tmp_path: Path, parquet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sandbox.open_sandbox

    def no_bwrap(mode: str = "strict") -> object:
        if mode == "strict":
            raise SandboxUnavailable("bubblewrap (bwrap) is not on PATH")
        return real("weaker")

    monkeypatch.setattr(mock_run, "open_sandbox", no_bwrap)
    said: list[str] = []
    out = run_mock(write_bundle(tmp_path / "b"), data={"dfe/pupils": parquet}, client=None,
                   workdir=tmp_path / "work", say=said.append)
    assert any(WEAKER_NOTICE in s for s in said), said
    assert out.ok and out.report is not None and out.report.sandbox == "weaker"


def test_a_failing_job_gives_the_file_and_line(tmp_path: Path, parquet: Path) -> None:
    bundle = write_bundle(tmp_path / "b", by='["no_such_column"]')
    out = run_mock(bundle, data={"dfe/pupils": parquet}, client=None,
                   workdir=tmp_path / "work", say=lambda s: None)
    assert not out.ok and out.archive is None
    assert out.error is not None and "analysis.py line 6" in out.error
    assert "no_such_column" in out.full_log


@pytest.mark.parametrize(("data", "words"), [
    ({}, "--data dfe/pupils=PATH"),
    ({"dfe/other": Path("x.parquet")}, "which the bundle does not read"),
    ({"dfe/pupils": Path("/nonexistent/p.parquet")}, "no such file"),
])
def test_missing_or_wrong_data_is_refused_with_the_fix(
        tmp_path: Path, data: dict[str, Path], words: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(words)):
        run_mock(write_bundle(tmp_path / "b"), data=data, client=None,
                 workdir=tmp_path / "work", say=lambda s: None)


def test_data_arguments_are_id_equals_path() -> None:
    assert parse_data_args(["dfe/pupils=a.parquet"]) == {"dfe/pupils": Path("a.parquet")}
    for bad in (["dfe/pupils"], ["=a.csv"], ["dfe/pupils=a", "dfe/pupils=b"]):
        with pytest.raises(InvalidInput, match="--data"):
            parse_data_args(bad)


def test_a_bad_bundle_is_refused_before_any_data_is_read(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b")
    (bundle / "analysis.py").write_text("x = (\n", "utf-8")
    with pytest.raises(InvalidInput, match=r"analysis\.py line 1"):
        run_mock(bundle, data={}, client=None, workdir=tmp_path / "work")


# -- the hub's mock, from a real (in-process) hub --------------------------------------------

@pytest.fixture
def hub(app: FastAPI) -> Iterator[Client]:
    with app.state.hub.db.write() as s:
        user = s.query(User).filter(User.username == "rita").one()
        token = accounts.issue_token(s, user, name="test")
    with TestClient(app) as http:
        yield Client.over(http, token)  # type: ignore[arg-type]


def test_the_hub_serves_its_mock_as_parquet(hub: Client, tmp_path: Path) -> None:
    path = hub.fetch_mock(AE, tmp_path / "ae.parquet", limit=7)
    table = pq.read_table(path)
    assert table.num_rows == 7
    assert table.schema.field("wait_minutes").type == pa.int64()  # types kept, unlike CSV


def test_a_mock_run_without_data_uses_the_hubs_mock_and_caches_it(
        hub: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = ('from ndl import job\nae = job.dataset("{dataset}", as_="pandas")\n'
            'job.table("fsm_by_sen", ae, by={by})\n')
    bundle = write_bundle(tmp_path / "b", dataset=AE, by='["age_band"]', code=code)
    said: list[str] = []
    out = run_mock(bundle, data=None, client=hub, workdir=tmp_path / "work", say=said.append)
    assert out.ok, (out.error, out.full_log)
    cached = tmp_path / "work" / "mocks" / "nhs-trust--ae-attendances.parquet"
    assert cached.is_file() and any("fetching the hub's mock" in s for s in said)

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the cached mock should have been used")

    monkeypatch.setattr(Client, "fetch_mock", refuse)
    again = run_mock(bundle, data=None, client=hub, workdir=tmp_path / "work",
                     say=said.append)
    assert again.ok and any("cached" in s for s in said)


def test_a_mock_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    client = Client("http://hub.test", "ndl_t", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, content=b"<html>proxy</html>")))
    with pytest.raises(UpstreamUnavailable, match="no Parquet"):
        client.fetch_mock(AE, tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()

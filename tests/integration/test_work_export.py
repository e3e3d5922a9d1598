"""Exports of whole open datasets as work items, end to end: a real hub and a real datasite on
loopback, driven through the ``ndl`` command line (a real process) and the SDK.

What must hold: the file arrives whole (the same rows as the Parquet at the datasite, and its
SHA-256 is the one the hub named); progress travels on the event stream while the export
runs; a cancel reaches the datasite and stops the export there, leaving nothing behind; a
dataset whose tier does not allow downloads is refused with the tier's own words.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from ndl.client import Client, Work
from ndl.core.errors import Cancelled, NotFound, PermissionDenied
from ndl.hubclient import parse_sse
from ndl.testing import DatasiteProcess, HubProcess, stop_all, write_dataset

AREAS_ROWS = 300_000    # about 4 MB as Parquet: over the old 2 MB /rows ceiling
BIG_ROWS = 2_000_000    # a CSV export of this takes seconds: long enough to watch and cancel


@dataclass
class Site:
    hub: HubProcess
    site: DatasiteProcess
    alice: str
    bob: str
    tmp: Path

    def client(self, token: str | None) -> Client:
        return Client(self.hub.url, token)

    def parquet(self, name: str) -> pa.Table:
        return pq.read_table(self.site.root / "datasets" / name / "data.parquet")

    def ndl(self, *args: str, token: str | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        """The real command line, as a user runs it (no saved login unless ``token``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NDL_")}
        env.update({"NDL_HUB": self.hub.url, "NDL_CONFIG_DIR": str(self.tmp / "config"),
                    "COLUMNS": "200", "NDL_ALLOW_HTTP_LOOPBACK": "1"})  # a loopback hub
        if token:
            env["NDL_TOKEN"] = token
        return subprocess.run([sys.executable, "-m", "ndl", *args], capture_output=True,
                              text=True, env=env, timeout=timeout, check=False)


def _table(n: int) -> pa.Table:
    return pa.table({
        "area": pa.array([f"E{i:08d}" for i in range(n)]),
        "people": pa.array(range(n), pa.int64()),
        "share": pa.array([i / n for i in range(n)], pa.float64()),
    })


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The whole module once on SQLite and once on PostgreSQL (an empty schema)."""
    if request.param == "sqlite":
        return str(tmp_path_factory.mktemp("sqlite") / "hub.db")
    import sqlalchemy as sa

    server: str = request.getfixturevalue("pg_server")
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    return server


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, hub_db: str) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("work-export")
    hub = HubProcess(tmp / "hub", hub_db, extra_args=["--lease-seconds", "2"])
    hub.create_org("ons", "Office for National Statistics", "government")
    steward = hub.create_user("sam", ["steward"], org="ons")
    alice = hub.create_user("alice", ["researcher"], accredited=True)
    bob = hub.create_user("bob", ["researcher"])
    root = tmp / "site"
    write_dataset(root, "areas", _table(AREAS_ROWS), tier="open", title="Areas")
    write_dataset(root, "big", _table(BIG_ROWS), tier="open", title="Big areas")
    write_dataset(root, "patients", pa.table({"region": ["North"] * 30}), tier="safeguarded",
                  title="Patients")
    write_dataset(root, "records", pa.table({"code": ["x"] * 30}), tier="controlled",
                  title="Records")
    site_proc = DatasiteProcess(root, hub.url, org="ons", token=steward, poll_wait=2)
    ok = False
    try:
        hub.start()
        site_proc.start()
        yield Site(hub, site_proc, alice, bob, tmp)
        ok = True
    finally:
        stop_all(site_proc, hub, show_logs=not ok)


def _queued_id(stderr: str) -> str:
    match = re.search(r"queued as work item ([0-9a-f-]{36})", stderr)
    assert match, stderr
    return match.group(1)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _view(site: Site, work_id: str, token: str | None = None) -> Work:
    with site.client(token) as c:
        return c.work(work_id)


# -- whole files ----------------------------------------------------------------------------

def test_the_cli_downloads_an_open_dataset_whole_without_signing_in(site: Site) -> None:
    out = site.tmp / "cli" / "areas.parquet"
    run = site.ndl("download", "ons/areas", "--out", str(out), "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "saved" in run.stdout and "300,000 rows" in run.stdout
    got = pq.read_table(out)
    assert out.stat().st_size > 2_000_000
    assert got.equals(site.parquet("areas"))
    work_id = _queued_id(run.stderr)
    view = _view(site, work_id)  # an anonymous item: reached by its id alone
    assert view.state == "succeeded" and view.result is not None
    assert view.result.sha256 == _sha256(out) and view.result.rows == AREAS_ROWS
    assert not list(out.parent.glob("*.part"))


def test_the_sdk_exports_csv_whole_and_checked(site: Site) -> None:
    folder = site.tmp / "sdk"
    folder.mkdir()
    with site.client(site.alice) as c:
        path = c.export("ons/areas", folder, format="csv", progress=False)
        mine = c.work_list()
    assert path.name == "areas.csv"
    got = pacsv.read_csv(path)
    want = site.parquet("areas")
    assert got.num_rows == AREAS_ROWS
    assert got.column("area").to_pylist() == want.column("area").to_pylist()
    assert got.column("people").to_pylist() == want.column("people").to_pylist()
    # The item is alice's, listed for her, and the file is the one the hub named.
    latest = mine[0]
    assert latest.dataset == "ons/areas" and latest.state == "succeeded"
    assert latest.result is not None and latest.result.sha256 == _sha256(path)


def test_a_partial_download_resumes_from_where_it_stopped(site: Site) -> None:
    with site.client(site.alice) as c:
        view = c.submit_work("export", "ons/areas", {"format": "parquet", "limit": 100_000})
        done = c.wait_work(view.id, progress=False)
    assert done.result is not None
    res = done.result
    # The first part of the file, as a download cut off half way would leave it.
    whole = httpx.get(f"{site.hub.url}{done.result_url}",
                      headers={"Authorization": f"Bearer {site.alice}"}, timeout=60).content
    dest = site.tmp / "resume" / "part.parquet"
    dest.parent.mkdir(parents=True)
    part = dest.with_name(f"{dest.name}.{res.sha256[:12]}.part")
    part.write_bytes(whole[: res.size // 2])
    run = site.ndl("work", "fetch", view.id, "--out", str(dest), "--no-progress",
                   token=site.alice)
    assert run.returncode == 0, run.stderr
    assert dest.read_bytes() == whole and _sha256(dest) == res.sha256
    assert not part.exists()
    assert pq.read_table(dest).num_rows == 100_000


# -- progress and cancel --------------------------------------------------------------------

def _events(site: Site, work_id: str, token: str) -> list[dict[str, object]]:
    """Every ``state`` event of the item's stream, read raw (no SDK fall-back to polling)."""
    seen: list[dict[str, object]] = []
    with httpx.stream("GET", f"{site.hub.url}/api/work/{work_id}/events",
                      headers={"Authorization": f"Bearer {token}"},
                      timeout=httpx.Timeout(120.0, connect=15.0)) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for ev in parse_sse(resp.iter_lines()):
            assert ev.event == "state"
            seen.append(json.loads(ev.data))
    return seen


def test_progress_travels_on_the_event_stream(site: Site) -> None:
    with site.client(site.alice) as c:
        view = c.submit_work("export", "ons/big", {"format": "csv"})
    events = _events(site, view.id, site.alice)
    states = [e["state"] for e in events]
    assert states[-1] == "succeeded", events[-3:]
    running = [e for e in events if e["state"] == "running"]
    assert any(0 < float(str(e["progress"])) < 1 for e in running), events
    assert any(str(e["message"]).endswith("of 2,000,000 rows") for e in running), events
    fractions = [float(str(e["progress"])) for e in events]
    assert fractions == sorted(fractions), "progress never runs backwards"


def _stored_reply(site: Site, work_id: str) -> dict[str, object] | None:
    db = sqlite3.connect(f"file:{site.site.root / 'state.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT reply FROM messages WHERE message_id = ?",
                         (f"work:{work_id}",)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row and row[0] else None


def test_a_cancel_reaches_the_datasite_and_stops_the_export(site: Site) -> None:
    with site.client(site.alice) as c:
        view = c.submit_work("export", "ons/big", {"format": "csv"})
        for w in c.follow_work(view.id, timeout=120):
            if (w.state == "running" and w.progress > 0) or w.final:
                break
        assert w.state == "running", w
    run = site.ndl("work", "cancel", view.id, token=site.alice)
    assert run.returncode == 0, run.stderr
    assert "is cancelled" in run.stdout
    # The datasite learns at its next heartbeat: the export stops and records why.
    deadline = time.monotonic() + 60
    while (reply := _stored_reply(site, view.id)) is None:
        assert time.monotonic() < deadline, "the datasite never finished the cancelled export"
        time.sleep(0.2)
    assert reply["ok"] is False and reply["error"]["code"] == "cancelled", reply  # type: ignore[index]
    outbox = site.site.root / "outbox"
    deadline = time.monotonic() + 30
    while list(outbox.glob(f"{view.id}*")):
        assert time.monotonic() < deadline, list(outbox.iterdir())
        time.sleep(0.2)
    final = _view(site, view.id, site.alice)
    assert final.state == "cancelled" and final.result is None
    # Waiting for or fetching it now says so, with the error's exit code.
    wait = site.ndl("work", "wait", view.id, "--no-progress", token=site.alice)
    assert wait.returncode == Cancelled.exit_code and "was cancelled" in wait.stderr
    fetch = site.ndl("work", "fetch", view.id, "--no-progress", token=site.alice)
    assert fetch.returncode == Cancelled.exit_code and "was cancelled" in fetch.stderr
    again = site.ndl("work", "cancel", view.id, token=site.alice)
    assert again.returncode == 0 and "already finished (cancelled)" in again.stdout


# -- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize(("dataset", "words"), [
    ("ons/patients", "ons/patients is safeguarded data: downloading rows is only for open "
                     "data"),
    ("ons/records", "ons/records is controlled data: downloading rows is only for open data"),
])
def test_non_open_data_is_refused_in_the_tiers_words(site: Site, dataset: str, words: str
                                                     ) -> None:
    for token in (None, site.alice):
        run = site.ndl("download", dataset, "--no-progress", token=token)
        assert run.returncode == PermissionDenied.exit_code, run.stderr
        assert words in " ".join(run.stderr.split())
        assert "queued" not in run.stderr
    with site.client(site.alice) as c:
        assert all(w.dataset != dataset for w in c.work_list())


def test_an_unknown_dataset_is_not_found(site: Site) -> None:
    run = site.ndl("download", "ons/no-such-data", "--no-progress")
    assert run.returncode == NotFound.exit_code
    assert "ons/no-such-data" in run.stderr


def test_list_and_show_in_the_terminal(site: Site) -> None:
    with site.client(site.bob) as c:
        view = c.submit_work("export", "ons/areas", {"format": "parquet", "limit": 10})
        c.wait_work(view.id, progress=False)
    listed = site.ndl("work", "list", token=site.bob)
    assert listed.returncode == 0 and view.id in listed.stdout
    shown = site.ndl("work", "show", view.id, token=site.bob)
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout and "areas.parquet" in shown.stdout
    assert f"ndl work fetch {view.id}" in shown.stdout
    # Another researcher is told there is no such item, not that it is someone else's.
    other = site.ndl("work", "show", view.id, token=site.alice)
    assert other.returncode == NotFound.exit_code and "no work item" in other.stderr
    signed_out = site.ndl("work", "list")
    assert signed_out.returncode == 3 and "ndl login" in signed_out.stderr


# -- last: it restarts the hub ---------------------------------------------------------------

def test_a_wait_rides_out_a_hub_restart(site: Site, tmp_path: Path) -> None:
    """The hub is killed while the SDK follows an export and started again: the wait goes on
    (the event stream breaks, polling waits for the hub) and the file still arrives whole."""
    with site.client(site.alice) as c:
        view = c.submit_work("export", "ons/big", {"format": "csv", "limit": 1_500_000})
        states = []
        restarted = False
        for w in c.follow_work(view.id, timeout=600):
            states.append(w.state)
            if not restarted and w.state == "running":
                site.hub.kill()
                site.hub.start()
                restarted = True
        assert restarted and states[-1] == "succeeded", states
        path = c.fetch_work(view.id, tmp_path, progress=False)
    assert pacsv.read_csv(path).num_rows == 1_500_000

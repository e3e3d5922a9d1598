"""Two writers on one row at once: each change is applied after the other, never over it.

Found by CI on PostgreSQL: a datasite's heartbeat read a work item as ``leased`` just before
the item's result committed, then wrote ``running`` back over ``succeeded``; the requester's
wait had seen ``succeeded`` and the download was refused ("it is still running"). Rows that
are read in order to be changed are now locked (``SELECT … FOR UPDATE``); SQLite's one writer
at a time gives the same order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from test_web_job_pages import make_job, seed_jobs_hub

from ndl.access import accounts
from ndl.access.models import Org, User
from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.federation import work
from ndl.federation.models import Datasite
from ndl.federation.work import Progress
from ndl.federation.work_models import WorkItem
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings
from ndl.jobs import checking
from ndl.jobs.models import Job
from ndl.work.views import WorkResult

KEY = SigningKey.generate()
RESULT = WorkResult(sha256="cd" * 32, size=10, media_type="text/csv", filename="x.csv", rows=2)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        s.add(Org(id="trust", name="Trust", kind="nhs"))
        s.flush()
        s.add(Datasite(id="site", org_id="trust", name="Site",
                       public_key=SigningKey.generate().public_b64))
    yield database
    database.dispose()


def _leased_item(db: Database) -> str:
    """An item handed out again after a lapsed lease: started, now ``leased``, so the next
    heartbeat sets ``running`` without writing anything else first."""
    with db.write() as s:
        item = work.submit(s, KEY, kind="export", requester="user:alice", actor="alice",
                           datasite_id="site", dataset="site/data", params={}, ttl=3600.0)
        wid = item.id
    with db.write() as s:
        assert work.lease(s, KEY, "site", lease_seconds=60, limit=1)
        work.heartbeat(s, KEY, "site", {wid: Progress(0.1, "reading")}, lease_seconds=60)
        found = s.get(WorkItem, wid)
        assert found is not None
        found.state = "leased"
    return wid


def test_a_heartbeat_racing_the_result_never_undoes_it(db: Database) -> None:
    wid = _leased_item(db)
    read = threading.Event()
    finished = threading.Event()
    errors: list[BaseException] = []

    def heartbeat_that_commits_late() -> None:
        try:
            with db.write() as s:
                renewed, _ = work.heartbeat(s, KEY, "site", {wid: Progress(0.5, "half")},
                                            lease_seconds=60)
                assert renewed == [wid]
                read.set()
                # The result arrives while this transaction is still open.
                finished.wait(1.5)
        except BaseException as exc:
            errors.append(exc)
            read.set()

    def result() -> None:
        try:
            with db.write() as s:
                assert work.finish(s, KEY, "site", wid, ok=True, result=RESULT, error=None)
            finished.set()
        except BaseException as exc:
            errors.append(exc)

    beat = threading.Thread(target=heartbeat_that_commits_late)
    beat.start()
    assert read.wait(10)
    done = threading.Thread(target=result)
    done.start()
    beat.join(20)
    done.join(20)
    assert not errors, errors
    with db.read() as s:
        item = s.get(WorkItem, wid)
        assert item is not None
        assert (item.state, item.progress) == ("succeeded", 1.0)
        assert item.result is not None and item.result["sha256"] == RESULT.sha256


def test_a_lease_never_hands_out_an_item_being_finished(db: Database) -> None:
    """The lease lapsed while the result is committing: handing out lapsed leases skips the
    locked row instead of writing ``leased`` over the result."""
    wid = _leased_item(db)
    with db.write() as s:
        found = s.get(WorkItem, wid)
        assert found is not None
        found.lease_until = found.lease_until.replace(year=2000)  # lapsed
    flushed = threading.Event()
    errors: list[BaseException] = []

    def result_that_commits_late() -> None:
        try:
            with db.write() as s:
                assert work.finish(s, KEY, "site", wid, ok=True, result=RESULT, error=None)
                s.flush()
                flushed.set()
                time.sleep(1.0)
        except BaseException as exc:
            errors.append(exc)
            flushed.set()

    t = threading.Thread(target=result_that_commits_late)
    t.start()
    assert flushed.wait(10)
    with db.write() as s:
        handed_out = work.lease(s, KEY, "site", lease_seconds=60, limit=10)
    t.join(20)
    assert not errors, errors
    with db.read() as s:
        item = s.get(WorkItem, wid)
        assert item is not None and item.state == "succeeded"
    assert handed_out == []


# -- two output checkers at once ---------------------------------------------------------------

@pytest.fixture
def hub(db_url: str, tmp_path: Path) -> Iterator[FastAPI]:
    app = create_app(HubSettings(db_url=db_url, data_dir=tmp_path / "hub"))
    seed_jobs_hub(app.state.hub)
    yield app
    app.state.hub.db.dispose()


def test_two_output_checkers_approving_at_once_both_count(hub: FastAPI) -> None:
    """The two-person rule: both approvals are counted and the outputs are released. Unlocked,
    each decision read no earlier review and neither released them."""
    state = hub.state.hub
    with state.db.read() as s:
        checkers = [accounts.principal_of(s.scalars(select(User).where(User.username == n))
                                          .one()) for n in ("oscar", "olga")]
    for _ in range(3):
        job = make_job(hub, state="awaiting_output_check", outputs=True, reviews=2)
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def decide(who: accounts.Principal, job_id: str = job.id,
                   start: threading.Barrier = start,
                   errors: list[BaseException] = errors) -> None:
            try:
                start.wait()
                checking.decide(state, who, job_id, decision="approve", comments="")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=decide, args=(c,)) for c in checkers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        with state.db.read() as s:
            got = s.get(Job, job.id)
            assert got is not None
            assert got.state == "released", got.state

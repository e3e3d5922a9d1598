"""Work items at the hub: one state machine, each step a register entry, one final state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from ndl.access.models import Org
from ndl.core.db import Database, utcnow
from ndl.core.envelope import MemoryReplayGuard, open_envelope
from ndl.core.errors import InvalidInput, NotFound
from ndl.core.keys import SigningKey
from ndl.federation import work
from ndl.federation.models import Datasite
from ndl.federation.work import Progress
from ndl.federation.work_models import WorkItem
from ndl.ledger.models import LedgerEntry
from ndl.work.views import WorkResult

KEY = SigningKey.generate()
SITE_KEY = SigningKey.generate()
RESULT = WorkResult(sha256="ab" * 32, size=10, media_type="text/csv", filename="x.csv", rows=2)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        s.add(Org(id="trust", name="Trust", kind="nhs"))
        s.flush()
        s.add(Datasite(id="site", org_id="trust", name="Site", public_key=SITE_KEY.public_b64))
        s.add(Datasite(id="other", org_id="trust", name="Other",
                       public_key=SigningKey.generate().public_b64))
    yield database
    database.dispose()


def _submit(db: Database, ttl: float = 3600.0) -> str:
    with db.write() as s:
        item = work.submit(s, KEY, kind="export", requester="user:alice", actor="alice",
                           datasite_id="site", dataset="site/data",
                           params={"format": "csv"}, ttl=ttl)
        return item.id


def _lease(db: Database, site: str = "site", lease: float = 8.0) -> list[dict[str, object]]:
    with db.write() as s:
        return work.lease(s, KEY, site, lease_seconds=lease, limit=10)


def _state(db: Database, wid: str) -> WorkItem:
    with db.read() as s:
        item = s.get(WorkItem, wid)
        assert item is not None
        s.expunge(item)
        return item


def _kinds(db: Database, wid: str) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(LedgerEntry.kind).where(LedgerEntry.subject == wid)
                              .order_by(LedgerEntry.seq)))


def test_an_item_walks_queued_leased_running_succeeded_with_a_register_entry_per_step(
        db: Database) -> None:
    wid = _submit(db)
    assert _state(db, wid).state == "queued"
    envs = _lease(db)
    assert len(envs) == 1
    opened = open_envelope(envs[0], public_key_for=lambda _s: KEY.public_b64, recipient="site",
                           guard=MemoryReplayGuard())
    assert opened["kind"] == "work" and opened["body"]["work_id"] == wid
    assert opened["body"]["params"] == {"format": "csv"}
    assert _state(db, wid).state == "leased"
    with db.write() as s:
        renewed, stop = work.heartbeat(s, KEY, "site", {wid: Progress(0.4, "40%")},
                                       lease_seconds=8.0)
    assert renewed == [wid] and stop == []
    item = _state(db, wid)
    assert (item.state, item.progress, item.progress_message) == ("running", 0.4, "40%")
    with db.write() as s:
        assert work.finish(s, KEY, "site", wid, ok=True, result=RESULT, error=None)
    item = _state(db, wid)
    assert item.state == "succeeded" and item.result == dict(RESULT.__dict__)
    assert _kinds(db, wid) == ["work.submitted", "work.started", "work.finished"]


def test_a_second_finish_is_ignored_so_a_result_is_delivered_once(db: Database) -> None:
    wid = _submit(db)
    _lease(db)
    with db.write() as s:
        assert work.finish(s, KEY, "site", wid, ok=True, result=RESULT, error=None)
    other = WorkResult(sha256="cd" * 32, size=1, media_type="x", filename="y")
    with db.write() as s:
        assert not work.finish(s, KEY, "site", wid, ok=True, result=other, error=None)
        assert not work.finish(s, KEY, "site", wid, ok=False, result=None,
                               error={"code": "internal_error", "message": "late"})
    assert _state(db, wid).result == dict(RESULT.__dict__)
    assert _kinds(db, wid).count("work.finished") == 1


def test_only_the_datasite_it_was_sent_to_may_finish_or_renew_it(db: Database) -> None:
    wid = _submit(db)
    _lease(db)
    with db.write() as s, pytest.raises(NotFound):
        work.finish(s, KEY, "other", wid, ok=True, result=RESULT, error=None)
    with db.write() as s:
        assert work.heartbeat(s, KEY, "other", {wid: Progress(0.9, "")},
                              lease_seconds=8) == ([], [])
    assert _state(db, wid).progress == 0.0


def test_a_lapsed_lease_is_redelivered_and_marked_so(db: Database) -> None:
    wid = _submit(db)
    _lease(db)
    assert _lease(db) == []  # leased and not lapsed: not handed out again
    with db.write() as s:
        item = s.get(WorkItem, wid)
        assert item is not None
        item.lease_until = utcnow() - timedelta(seconds=1)
    envs = _lease(db)
    assert len(envs) == 1
    item = _state(db, wid)
    assert item.attempts == 2 and item.redelivered


def test_cancel_is_final_at_once_and_the_heartbeat_tells_the_datasite_to_stop(
        db: Database) -> None:
    wid = _submit(db)
    _lease(db)
    with db.write() as s:
        work.heartbeat(s, KEY, "site", {wid: Progress(0.1, "")}, lease_seconds=8)
        item = s.get(WorkItem, wid)
        assert item is not None
        assert work.cancel(s, KEY, item, actor="alice", reason="changed my mind")
        assert not work.cancel(s, KEY, item, actor="alice", reason="again")
    with db.write() as s:
        renewed, stop = work.heartbeat(s, KEY, "site", {wid: Progress(0.5, "")},
                                       lease_seconds=8)
    assert renewed == [] and stop == [wid]
    with db.write() as s:  # the datasite's late answer changes nothing
        assert not work.finish(s, KEY, "site", wid, ok=True, result=RESULT, error=None)
    assert _state(db, wid).state == "cancelled"
    assert _kinds(db, wid).count("work.cancelled") == 1


def test_a_cancelled_queued_item_is_never_leased(db: Database) -> None:
    wid = _submit(db)
    with db.write() as s:
        item = s.get(WorkItem, wid)
        assert item is not None
        work.cancel(s, KEY, item, actor="alice", reason="no")
    assert _lease(db) == []


def test_items_past_their_deadline_expire_and_are_not_leased(db: Database) -> None:
    wid = _submit(db, ttl=-1)
    assert _lease(db) == []
    with db.write() as s:
        assert work.expire_due(s, KEY) == 1
        assert work.expire_due(s, KEY) == 0
    assert _state(db, wid).state == "expired"


def test_progress_never_runs_backwards_and_is_clamped(db: Database) -> None:
    wid = _submit(db)
    _lease(db)
    for frac in (0.6, 0.2):
        with db.write() as s:
            work.heartbeat(s, KEY, "site", {wid: Progress(frac, "")}, lease_seconds=8)
    assert _state(db, wid).progress == 0.6
    with db.write() as s:
        work.heartbeat(s, KEY, "site", work.parse_progress({wid: {"progress": 7}}),
                       lease_seconds=8)
    assert _state(db, wid).progress == 1.0


@pytest.mark.parametrize("raw", [
    {"w": {"progress": float("nan")}}, {"w": {"progress": "0.5"}}, {"w": {"progress": True}},
    {"w": {"message": 5}}, {"w": 3}, [1], {str(i): {} for i in range(1001)},
])
def test_malformed_progress_is_refused(raw: object) -> None:
    with pytest.raises(InvalidInput):
        work.parse_progress(raw)


def test_progress_is_clamped_and_its_message_cleaned() -> None:
    got = work.parse_progress({"w": {"progress": 3, "message": "a\x1b[2Jb" + "x" * 500}})
    assert got["w"].fraction == 1.0
    assert "\x1b" not in got["w"].message and len(got["w"].message) == work.MAX_MESSAGE


def test_the_register_names_hashes_not_parameters(db: Database) -> None:
    wid = _submit(db)
    with db.read() as s:
        entry = s.scalar(select(LedgerEntry).where(LedgerEntry.subject == wid))
        assert entry is not None
        assert entry.payload["params_sha256"] == work.params_hash({"format": "csv"})
        assert "csv" not in str(entry.payload)


def test_withdrawing_a_coordination_cancels_its_unfinished_items(db: Database) -> None:
    with db.write() as s:
        a = work.submit(s, KEY, kind="export", requester="user:alice", actor="alice",
                        datasite_id="site", dataset="site/data", params={},
                        coordination_id="c1")
        b = work.submit(s, KEY, kind="export", requester="user:alice", actor="alice",
                        datasite_id="site", dataset="site/data", params={},
                        coordination_id="c1")
        a_id, b_id = a.id, b.id
    _lease(db)
    with db.write() as s:
        work.finish(s, KEY, "site", a_id, ok=True, result=RESULT, error=None)
    with db.write() as s:
        assert work.cancel_for(s, KEY, coordination_id="c1", reason="party withdrew") == [b_id]
    assert _state(db, a_id).state == "succeeded" and _state(db, b_id).state == "cancelled"


def test_active_counts_the_leases_a_datasite_holds_not_lapsed_ones(db: Database) -> None:
    first, second = _submit(db), _submit(db)
    _lease(db)
    with db.read() as s:
        assert work.active(s, "site") == 2 and work.active(s, "other") == 0
    with db.write() as s:
        item = s.get(WorkItem, first)
        assert item is not None
        item.lease_until = utcnow() - timedelta(seconds=1)  # the datasite died with it
        work.finish(s, KEY, "site", second, ok=True, result=RESULT, error=None)
    with db.read() as s:
        assert work.active(s, "site") == 0

"""The hub's chores: overdue work expires, and one failing chore does not stop the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ndl.access.models import Org
from ndl.core.keys import SigningKey
from ndl.federation import work
from ndl.federation.models import Datasite
from ndl.federation.work_models import WorkItem
from ndl.hub import housekeeping
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings, HubState


@pytest.fixture
def state(tmp_path: Path) -> HubState:
    app = create_app(HubSettings(db_url=str(tmp_path / "hub.db"), data_dir=tmp_path))
    st: HubState = app.state.hub
    with st.db.write() as s:
        s.add(Org(id="o", name="O", kind="other"))
        s.flush()
        s.add(Datasite(id="o", org_id="o", name="O",
                       public_key=SigningKey.generate().public_b64))
    return st


def _item(state: HubState, ttl: float) -> str:
    with state.db.write() as s:
        return work.submit(s, state.key, kind="export", requester="user:a", actor="a",
                           datasite_id="o", dataset="o/d", params={}, ttl=ttl).id


def test_overdue_work_expires_and_the_rest_is_untouched(state: HubState) -> None:
    late, fine = _item(state, -1), _item(state, 3600)
    housekeeping._expire_work(state)
    with state.db.read() as s:
        assert s.get(WorkItem, late).state == "expired"  # type: ignore[union-attr]
        assert s.get(WorkItem, fine).state == "queued"  # type: ignore[union-attr]
    state.db.dispose()


def test_a_failing_chore_does_not_stop_the_next(state: HubState,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def broken(_: HubState) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(housekeeping, "CHORES", [("broken", broken),
                                                 ("next", lambda _s: ran.append("next"))])

    async def one_round() -> None:
        task = asyncio.create_task(housekeeping._forever(state, every=60))
        while not ran:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(one_round(), 10))
    assert ran == ["next"]
    state.db.dispose()


def test_one_process_at_a_time_does_the_chores_on_postgresql(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hub processes over one database: while one does a round, the other skips its."""
    settings = HubSettings(db_url=pg_url, data_dir=tmp_path)
    first: HubState = create_app(settings).state.hub
    second: HubState = create_app(settings, migrate=False).state.hub
    ran: list[str] = []
    monkeypatch.setattr(housekeeping, "CHORES", [("note", lambda st: ran.append(
        "first" if st is first else "second"))])
    try:
        with housekeeping._only_one_process(first) as mine:
            assert mine
            assert housekeeping._round(second, 60) is False   # the first holds the lock
        assert housekeeping._round(second, 60) is True        # released: the second may
        assert housekeeping._round(first, 60) is True
        assert ran == ["second", "first"]
    finally:
        first.db.dispose()
        second.db.dispose()

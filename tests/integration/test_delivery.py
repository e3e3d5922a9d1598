"""Nothing lost, nothing done twice: a datasite's answers survive a hub crash.

The agent runs in this process (so the test can stop the hub at the worst moment) against a
real hub process; the engine is wrapped only to count how often it runs.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ndl.client import Client
from ndl.core.db import utcnow
from ndl.core.errors import NdlError, UpstreamUnavailable
from ndl.datasite import engine as duckdb_engine
from ndl.datasite.agent import Agent
from ndl.datasite.store import DatasiteStore
from ndl.federation.models import Message
from ndl.testing import HubProcess


def test_an_answer_survives_a_hub_crash_and_is_never_recomputed(
    tmp_path: Path, small_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = HubProcess(tmp_path / "hub", extra_args=["--query-timeout", "30"])
    hub.create_org("nhs-trust", "NHS", "nhs")
    steward = hub.create_user("sam", ["steward"], org="nhs-trust")
    researcher = hub.create_user("alice", ["researcher"])
    runs: list[Any] = []
    real = duckdb_engine.count_by

    def counted(*args: Any) -> Any:
        runs.append(args)
        return real(*args)

    monkeypatch.setattr(duckdb_engine, "count_by", counted)
    with hub:
        agent = Agent(DatasiteStore(small_site), hub.url, datasite_id="nhs-trust",
                      org="nhs-trust", token=steward, poll_wait=1)
        agent.register()
        agent.publish()

        def ask() -> None:
            try:
                with Client(hub.url, researcher) as c:
                    c.query("nhs-trust/ward-population", count_by="ward")
            except NdlError:
                pass  # the hub dies under this request; that is the point

        asker = threading.Thread(target=ask)
        asker.start()
        leased = agent._post("/api/federation/poll", "poll", {"wait": 10})["messages"]
        assert len(leased) == 1
        envelope = leased[0]
        message_id = envelope["body"]["message_id"]

        hub.kill()  # the worst moment: the work is done here but the hub never hears of it
        asker.join(timeout=20)
        with pytest.raises(UpstreamUnavailable):
            agent.handle(envelope)
        assert len(runs) == 1
        assert [m for m, _ in agent.store.unsent()] == [message_id]

        hub.start()
        agent.poll_once(wait=0)  # first flushes the stored reply
        assert len(runs) == 1 and agent.store.unsent() == []
        with hub.db.read() as s:
            msg = s.get(Message, message_id)
            assert msg is not None and msg.state == "answered"
            assert msg.reply is not None and msg.reply["result"]["rows"][0] == ["A", 1]

        # The same envelope again (a replay) is refused outright.
        agent.handle(envelope)
        assert len(runs) == 1

        # The hub offering the message again (say its lease ran out) gets the stored answer.
        with hub.db.write() as s:
            m = s.get(Message, message_id)
            assert m is not None
            m.state, m.lease_until = "leased", utcnow() - timedelta(seconds=5)
            m.deadline = utcnow() + timedelta(seconds=30)
        assert agent.poll_once(wait=0) == 1
        assert agent.pool.wait_idle(10)  # the work runs in the pool, off the poll loop
        assert len(runs) == 1
        with hub.db.read() as s:
            m = s.get(Message, message_id)
            assert m is not None and m.state == "answered"
        agent.close()

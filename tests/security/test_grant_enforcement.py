"""The datasite checks every grant itself: forged, altered, expired, revoked, other-project,
other-dataset and non-member grants are refused before any data is touched."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ndl.access.grants import sign_grant
from ndl.core.keys import SigningKey
from ndl.datasite.agent import Agent
from ndl.datasite.store import DatasiteStore
from ndl.testing import write_dataset

HUB = SigningKey.generate()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    root = tmp_path / "site"
    # Safeguarded: the tier whose work (private queries, budgets) runs under a grant today.
    write_dataset(root, "patients", pa.table({"region": ["A"] * 20}), tier="safeguarded")
    write_dataset(root, "wards", pa.table({"ward": ["A", "B"]}), tier="open")
    store = DatasiteStore(root)
    store.save_config(hub_key=HUB.public_b64, registered=True)
    a = Agent(store, "http://127.0.0.1:9", datasite_id="nhs-trust", org="nhs-trust")
    yield a
    a.close()


def grant(key: SigningKey = HUB, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    args: dict[str, Any] = {"grant_id": "g-1", "project": "p-1", "dataset": "nhs-trust/patients",
                            "tier": "safeguarded", "members": ["alice"], "issued_at": now - 10,
                            "expires_at": now + 3600, **over}
    return sign_grant(key, **args)


def ask(agent: Agent, doc: Any, *, project: str = "p-1", who: str = "alice",
        dataset: str = "patients") -> dict[str, Any]:
    return agent.answer("budget.status", {"dataset": dataset, "project": project,
                                          "requested_by": who, "grant": doc})


def test_a_valid_grant_is_accepted(agent: Agent) -> None:
    reply = ask(agent, grant())
    assert reply["ok"] and reply["result"]["budget_remaining"]["researcher"] > 0


@pytest.mark.parametrize("doc,words", [
    (None, "no valid grant"),
    ({}, "no valid grant"),
    (grant(key=SigningKey.generate()), "not signed by the hub"),
    (grant(expires_at=int(time.time()) - 1), "expired"),
    (grant(dataset="nhs-trust/other"), "the grant is for"),
    (grant(project="p-2"), "belongs to project p-2"),
    (grant(members=["mallory"]), "not on the grant"),
])
def test_bad_grants_are_refused(agent: Agent, doc: Any, words: str) -> None:
    reply = ask(agent, doc)
    assert not reply["ok"] and reply["error"]["code"] == "permission_denied"
    assert words in reply["error"]["message"]


def test_an_altered_grant_is_refused(agent: Agent) -> None:
    doc = grant()
    doc["members"] = ["alice", "mallory"]  # widen it after signing
    reply = ask(agent, doc, who="mallory")
    assert not reply["ok"] and "not signed by the hub" in reply["error"]["message"]


def test_a_revoked_grant_is_refused_even_if_the_hub_sends_it(agent: Agent) -> None:
    agent.answer("grant.revoked", {"dataset": "patients", "grant_id": "g-1"})
    reply = ask(agent, grant())
    assert not reply["ok"] and "revoked" in reply["error"]["message"]


def test_open_data_needs_no_grant(agent: Agent) -> None:
    reply = agent.answer("query", {"dataset": "wards", "spec": {"by": ["ward"]},
                                   "requested_by": "anonymous"})
    assert reply["ok"] and reply["result"]["rows"] == [["A", 1], ["B", 1]]


def test_exact_counts_of_granted_data_are_refused_even_with_a_valid_grant(agent: Agent) -> None:
    reply = agent.answer("query", {"dataset": "patients", "spec": {"by": ["region"]},
                                   "project": "p-1", "requested_by": "alice", "grant": grant()})
    assert not reply["ok"] and "only for open data" in reply["error"]["message"]


def test_open_sql_on_non_open_data_is_refused_at_the_datasite(agent: Agent) -> None:
    reply = agent.answer("open_sql", {"dataset": "patients", "sql": "SELECT * FROM data"})
    assert not reply["ok"] and "only for open data" in reply["error"]["message"]

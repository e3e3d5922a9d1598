"""Attacks on work items through the hub's routes (in-process app, real routes and database).

* Someone else's item: seeing, following, cancelling or fetching it is a 404 worded exactly
  like an id that does not exist, so an id's existence is never told.
* Items started without signing in are reached by their unguessable id alone and are never
  listed, to anyone.
* Malformed ids, unknown kinds, extra parameters, and huge, negative, NaN, fractional or
  non-number limits are refused with a message naming the problem, and queue nothing.
* Cancelling a finished item changes nothing; cancelling twice records one cancel.
* Anonymous submissions share the open-data budget per address; bodies over the limit are
  refused before they are read.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from ndl.access import accounts
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.db import utcnow
from ndl.core.keys import SigningKey
from ndl.federation.models import Datasite
from ndl.federation.work_models import WorkItem
from ndl.hub.app import create_app
from ndl.hub.state import HubSettings
from ndl.ledger.models import LedgerEntry

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OPEN, SAFE = "la/wards", "la/people"
BURST = 8  # anonymous submissions allowed at once (the open-data budget per address)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    folder = tmp_path_factory.mktemp("work-attacks")
    app = create_app(HubSettings(db_url=str(folder / "hub.db"), data_dir=folder,
                                 anonymous_sql_burst=BURST, anonymous_sql_per_minute=0.001))
    state = app.state.hub
    with state.db.write() as s:
        accounts.create_org(s, "la", "A local authority", "local_authority")
        site = Datasite(id="la", org_id="la", name="LA datasite",
                        public_key=SigningKey.generate().public_b64)
        s.add(site)
        s.flush()
        catalogue.publish(s, state.key, site, [
            DatasetMeta.model_validate({"name": "wards", "title": "Wards", "tier": "open",
                                        "publisher": "LA", "columns": [
                                            {"name": "ward", "type": "string"}]}),
            DatasetMeta.model_validate({"name": "people", "title": "People",
                                        "tier": "safeguarded", "publisher": "LA",
                                        "columns": [{"name": "age", "type": "integer"}]}),
        ])
        tokens = {}
        for name, roles in (("alice", ["researcher"]), ("bob", ["researcher"]),
                            ("ada", ["admin"])):
            user = accounts.create_user(s, name, roles=roles)
            tokens[name] = accounts.issue_token(s, user, name="test")
    app.state.test_tokens = tokens
    yield app
    state.db.dispose()


def as_(app: FastAPI, who: str | None) -> TestClient:
    headers = {"Authorization": f"Bearer {app.state.test_tokens[who]}"} if who else {}
    return TestClient(app, raise_server_exceptions=False, headers=headers)


def submit(app: FastAPI, who: str | None, **params: Any) -> str:
    with as_(app, who) as c:
        r = c.post("/api/work", json={"kind": "export", "dataset": OPEN,
                                      "params": params or {"format": "csv"}})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def counts(app: FastAPI) -> tuple[int, int]:
    """Work items, and register entries about work: nothing may change on a refusal."""
    with app.state.hub.db.read() as s:
        return (s.scalar(select(func.count()).select_from(WorkItem)) or 0,
                s.scalar(select(func.count()).select_from(LedgerEntry)
                         .where(LedgerEntry.kind.like("work.%"))) or 0)


def item(app: FastAPI, work_id: str) -> WorkItem:
    with app.state.hub.db.read() as s:
        found = s.get(WorkItem, work_id)
        assert found is not None
        s.expunge(found)
        return found


ROUTES = [("GET", ""), ("GET", "/events"), ("POST", "/cancel"), ("GET", "/result")]


def _no_such(message: str, work_id: str) -> str:
    return message.replace(work_id, "<id>")


@pytest.mark.parametrize(("method", "suffix"), ROUTES)
def test_someone_elses_item_is_not_found_like_a_missing_one(app: FastAPI, method: str,
                                                          suffix: str) -> None:
    work_id = submit(app, "alice")
    missing = str(uuid.uuid4())
    before = counts(app)
    with as_(app, "bob") as bob:
        theirs = bob.request(method, f"/api/work/{work_id}{suffix}")
        nothing = bob.request(method, f"/api/work/{missing}{suffix}")
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.headers["content-type"].startswith("application/json")
    assert _no_such(theirs.json()["error"]["message"], work_id) == \
        _no_such(nothing.json()["error"]["message"], missing)
    assert item(app, work_id).state == "queued" and counts(app) == before
    with as_(app, "alice") as alice:
        assert alice.get(f"/api/work/{work_id}").status_code == 200


def test_an_admin_may_look_but_a_signed_out_caller_may_not(app: FastAPI) -> None:
    work_id = submit(app, "alice")
    with as_(app, "ada") as ada:
        assert ada.get(f"/api/work/{work_id}").json()["id"] == work_id
    with as_(app, None) as anonymous:
        assert anonymous.get(f"/api/work/{work_id}").status_code == 404
        assert anonymous.post(f"/api/work/{work_id}/cancel").status_code == 404
    assert item(app, work_id).state == "queued"


def test_anonymous_items_are_reached_by_id_and_never_listed(app: FastAPI) -> None:
    work_id = submit(app, None)
    assert item(app, work_id).requester == "anonymous"
    with as_(app, None) as anonymous:
        assert anonymous.get("/api/work").status_code == 401
        assert anonymous.get(f"/api/work/{work_id}").status_code == 200
    for who in ("alice", "bob", "ada"):
        with as_(app, who) as c:
            listed = c.get("/api/work", params={"limit": 1000}).json()["work"]
            assert work_id not in {w["id"] for w in listed}
            # The link is the capability: whoever holds it sees the same item.
            assert c.get(f"/api/work/{work_id}").json()["state"] == "queued"
    with app.state.hub.db.read() as s:
        entry = s.scalars(select(LedgerEntry).where(LedgerEntry.subject == work_id,
                                                    LedgerEntry.kind == "work.submitted")).one()
    assert entry.actor == "anonymous"
    assert "csv" not in json.dumps(entry.payload)  # the parameters' hash, not the parameters


@pytest.mark.parametrize("bad", [
    "x", "0" * 37, "%2e%2e", "a" * 5000, "' OR '1'='1", "é" * 10, "..%2f..%2fapi%2fme",
    "8842A7BF-E9CF-4958-BEEE-C47F25EA3D4C", "00000000-0000-0000-0000-000000000000",
])
def test_malformed_ids_are_404s_not_crashes(app: FastAPI, bad: str) -> None:
    with as_(app, "alice") as c:
        for method, suffix in ROUTES:
            r = c.request(method, f"/api/work/{bad}{suffix}")
            assert r.status_code == 404, (method, suffix, r.status_code, r.text[:200])
            # An encoded slash leaves the work routes: then it is no page at all.
            message = r.json()["error"]["message"]
            assert "no work item" in message or "no such page" in message, message


@pytest.mark.parametrize(("body", "words"), [
    ({"kind": "delete", "dataset": OPEN}, "unknown kind of work 'delete'; the kinds are export"),
    ({"kind": "EXPORT", "dataset": OPEN}, "unknown kind of work 'EXPORT'"),
    ({"kind": "", "dataset": OPEN}, "unknown kind of work ''"),
    ({"kind": "x" * 41, "dataset": OPEN}, "kind"),
    ({"kind": "export", "dataset": OPEN, "priority": 1}, "priority"),
    ({"kind": "export", "dataset": OPEN, "params": {"format": "csv", "sql": "DROP"}},
     "sql: extra inputs are not permitted"),
    ({"kind": "export", "dataset": OPEN, "params": {"format": "xlsx"}},
     "format: input should be 'parquet' or 'csv'"),
    ({"kind": "export", "dataset": OPEN, "params": {"limit": 10**30}},
     "limit: input should be less than or equal to"),
    ({"kind": "export", "dataset": OPEN, "params": {"limit": -5}},
     "limit: input should be greater than or equal to 1"),
    ({"kind": "export", "dataset": OPEN, "params": {"limit": 0}},
     "limit: input should be greater than or equal to 1"),
    ({"kind": "export", "dataset": OPEN, "params": {"limit": 1.5}}, "limit: input should be"),
    ({"kind": "export", "dataset": OPEN, "params": {"limit": "10"}},
     "limit: input should be a valid integer"),
    ({"kind": "export", "dataset": OPEN, "params": {"limit": True}},
     "limit: input should be a valid integer"),
    ({"kind": "export", "dataset": OPEN, "params": []}, "params"),
    ({"kind": "export"}, "dataset"),
], ids=lambda v: str(v)[:60])
def test_bad_requests_are_refused_clearly_and_queue_nothing(app: FastAPI, body: Any,
                                                            words: str) -> None:
    before = counts(app)
    with as_(app, "alice") as c:
        r = c.post("/api/work", json=body)
    assert r.status_code == 422, r.text
    assert words in json.dumps(r.json()), r.json()
    assert counts(app) == before


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_limits_are_refused(app: FastAPI, raw: str) -> None:
    before = counts(app)
    body = f'{{"kind": "export", "dataset": "{OPEN}", "params": {{"limit": {raw}}}}}'
    with as_(app, "alice") as c:
        r = c.post("/api/work", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "limit" in r.text
    assert counts(app) == before


@pytest.mark.parametrize("dataset", ["../la/wards", "la/wards/../people", "la/" + "w" * 300,
                                     "la/no-such-data", "la", ""])
def test_datasets_that_are_not_there_queue_nothing(app: FastAPI, dataset: str) -> None:
    before = counts(app)
    with as_(app, "alice") as c:
        r = c.post("/api/work", json={"kind": "export", "dataset": dataset})
    assert r.status_code in (404, 422), r.text
    assert counts(app) == before


@pytest.mark.parametrize("who", [None, "alice", "ada"])
def test_non_open_data_is_refused_in_the_tiers_words(app: FastAPI, who: str | None) -> None:
    before = counts(app)
    with as_(app, who) as c:
        r = c.post("/api/work", json={"kind": "export", "dataset": SAFE})
    assert r.status_code == 403
    assert ("la/people is safeguarded data: downloading rows is only for open data"
            in r.json()["error"]["message"])
    assert counts(app) == before


def _finish(app: FastAPI, work_id: str, state: str) -> None:
    """Make an item final as the datasite's answer would."""
    with app.state.hub.db.write() as s:
        found = s.get(WorkItem, work_id)
        assert found is not None
        found.state, found.finished_at = state, utcnow()
        if state == "succeeded":
            found.progress = 1.0
            found.result = {"sha256": "cd" * 32, "size": 10, "media_type": "text/csv",
                            "filename": "wards.csv", "rows": 2}
        else:
            found.error = {"code": "internal_error", "message": "it broke"}


@pytest.mark.parametrize("state", ["succeeded", "failed"])
def test_cancelling_a_finished_item_changes_nothing(app: FastAPI, state: str) -> None:
    work_id = submit(app, "alice")
    _finish(app, work_id, state)
    before, was = counts(app), item(app, work_id)
    with as_(app, "alice") as c:
        r = c.post(f"/api/work/{work_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == state
    now = item(app, work_id)
    assert (now.state, now.finished_at, now.result, now.error, now.cancel_reason) == (
        was.state, was.finished_at, was.result, was.error, was.cancel_reason)
    assert counts(app) == before


def test_cancelling_twice_records_one_cancel(app: FastAPI) -> None:
    work_id = submit(app, "alice")
    with as_(app, "alice") as c:
        first = c.post(f"/api/work/{work_id}/cancel").json()
        finished = item(app, work_id).finished_at
        second = c.post(f"/api/work/{work_id}/cancel").json()
    assert first["state"] == second["state"] == "cancelled"
    assert item(app, work_id).finished_at == finished
    with app.state.hub.db.read() as s:
        cancels = s.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.subject == work_id, LedgerEntry.kind == "work.cancelled"))
    assert cancels == 1


def test_no_result_before_success(app: FastAPI) -> None:
    work_id = submit(app, "alice")
    with as_(app, "alice") as c:
        early = c.get(f"/api/work/{work_id}/result")
        assert early.status_code == 422 and "it is still queued" in early.text
        c.post(f"/api/work/{work_id}/cancel")
        late = c.get(f"/api/work/{work_id}/result")
        assert late.status_code == 422 and "it was cancelled" in late.text


def test_a_succeeded_item_whose_blob_is_gone_says_so(app: FastAPI) -> None:
    work_id = submit(app, "alice")
    _finish(app, work_id, "succeeded")  # names a blob the hub never held
    with as_(app, "alice") as c:
        r = c.get(f"/api/work/{work_id}/result")
    assert r.status_code == 404 and "no longer held" in r.json()["error"]["message"]


def test_an_oversized_body_is_refused_before_it_is_read(app: FastAPI) -> None:
    before = counts(app)
    huge = {"kind": "export", "dataset": OPEN, "params": {"pad": "x" * 3_000_000}}
    with as_(app, "alice") as c:
        r = c.post("/api/work", json=huge)
    assert r.status_code == 413
    assert counts(app) == before


def test_anonymous_submissions_share_the_open_data_budget(app: FastAPI) -> None:
    # Other tests spent some of this address's budget; spend the rest, then one more.
    with as_(app, None) as anonymous:
        codes = [anonymous.post("/api/work", json={"kind": "export", "dataset": OPEN}
                                ).status_code for _ in range(BURST + 1)]
        refused = anonymous.post("/api/work", json={"kind": "export", "dataset": OPEN})
    assert codes.count(202) <= BURST and 429 in codes
    assert refused.status_code == 429
    assert "anonymous downloads" in refused.json()["error"]["message"]
    with as_(app, "alice") as alice:  # signed-in callers are accountable, not limited here
        assert alice.post("/api/work", json={"kind": "export", "dataset": OPEN}
                          ).status_code == 202

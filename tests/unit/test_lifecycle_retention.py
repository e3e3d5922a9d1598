"""Retention, as the hub's housekeeping enforces it, on SQLite and PostgreSQL: a dataset past
its ``retain_until`` date is withdrawn (out of search) and its deletion asked of its
datasite; a project past its end date plus retention is closed (grants revoked), and a closed
project's outputs expire once its retention passes. Also: withdrawing one dataset leaves the
others in search, and a republication does not bring a withdrawn dataset back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from ndl.access import accounts, closure
from ndl.access.project_models import AccessRequest, Grant, Project, RequestItem
from ndl.catalogue import lifecycle
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.catalogue.search import search
from ndl.core.db import Database, utcnow
from ndl.core.errors import Conflict
from ndl.core.keys import SigningKey
from ndl.federation.lifecycle_models import DeletionRecord, ProjectClosure
from ndl.federation.models import Datasite, Message
from ndl.ledger.models import LedgerEntry

KEY = SigningKey.generate()


def _meta(name: str, **extra: object) -> DatasetMeta:
    return DatasetMeta.model_validate({
        "name": name, "title": f"Hospital {name}", "publisher": "x", "tier": "safeguarded",
        "row_count": 3, "columns": [{"name": "n", "type": "integer"}], **extra})


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        accounts.create_org(s, "nhs-trust", "Northshire NHS Trust", "nhs")
        owner = accounts.create_user(s, "alice", roles=["researcher"])
        site = Datasite(id="nhs-trust", org_id="nhs-trust", name="NHS",
                        public_key=SigningKey.generate().public_b64)
        s.add(site)
        s.flush()
        yesterday = (date.today() - timedelta(days=1)).isoformat()
        catalogue.publish(s, KEY, site, [_meta("expired", retain_until=yesterday),
                                         _meta("kept", retain_until="2999-01-01"),
                                         _meta("forever")])
        for pid, end, days in (("old", date.today() - timedelta(days=10), 5),
                               ("young", date.today() - timedelta(days=10), 30),
                               ("live", date.today() + timedelta(days=100), None)):
            s.add(Project(id=pid, title=pid, purpose="p" * 30, purpose_category="research",
                          lay_summary="l" * 20, legal_basis="public-task",
                          owner_id=owner.id, end_date=end, retention_days=days))
        s.flush()
        req = AccessRequest(project_id="old", requested_by=owner.id)
        s.add(req)
        s.flush()
        item = RequestItem(request_id=req.id, dataset_id="nhs-trust/kept", org_id="nhs-trust",
                           tier="safeguarded", state="granted")
        s.add(item)
        s.flush()
        s.add(Grant(id="g-old", project_id="old", dataset_id="nhs-trust/kept", item_id=item.id,
                    tier="safeguarded", expires_at=utcnow() + timedelta(days=30),
                    document={}))
    yield database
    database.dispose()


def _ids(db: Database, q: str | None = None) -> set[str]:
    with db.read() as s:
        found = search(s, q, limit=50)
        assert found.total == len(found.items)  # counts agree with what is listed
        return {d.id for d in found.items}


def test_datasets_past_retention_are_withdrawn_and_their_deletion_asked(db: Database) -> None:
    assert _ids(db) == {"nhs-trust/expired", "nhs-trust/kept", "nhs-trust/forever"}
    with db.write() as s:
        assert lifecycle.enforce_retention(s, KEY) == ["nhs-trust/expired"]
    assert _ids(db) == {"nhs-trust/kept", "nhs-trust/forever"}
    assert _ids(db, "hospital") == {"nhs-trust/kept", "nhs-trust/forever"}  # text index too
    with db.read() as s:
        ds = catalogue.get_dataset(s, "nhs-trust/expired")
        assert ds.withdrawn_at is not None and "retention" in (ds.withdrawn_reason or "")
        with pytest.raises(Conflict, match="withdrawn"):
            lifecycle.require_live(ds)
        (rec,) = s.scalars(select(DeletionRecord)).all()
        assert (rec.dataset_id, rec.state, rec.requested_by) == (
            "nhs-trust/expired", "requested", "hub")
        msg = s.get(Message, rec.message_id)
        assert msg is not None and msg.kind == "dataset.delete"
        assert msg.body == {"dataset": "expired", "deletion_id": rec.id}
        kinds = [e.kind for e in s.scalars(select(LedgerEntry).order_by(LedgerEntry.seq))]
        assert kinds[-2:] == ["dataset.withdrawn", "dataset.deletion_requested"]
    with db.write() as s:  # a second round finds nothing more to do
        assert lifecycle.enforce_retention(s, KEY) == []
        # The datasite publishing its folder again does not bring it back.
        site = s.get(Datasite, "nhs-trust")
        assert site is not None
        out = catalogue.publish(s, KEY, site, [_meta("expired", description="again")])
        assert out[0]["withdrawn"] is True
    assert "nhs-trust/expired" not in _ids(db)


def test_projects_past_end_and_retention_are_closed_then_their_outputs_expire(
        db: Database) -> None:
    with db.write() as s:
        closed, expired = closure.enforce_retention(s, KEY)
        assert (closed, expired) == (["old"], [])
    with db.read() as s:
        g = s.get(Grant, "g-old")
        assert g is not None and g.revoked_at is not None and "closed" in g.revoked_reason
        c = s.get(ProjectClosure, "old")
        assert c is not None and c.closed_by == "hub"
        with pytest.raises(Conflict, match="closed"):
            closure.require_open(s, "old")
        closure.require_open(s, "young")  # still within its retention
        closure.require_outputs_kept(s, "old")  # outputs kept for its retention period
    with db.write() as s:  # its retention passes
        c = s.get(ProjectClosure, "old")
        assert c is not None
        c.outputs_until = utcnow() - timedelta(seconds=1)
    with db.write() as s:
        assert closure.enforce_retention(s, KEY) == ([], ["old"])
    with db.read() as s, pytest.raises(Conflict, match="outputs expired"):
        closure.require_outputs_kept(s, "old")

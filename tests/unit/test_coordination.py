"""The k-of-n coordination state machine (ndl.federation.coordination), on a real database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ndl.access import service as access_service
from ndl.access.accounts import Principal, principal_of
from ndl.access.models import User
from ndl.core.db import Database, utcnow
from ndl.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.core.sealed import EncryptionKey
from ndl.federation import coordination as coord
from ndl.federation import parties, work
from ndl.federation import service as federation
from ndl.federation.blob_models import Blob
from ndl.federation.party_models import Coordination
from ndl.ledger import register
from ndl.ledger.models import LedgerEntry
from ndl.ledger.sentences import sentence

PARAMS = hashlib.sha256(b"linkage spec v1").hexdigest()
OTHER = hashlib.sha256(b"something else").hexdigest()
SITES = ("datasite:nhs", "datasite:dfe")
ENCLAVE = "party:enclave-1"


@dataclass
class World:
    db: Database
    key: SigningKey
    requester: Principal
    stranger: Principal
    ids: dict[str, parties.PartyIdentity]


def _user(s: object, key: SigningKey, name: str, roles: list[str], org: str | None = None
          ) -> Principal:
    made = access_service.create_user(s, key, access_service.Operator("test"),  # type: ignore
                                      access_service.NewUser(username=name, roles=roles,
                                                             org=org))
    user = s.get(User, made.user_id)  # type: ignore[attr-defined]
    return principal_of(user)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = Database(str(tmp_path / "hub.db"))
    db.migrate()
    key = SigningKey.generate()
    with db.write() as s:
        for org in ("nhs", "dfe"):
            access_service.create_org(s, key, access_service.Operator("test"),
                                      access_service.NewOrg(id=org, name=org, kind="other"))
        admin = _user(s, key, "root", ["admin"])
        requester = _user(s, key, "alice", ["researcher"])
        stranger = _user(s, key, "mallory", ["researcher"])
        for site in ("nhs", "dfe"):
            federation.register_datasite(s, key, admin, datasite_id=site, org_id=site,
                                         name=site, public_key=SigningKey.generate().public_b64)
        ekey = SigningKey.generate()
        parties.register_party(s, key, admin, party_id="enclave-1", kind="enclave",
                               org_id="nhs", name="Enclave",
                               public_key=ekey.public_b64,
                               encryption_key=EncryptionKey.generate().public_b64, proof={})
        ids = {p: parties.identity(s, p) for p in (*SITES, ENCLAVE)}
    yield World(db, key, requester, stranger, {k: v for k, v in ids.items() if v})
    db.dispose()


def _create(w: World, *, k: int = 2, contributors: tuple[str, ...] = SITES) -> str:
    with w.db.write() as s:
        v = coord.create(s, w.key, w.requester, coord.NewCoordination(
            purpose="Link A&E visits to school records", parties=[*SITES, ENCLAVE],
            approvals_needed=k, params_sha256=PARAMS, contributors=list(contributors)))
    return v.id


def _approve(w: World, party: str, cid: str, digest: str = PARAMS) -> coord.Approval:
    with w.db.write() as s:
        return coord.approve(s, w.key, w.ids[party], cid, digest)


def _blob(w: World, owner: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    with w.db.write() as s:
        s.add(Blob(sha256=digest, size=len(data), kind="sealed", media_type="x", owner=owner,
                   state="complete", expires_at=utcnow() + timedelta(days=1)))
    return digest


def _entries(w: World, kind: str) -> list[LedgerEntry]:
    with w.db.read() as s:
        rows = list(register.list_entries(s, kind=kind, limit=1000))
        for r in rows:
            s.expunge(r)
        return rows


def test_two_of_three_approvals_then_contributions_then_ready_and_complete(w: World) -> None:
    cid = _create(w)
    first = _approve(w, "datasite:nhs", cid)
    assert first.counted and first.view.state == coord.WAITING and first.view.approvals == 1
    assert {x.party for x in first.view.waiting_on} == {"datasite:dfe", ENCLAVE}
    assert "1 more approval" in first.view.summary
    second = _approve(w, ENCLAVE, cid)
    assert second.view.state == coord.COLLECTING
    assert [(x.party, x.waiting_for) for x in second.view.waiting_on] == [
        ("datasite:dfe", "contribution"), ("datasite:nhs", "contribution")]
    # A third approval is not needed and changes nothing.
    assert not _approve(w, "datasite:dfe", cid).counted
    with w.db.write() as s:
        v = coord.contribute(s, w.key, w.ids["datasite:nhs"], cid, _blob(w, "datasite:nhs",
                                                                             b"nhs sealed"))
    assert v.state == coord.COLLECTING and [x.party for x in v.waiting_on] == ["datasite:dfe"]
    with w.db.write() as s:
        v = coord.contribute(s, w.key, w.ids["datasite:dfe"], cid, _blob(w, "datasite:dfe",
                                                                             b"dfe sealed"))
    assert v.state == coord.READY and v.waiting_on == []
    result = hashlib.sha256(b"aggregates").hexdigest()
    with w.db.write() as s:
        v = coord.complete(s, w.key, w.ids[ENCLAVE], cid, result)
    assert v.state == coord.COMPLETE and v.result_sha256 == result
    approved = _entries(w, "work.approved")
    assert [e.actor for e in approved] == ["datasite:nhs", ENCLAVE]
    assert all(e.payload["params_sha256"] == PARAMS for e in approved)
    submitted = [e for e in _entries(w, "work.submitted") if e.subject == f"coordination:{cid}"]
    assert len(submitted) == 1 and submitted[0].payload["params_sha256"] == PARAMS
    assert "Link A&E" not in str(submitted[0].payload)  # hashes, not content
    assert "coordinated work" in sentence("work.approved", approved[0].actor,
                                          approved[0].subject, approved[0].payload)


def test_no_contributors_means_ready_as_soon_as_approved(w: World) -> None:
    cid = _create(w, k=1, contributors=())
    assert _approve(w, ENCLAVE, cid).view.state == coord.READY


def test_approving_twice_counts_once(w: World) -> None:
    cid = _create(w, k=3)
    assert _approve(w, "datasite:nhs", cid).counted
    again = _approve(w, "datasite:nhs", cid)
    assert not again.counted and again.view.approvals == 1
    assert again.view.state == coord.WAITING
    assert len(_entries(w, "work.approved")) == 1


def test_approval_must_name_the_exact_work(w: World) -> None:
    cid = _create(w)
    with pytest.raises(Conflict, match="check what you were asked to approve"):
        _approve(w, "datasite:nhs", cid, OTHER)
    with pytest.raises(InvalidInput, match="SHA-256"):
        _approve(w, "datasite:nhs", cid, "not-a-hash")


def test_contributions_wait_for_approvals_and_only_from_contributors(w: World) -> None:
    cid = _create(w)
    digest = _blob(w, "datasite:nhs", b"early")
    with w.db.write() as s, pytest.raises(Conflict, match="once the approvals are in"):
        coord.contribute(s, w.key, w.ids["datasite:nhs"], cid, digest)
    _approve(w, "datasite:nhs", cid)
    _approve(w, "datasite:dfe", cid)
    with w.db.write() as s, pytest.raises(PermissionDenied, match="not expected"):
        coord.contribute(s, w.key, w.ids[ENCLAVE], cid, _blob(w, ENCLAVE, b"x"))
    with w.db.write() as s, pytest.raises(NotFound, match="upload it"):
        coord.contribute(s, w.key, w.ids["datasite:nhs"], cid, OTHER)
    with w.db.write() as s, pytest.raises(PermissionDenied, match="not yours"):
        coord.contribute(s, w.key, w.ids["datasite:nhs"], cid, _blob(w, "datasite:dfe", b"d"))


def test_withdrawal_stops_the_work_and_its_items(w: World) -> None:
    cid = _create(w)
    with w.db.write() as s:
        item = work.submit(s, w.key, kind="export", requester="user:alice", actor="user#2",
                           datasite_id="nhs", dataset="visits", params={"format": "csv"},
                           coordination_id=cid)
        item_id = item.id
    _approve(w, "datasite:nhs", cid)
    with w.db.write() as s:
        v = coord.withdraw(s, w.key, w.ids["datasite:dfe"], cid, "our board said no")
    assert v.state == coord.WITHDRAWN and "datasite:dfe withdrew" in v.reason
    assert v.waiting_on == []
    with w.db.read() as s:
        assert work.get(s, item_id).state == "cancelled"
    cancelled = [e for e in _entries(w, "work.cancelled")
                 if e.subject == f"coordination:{cid}"]
    assert len(cancelled) == 1 and cancelled[0].payload["work_items_cancelled"] == 1
    # Stopped means stopped: no approval, contribution or completion moves it again.
    with pytest.raises(Conflict, match="withdrawn"):
        _approve(w, ENCLAVE, cid)
    with w.db.write() as s, pytest.raises(Conflict, match="withdrawn"):
        coord.complete(s, w.key, w.ids[ENCLAVE], cid, OTHER)


def test_inspection_is_for_the_requester_and_the_parties_only(w: World) -> None:
    cid = _create(w)
    with w.db.write() as s:
        assert coord.inspect_for_user(s, w.key, w.requester, cid).id == cid
        assert coord.inspect_for_party(s, w.key, w.ids[ENCLAVE], cid).id == cid
        with pytest.raises(PermissionDenied, match="only the requester and the parties"):
            coord.inspect_for_user(s, w.key, w.stranger, cid)
        with pytest.raises(NotFound):
            coord.inspect_for_user(s, w.key, w.requester, "no-such-id")
    with w.db.write() as s:
        other = coord.create(s, w.key, w.requester, coord.NewCoordination(
            purpose="Only NHS", parties=["datasite:nhs"], approvals_needed=1,
            params_sha256=PARAMS))
    with w.db.write() as s, pytest.raises(PermissionDenied, match="not a party"):
        coord.inspect_for_party(s, w.key, w.ids["datasite:dfe"], other.id)
    with w.db.write() as s, pytest.raises(PermissionDenied, match="not a party"):
        coord.approve(s, w.key, w.ids["datasite:dfe"], other.id, PARAMS)


def test_only_the_requester_cancels(w: World) -> None:
    cid = _create(w)
    with w.db.write() as s, pytest.raises(PermissionDenied, match="only the requester"):
        coord.cancel(s, w.key, w.stranger, cid, "mine now")
    with w.db.write() as s:
        assert coord.cancel(s, w.key, w.requester, cid, "no longer needed").state == \
            coord.WITHDRAWN


def test_a_coordination_past_its_deadline_expires(w: World) -> None:
    cid = _create(w)
    with w.db.write() as s:
        row = s.get(Coordination, cid)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    with w.db.write() as s:
        assert coord.inspect_for_user(s, w.key, w.requester, cid).state == coord.EXPIRED
    with pytest.raises(Conflict, match="expired"):
        _approve(w, ENCLAVE, cid)


@pytest.mark.parametrize("body,words", [
    ({"purpose": "x"}, "purpose"),
    ({"parties": "datasite:nhs"}, "parties"),
    ({"approvals_needed": 4}, "approvals_needed must be between 1"),
    ({"approvals_needed": 0}, "approvals_needed must be between 1"),
    ({"approvals_needed": True}, "whole number"),
    ({"params_sha256": "abc"}, "params_sha256"),
    ({"contributors": ["datasite:elsewhere"]}, "contributors must be among"),
    ({"parties": ["datasite:nhs", "datasite:nhs"]}, "twice"),
    ({"parties": ["datasite:ghost"]}, "not registered"),
    ({"parties": ["user:alice"]}, "not valid"),
    ({"ttl_seconds": 10}, "ttl_seconds"),
])
def test_bad_requests_are_refused_and_create_nothing(w: World, body: dict[str, object],
                                                     words: str) -> None:
    good: dict[str, object] = {"purpose": "Link records", "parties": [*SITES, ENCLAVE],
                               "approvals_needed": 2, "params_sha256": PARAMS}
    with pytest.raises((InvalidInput, NotFound), match=words):
        req = coord.NewCoordination.parse({**good, **body})
        with w.db.write() as s:
            coord.create(s, w.key, w.requester, req)
    with w.db.read() as s:
        assert s.scalars(select(Coordination)).all() == []


@pytest.fixture
def w(world: World) -> World:
    return world

"""Incidents on SQLite and PostgreSQL: who is told, who sees what, the linked response, the
state machine, and a register that says an incident happened without saying what it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import rfc8785
from sqlalchemy import select

from ndl.access import accounts, projects
from ndl.access.accounts import Principal
from ndl.access.models import User
from ndl.catalogue import service as catalogue
from ndl.catalogue.metadata import DatasetMeta
from ndl.core.db import Database
from ndl.core.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from ndl.core.keys import SigningKey, verify_signature
from ndl.federation import incidents
from ndl.federation.incident_models import Incident, Notice
from ndl.federation.models import Datasite, Message
from ndl.ledger import register
from ndl.ledger.models import LedgerEntry
from ndl.ledger.security_models import SecurityEvent

KEY = SigningKey.generate()
SECRET = "the export was copied to an unencrypted USB stick by Dr Jane Roe"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        accounts.create_org(s, "nhs-trust", "Northshire NHS Trust", "nhs")
        accounts.create_org(s, "dfe", "Department for Education", "government")
        for name, roles, org in (("alice", ["researcher"], None), ("bob", ["researcher"], None),
                                 ("carol", ["researcher"], None),
                                 ("sam", ["steward"], "nhs-trust"), ("dee", ["steward"], "dfe"),
                                 ("root", ["admin"], None)):
            accounts.create_user(s, name, roles=roles, org_id=org)
        site = Datasite(id="nhs-trust", org_id="nhs-trust", name="NHS",
                        public_key=SigningKey.generate().public_b64)
        s.add(site)
        s.add(Datasite(id="dfe", org_id="dfe", name="DfE",
                       public_key=SigningKey.generate().public_b64))
        s.flush()
        catalogue.publish(s, KEY, site, [DatasetMeta.model_validate({
            "name": "ae", "title": "A&E", "description": "Attendances.", "publisher": "x",
            "tier": "safeguarded", "row_count": 3,
            "columns": [{"name": "n", "type": "integer"}]})])
    yield database
    database.dispose()


def who(db: Database, name: str) -> Principal:
    with db.read() as s:
        user = s.scalar(select(User).where(User.username == name))
        assert user is not None
        return accounts.principal_of(user)


def _project(db: Database, owner: str, members: list[str]) -> str:
    with db.write() as s:
        return projects.create_project(
            s, KEY, who(db, owner), title="Waits", purpose="Why waits grow in winter months.",
            purpose_category="research", lay_summary="Waits.", legal_basis="public-task",
            end_date=date.today() + timedelta(days=90), members=members).id


def _raise(db: Database, by: str, **refs: Any) -> incidents.Raised:
    with db.write() as s:
        return incidents.raise_incident(s, KEY, who(db, by), incidents.NewIncident(
            title="Data left exposed", description=SECRET, severity="high", **refs),
            source="10.0.0.9")


def test_raising_tells_the_datasite_and_the_people_it_touches(db: Database) -> None:
    pid = _project(db, "alice", ["bob"])
    raised = _raise(db, "carol", datasets=["nhs-trust/ae"], projects=[pid])
    assert raised.datasites == ["nhs-trust"]
    with db.read() as s:
        told = {n.recipient: n.why for n in s.scalars(select(Notice))}
        msg = s.scalar(select(Message).where(Message.kind == "notice"))
    # project members, the data's steward, and the datasite; not the other org's steward
    assert set(told) == {"alice", "bob", "sam", "nhs-trust"}
    assert "member of project" in told["alice"] and "steward of nhs-trust" in told["sam"]
    assert msg is not None and msg.datasite_id == "nhs-trust"
    notice = msg.body["notice"]
    assert notice["incident"] == raised.incident.id and notice["touches"] == [
        "dataset nhs-trust/ae"]
    assert SECRET not in json.dumps(msg.body)  # the datasite hears what, not the detail
    assert verify_signature(KEY.public_b64, msg.body["notice_sig"], rfc8785.dumps(notice))


def test_the_register_records_that_it_happened_without_its_detail(db: Database) -> None:
    raised = _raise(db, "carol", datasets=["nhs-trust/ae"], users=["bob"])
    with db.write() as s:
        incidents.set_state(s, KEY, who(db, "root"), raised.incident.id, "contained")
        incidents.set_state(s, KEY, who(db, "root"), raised.incident.id, "closed")
    with db.read() as s:
        entries = [e for e in register.list_entries(s, limit=1000)
                   if e.subject == f"incident:{raised.incident.id}"]
    assert [e.kind for e in entries] == ["incident.raised", "incident.contained",
                                         "incident.closed"]
    text = json.dumps([register.entry_json(e) for e in entries])
    for private in (SECRET, "Data left exposed", "carol", "bob", "root", "Jane"):
        assert private not in text
    assert entries[0].actor == "member" and entries[0].payload["severity"] == "high"
    assert entries[1].actor == "admin"


def test_members_see_only_their_own_or_those_that_touch_them(db: Database) -> None:
    raised = _raise(db, "carol", datasets=["nhs-trust/ae"])
    iid = raised.incident.id
    with db.read() as s:
        as_raiser = incidents.get_incident(s, who(db, "carol"), iid)
        as_steward = incidents.get_incident(s, who(db, "sam"), iid)
        as_admin = incidents.get_incident(s, who(db, "root"), iid)
        with pytest.raises(NotFound):
            incidents.get_incident(s, who(db, "dee"), iid)   # another org's steward
        with pytest.raises(NotFound):
            incidents.get_incident(s, who(db, "alice"), iid)
        with pytest.raises(AuthenticationRequired):
            incidents.get_incident(s, None, iid)
        assert [i.id for i in incidents.list_incidents(s, who(db, "alice"))] == []
        assert [i.id for i in incidents.list_incidents(s, who(db, "sam"))] == [iid]
        assert [i.id for i in incidents.list_incidents(s, who(db, "root"))] == [iid]
        notices = incidents.my_notices(s, who(db, "sam"))
    assert as_raiser.description == SECRET and as_admin.description == SECRET
    assert as_steward.description is None and as_steward.raised_by is None
    assert as_admin.notices and not as_steward.notices
    assert [(n.incident, n.event) for n in notices] == [(iid, "raised")]


def test_only_admins_act_and_the_action_links_its_register_entry(db: Database) -> None:
    raised = _raise(db, "carol", users=["bob"])
    iid = raised.incident.id
    for name in ("carol", "bob", "sam", "alice"):
        with db.write() as s, pytest.raises(PermissionDenied):
            incidents.record_action(s, KEY, who(db, name), iid, action="suspension",
                                    subject="user:bob")
        with db.write() as s, pytest.raises(PermissionDenied):
            incidents.set_state(s, KEY, who(db, name), iid, "closed")
    with db.write() as s:
        # another service's response (here a stand-in register entry), then linked to it
        entry = register.append(s, KEY, kind="user.suspended", actor="admin",
                                subject="user:bob")
        linked = incidents.link_response(s, iid, "suspension", "user:bob", actor="user:root")
        assert (linked.register_seq, linked.register_hash) == (entry.seq, entry.hash)
        made = incidents.record_action(s, KEY, who(db, "root"), iid, action="key_revocation",
                                       subject="datasite:nhs-trust", note="rotated")
    assert made.register_seq is None
    with db.read() as s:
        view = incidents.get_incident(s, who(db, "carol"), iid)
        logged = [e.kind for e in s.scalars(select(SecurityEvent))]
        action_entry = s.scalar(select(LedgerEntry).where(LedgerEntry.kind == "incident.action"))
    assert [a.action for a in view.actions] == ["suspension", "key_revocation"]
    assert action_entry is not None and "bob" not in json.dumps(action_entry.payload)
    assert logged.count("admin.incident_action") == 2


def test_states_move_forward_only(db: Database) -> None:
    iid = _raise(db, "carol").incident.id
    root = who(db, "root")
    with db.write() as s:
        incidents.set_state(s, KEY, root, iid, "closed")
    for state in ("contained", "closed", "open"):
        with db.write() as s, pytest.raises(Conflict):
            incidents.set_state(s, KEY, root, iid, state)
    with db.write() as s, pytest.raises(InvalidInput):
        incidents.set_state(s, KEY, root, iid, "forgotten")
    with db.write() as s, pytest.raises(Conflict):
        incidents.link_response(s, iid, "suspension", "user:bob")


@pytest.mark.parametrize("refs,err", [
    ({"datasets": ["nhs-trust/nope"]}, NotFound), ({"projects": ["p-missing"]}, NotFound),
    ({"datasites": ["nowhere"]}, NotFound), ({"orgs": ["no-org"]}, NotFound),
    ({"users": ["nobody"]}, NotFound)])
def test_unknown_names_are_refused_and_change_nothing(db: Database, refs: dict[str, Any],
                                                       err: type[Exception]) -> None:
    with pytest.raises(err):
        _raise(db, "carol", **refs)
    with db.read() as s:
        assert s.scalar(select(Incident)) is None
        assert s.scalar(select(Message)) is None


def test_an_organisation_reaches_its_datasites_and_stewards(db: Database) -> None:
    raised = _raise(db, "root", orgs=["dfe"])
    assert raised.datasites == ["dfe"]
    with db.read() as s:
        assert {n.recipient for n in s.scalars(select(Notice))} == {"dfe", "dee"}


def test_a_member_cannot_flood_the_federation_with_incidents(db: Database) -> None:
    for _ in range(incidents.MAX_RAISED_PER_DAY):
        _raise(db, "carol")
    with pytest.raises(RateLimited):
        _raise(db, "carol", orgs=["dfe"])
    with db.read() as s:  # the refused one told nobody
        assert s.scalar(select(Message)) is None
    _raise(db, "root")  # admins, who answer incidents, are not limited

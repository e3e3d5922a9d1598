"""The security log on SQLite and PostgreSQL: what the account services write, secrets kept
out, JSON-lines export with filters, sharing scoped to a steward's organisation, retention."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from ndl.access import accounts
from ndl.access import service as access_service
from ndl.access.accounts import Principal
from ndl.core.db import Database, utcnow
from ndl.core.errors import AuthenticationRequired, InvalidInput, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.ledger import register, security_export, security_log
from ndl.ledger.security_models import SecurityEvent

KEY = SigningKey.generate()
PASSWORD = "correct horse battery"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        op = access_service.Operator("admin-cli")
        access_service.create_org(s, KEY, op, access_service.NewOrg(id="nhs-trust",
                                                                     name="NHS"))
        access_service.create_org(s, KEY, op, access_service.NewOrg(id="dfe", name="DfE"))
        for name, roles, org in (("alice", ["researcher"], "nhs-trust"),
                                 ("sam", ["steward"], "nhs-trust"), ("dee", ["steward"], "dfe"),
                                 ("root", ["admin"], None)):
            access_service.create_user(s, KEY, op, access_service.NewUser(
                username=name, roles=roles, org=org, password=PASSWORD))
    yield database
    database.dispose()


def _events(db: Database) -> list[SecurityEvent]:
    with db.read() as s:
        rows = list(s.scalars(select(SecurityEvent).order_by(SecurityEvent.id)))
        s.expunge_all()
        return rows


def _who(db: Database, name: str) -> Principal:
    with db.read() as s:
        user = s.scalar(select(accounts.User).where(accounts.User.username == name))
        assert user is not None
        return accounts.principal_of(user)


def test_accounts_write_token_events_and_no_token_reaches_the_log(db: Database) -> None:
    with db.write() as s:
        _, token = accounts.login(s, "alice", PASSWORD)
    with db.write() as s:
        info, minted = accounts.create_own_token(
            s, accounts.authenticate_token(s, token), scope="read-only", name="agent", days=3)
    with db.write() as s:
        accounts.revoke_own_token(s, _who(db, "alice"), info.id)
        accounts.revoke_token(s, token)
    events = _events(db)
    kinds = [e.kind for e in events]
    assert kinds.count("admin.org_created") == 2 and kinds.count("admin.user_created") == 4
    assert kinds.count("auth.token_issued") == 2 and kinds.count("auth.token_revoked") == 2
    issued = next(e for e in events if e.kind == "auth.token_issued"
                  and e.details["scope"] == "read-only")
    assert issued.actor == "user:alice" and issued.org_id == "nhs-trust"
    dump = json.dumps([security_export.event_json(e) for e in events], default=str)
    assert token not in dump and minted not in dump and PASSWORD not in dump
    assert token[:12] not in dump  # not even the prefix: the name and scope say which


def test_record_drops_secret_keys_and_masks_token_shaped_text(db: Database) -> None:
    with db.write() as s:
        security_log.record(
            s, "auth.sign_in_failed", actor="user:alice ndl_abcdefghijklmnop",
            subject="sign-in", outcome="failed",
            details={"password": PASSWORD, "Authorization": "Bearer x", "csrf_token": "c",
                     "api_key": "k", "note": "used ndl_SECRETSECRETSECRET1234 and "
                     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "nested": {"token": "t",
                                                                           "ok": 1}})
    (event,) = [e for e in _events(db) if e.kind == "auth.sign_in_failed"]
    assert set(event.details) == {"note", "nested"} and event.details["nested"] == {"ok": 1}
    assert "SECRETSECRET" not in event.details["note"] and "eyJ" not in event.details["note"]
    assert "ndl_abcdefghijklmnop" not in event.actor


@pytest.mark.parametrize("bad", [{"kind": "auth.whatever"}, {"outcome": "maybe"}])
def test_unknown_kinds_and_outcomes_are_refused(db: Database, bad: dict[str, str]) -> None:
    fields = {"kind": "auth.sign_in", "outcome": "ok", **bad}
    with db.write() as s, pytest.raises(InvalidInput):
        security_log.record(s, fields["kind"], actor="x", outcome=fields["outcome"])


def test_a_refused_sign_in_names_only_real_accounts(db: Database) -> None:
    security_log.sign_in_refused(db, "auth.sign_in_failed", account="alice",
                                 source="10.1.1.1", via="api")
    # a password typed into the username box must not reach the log
    security_log.sign_in_refused(db, "auth.sign_in_failed", account=PASSWORD,
                                 source="10.1.1.1", via="web")
    security_log.sign_in_refused(db, "auth.lockout", account="alice", source="10.1.1.1",
                                 via="api")
    events = [e for e in _events(db) if e.kind.startswith("auth.")]
    assert [(e.kind, e.actor, e.outcome, e.org_id) for e in events] == [
        ("auth.sign_in_failed", "user:alice", "failed", "nhs-trust"),
        ("auth.sign_in_failed", "unknown-account", "failed", None),
        ("auth.lockout", "user:alice", "refused", "nhs-trust")]
    assert PASSWORD not in json.dumps([security_export.event_json(e) for e in events],
                                      default=str)


def test_export_filters_by_time_kind_and_family(db: Database) -> None:
    with db.write() as s:
        accounts.login(s, "alice", PASSWORD)
    with db.write() as s:  # an old event, two days ago
        old = security_log.record(s, "auth.sign_in", actor="user:sam", source="10.0.0.1")
        s.flush()
        s.execute(update(SecurityEvent).where(SecurityEvent.id == old.id)
                  .values(at=utcnow() - timedelta(days=2)))
    since = (utcnow() - timedelta(days=1)).isoformat()
    with db.read() as s:
        lines = list(security_export.jsonl(s, security_export.make_filter(since=since)))
        auth = list(security_export.jsonl(s, security_export.make_filter(kind="auth")))
        issued = list(security_export.jsonl(s, security_export.make_filter(
            kind="auth.token_issued")))
        before = list(security_export.jsonl(s, security_export.make_filter(until=since)))
    parsed = [json.loads(x) for x in lines]
    assert all(x.endswith("\n") for x in lines) and "user:sam" not in {p["actor"] for p in
                                                                         parsed}
    assert [json.loads(x)["actor"] for x in before] == ["user:sam"]
    assert {json.loads(x)["kind"] for x in auth} == {"auth.token_issued", "auth.sign_in"}
    assert [json.loads(x)["kind"] for x in issued] == ["auth.token_issued"]
    for bad in ({"since": "yesterday"}, {"kind": "nope"}):
        with pytest.raises(InvalidInput):
            security_export.make_filter(**bad)


def test_only_admins_export_and_stewards_get_their_own_org_when_shared(db: Database) -> None:
    flt = security_export.make_filter()
    for name in ("alice", "sam", "dee"):
        with pytest.raises(PermissionDenied):
            security_export.admin_filter(_who(db, name), flt)
    with pytest.raises(AuthenticationRequired):
        security_export.admin_filter(None, flt)
    assert security_export.admin_filter(_who(db, "root"), flt) == flt
    with pytest.raises(PermissionDenied):  # the hub shares nothing by default
        security_export.shared_filter(_who(db, "sam"), flt, "none")
    for name in ("alice", "root"):  # a researcher, and an admin (who exports instead)
        with pytest.raises(PermissionDenied):
            security_export.shared_filter(_who(db, name), flt, "org")
    asked_for_dfe = security_export.make_filter(org="dfe")
    mine = security_export.shared_filter(_who(db, "sam"), asked_for_dfe, "org")
    assert mine.org == "nhs-trust"
    with db.read() as s:
        orgs = {e.org_id for e in security_export.events(s, mine)}
    assert orgs == {"nhs-trust"}


def test_retention_drops_only_old_events_and_leaves_the_register(db: Database) -> None:
    with db.write() as s:
        old = security_log.record(s, "auth.sign_in", actor="user:sam")
        s.flush()
        s.execute(update(SecurityEvent).where(SecurityEvent.id == old.id)
                  .values(at=utcnow() - timedelta(days=500)))
    before = len(_events(db))
    with db.read() as s:
        entries = len(register.list_entries(s, limit=10_000))
    with db.write() as s:
        assert security_log.prune(s, 0) == 0  # 0: kept for ever
        assert security_log.prune(s, 400) == 1
    assert len(_events(db)) == before - 1
    with db.read() as s:
        assert len(register.list_entries(s, limit=10_000)) == entries


def _sql(db: Database, sql: str, **params: object) -> None:
    with db.write() as s:
        s.execute(text(sql), params)


def test_the_chain_shows_edits_deletions_and_a_cut_tail(db: Database) -> None:
    with db.read() as s:
        assert security_export.verify(s).ok
        saved = [json.loads(x) for x in security_export.jsonl(s, security_export.make_filter())]
    assert len(saved) == 6 and all(len(e["hash"]) == 64 for e in saved)
    assert saved[1]["prev_hash"] == saved[0]["hash"]
    _sql(db, "UPDATE security_events SET actor = 'user:nobody' WHERE id = 3")
    with db.read() as s:
        report = security_export.verify(s, saved)
    assert not report.ok and "event 3 was edited" in " ".join(report.problems)
    assert "event 3 is not what the saved export holds" in " ".join(report.problems)
    # Rewriting the whole chain after the edit passes the walk; the saved export still tells.
    with db.write() as s:
        prev = "0" * 64
        for e in s.scalars(select(SecurityEvent).order_by(SecurityEvent.id)):
            e.prev_hash = prev
            e.hash = prev = security_log.event_hash(prev, security_log.chained_fields(e))
        s.execute(text("UPDATE security_log_head SET hash = :h"), {"h": prev})
    with db.read() as s:
        assert security_export.verify(s).ok
        report = security_export.verify(s, saved)
    assert not report.ok and report.problems[0].startswith("event 3 is not what the saved")
    _sql(db, "DELETE FROM security_events WHERE id = 4")
    with db.read() as s:
        assert "event 5 does not follow" in " ".join(security_export.verify(s).problems)
    _sql(db, "DELETE FROM security_events WHERE id = 6")
    with db.read() as s:
        assert "does not end where its head says" in " ".join(
            security_export.verify(s).problems)


def test_retention_keeps_the_rest_of_the_chain_verifiable(db: Database) -> None:
    with db.read() as s:
        saved = [json.loads(x) for x in security_export.jsonl(s, security_export.make_filter())]
    _sql(db, "UPDATE security_events SET at = :t WHERE id <= 2",
         t=utcnow() - timedelta(days=500))
    # (moving the time is an edit too: re-hash those two as if written then)
    with db.write() as s:
        for e in s.scalars(select(SecurityEvent).where(SecurityEvent.id <= 2)):
            e.hash = security_log.event_hash(e.prev_hash, security_log.chained_fields(e))
        assert security_log.prune(s, 400) == 2
    with db.read() as s:
        report = security_export.verify(s, saved)
    assert report.ok and report.events == 4, report.problems


def test_concurrent_writers_keep_one_chain(db: Database) -> None:
    def write(n: int) -> None:
        for i in range(5):
            with db.write() as s:
                security_log.record(s, "auth.sign_in", actor=f"user:w{n}-{i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.read() as s:
        report = security_export.verify(s)
        ids = [e.id for e in security_export.events(s, security_export.make_filter())]
    assert report.ok, report.problems
    assert ids == list(range(1, 27))

"""Evidence on people and references on projects, on SQLite and PostgreSQL: when a record
counts (issued, unexpired, unrevoked), what a policy's requirements find missing and how
they say the fix, the accredited flag as derived evidence, the migration's backfill, and
renewal reminders sent once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from ndl.access import accounts, evidence, references
from ndl.access.accounts import Principal
from ndl.access.models import Evidence, User
from ndl.access.policy import Policy, Requirements, parse_policy
from ndl.access.project_models import Project, ProjectMember
from ndl.access.service import Operator
from ndl.core.db import Database
from ndl.core.errors import InvalidInput, PermissionDenied
from ndl.core.keys import SigningKey
from ndl.core.migrate import alembic_config
from ndl.ledger.models import LedgerEntry

KEY = SigningKey.generate()
TODAY = date.today()
OP = Operator("test")


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        for name, roles in (("alice", ["researcher"]), ("bob", ["researcher"]),
                            ("ada", ["admin"])):
            accounts.create_user(s, name, roles=roles)
        alice = s.scalar(select(User).where(User.username == "alice"))
        assert alice is not None
        s.add(Project(id="p-1", title="T", purpose="x" * 30, purpose_category="research",
                      lay_summary="s", legal_basis="public-task", owner_id=alice.id,
                      end_date=TODAY + timedelta(days=400),
                      members=[ProjectMember(user_id=alice.id, username="alice",
                                             role="lead")]))
    yield database
    database.dispose()


def _new(kind: str = "accredited-researcher", days: int = 365) -> evidence.NewEvidence:
    return evidence.NewEvidence(kind=kind, issuer="UK Statistics Authority",  # type: ignore[arg-type]
                                reference="DEA-123", expires_on=TODAY + timedelta(days=days))


def _user(s: object, name: str) -> User:
    user = s.scalar(select(User).where(User.username == name))  # type: ignore[attr-defined]
    assert isinstance(user, User)
    return user


def test_evidence_counts_while_unexpired_and_unrevoked(db: Database) -> None:
    with db.write() as s:
        made = evidence.add_evidence(s, KEY, OP, "alice", _new())
        assert made.state == "valid" and not made.renew and made.days_left == 365
    with db.read() as s:
        alice = _user(s, "alice")
        assert evidence.holds(alice, "accredited-researcher") and alice.accredited
        assert not evidence.holds(alice, "safe-researcher-training")
        # The day after it lapses it no longer counts.
        assert not evidence.holds(alice, "accredited-researcher", TODAY + timedelta(days=366))
    with db.write() as s:
        evidence.revoke_evidence(s, KEY, OP, made.id, "certificate withdrawn")
    with db.read() as s:
        alice = _user(s, "alice")
        assert not alice.accredited
        assert [e.state for e in evidence.list_evidence(
            s, Principal(alice.id, "alice", frozenset({"researcher"}), None))] == ["revoked"]


def test_expired_evidence_is_named_with_the_day_and_the_fix(db: Database) -> None:
    with db.write() as s:
        made = evidence.add_evidence(s, KEY, OP, "alice", _new())
        row = s.get(Evidence, made.id)
        assert row is not None
        row.expires_on = TODAY - timedelta(days=1)
    with db.read() as s:
        project = s.get(Project, "p-1")
        assert project is not None
        alice = _user(s, "alice")
        found = evidence.shortfalls(s, project, [alice.id],
                                    Requirements(evidence=["accredited-researcher"]))
    assert len(found) == 1
    assert f"expired on {TODAY - timedelta(days=1)}" in found[0]
    assert "ndl admin evidence add alice --kind accredited-researcher" in found[0]


def test_bad_dates_are_refused_and_change_nothing(db: Database) -> None:
    for days, words in ((0, "not in the future"), (-30, "not in the future"),
                        (366 * 11, "more than 10 years")):
        with pytest.raises(InvalidInput, match=words), db.write() as s:
            evidence.add_evidence(s, KEY, OP, "alice", _new(days=days))
    with pytest.raises(InvalidInput, match=r"issued: .* is in the future"), db.write() as s:
        evidence.add_evidence(s, KEY, OP, "alice", evidence.NewEvidence(
            kind="safe-researcher-training", issuer="ONS", reference="SRT-1",
            issued_on=TODAY + timedelta(days=2), expires_on=TODAY + timedelta(days=20)))
    with db.read() as s:
        assert s.scalar(select(sa.func.count()).select_from(Evidence)) == 0


def test_only_another_admin_records_evidence(db: Database) -> None:
    with db.read() as s:
        ids = {n: _user(s, n).id for n in ("alice", "bob", "ada")}
    ada = Principal(ids["ada"], "ada", frozenset({"admin"}), None)
    bob = Principal(ids["bob"], "bob", frozenset({"researcher"}), None)
    with pytest.raises(PermissionDenied, match="role admin"), db.write() as s:
        evidence.add_evidence(s, KEY, bob, "alice", _new())
    with pytest.raises(PermissionDenied, match="about themselves"), db.write() as s:
        evidence.add_evidence(s, KEY, ada, "ada", _new())
    with db.write() as s:
        assert evidence.add_evidence(s, KEY, ada, "alice", _new()).recorded_by == "admin"
    with pytest.raises(PermissionDenied, match="your own evidence"), db.read() as s:
        evidence.list_evidence(s, bob, "alice")


def test_the_accredited_flag_is_legacy_evidence(db: Database) -> None:
    with db.write() as s:
        _user(s, "bob").accredited = True
    with db.read() as s:
        bob = _user(s, "bob")
        assert bob.accredited and [e.kind for e in bob.evidence] == ["legacy-flag"]
        # It stands for accreditation, not for training.
        assert evidence.holds(bob, "accredited-researcher")
        assert not evidence.holds(bob, "information-governance-training")
    with db.write() as s:
        _user(s, "bob").accredited = False
    with db.read() as s:
        assert not _user(s, "bob").accredited


def test_project_references_required_missing_expired_and_renewed(db: Database) -> None:
    req = Requirements(references=["dpia", "ethics-approval"])
    with db.read() as s:
        project = s.get(Project, "p-1")
        assert project is not None
        found = references.reference_shortfalls(project, list(req.references), TODAY)
    assert [f.split(" holds no valid ")[1].split()[0] for f in found] == ["dpia",
                                                                          "ethics-approval"]
    with db.write() as s:
        for kind in ("dpia", "ethics-approval"):
            references.add_reference(s, KEY, OP, "p-1", references.NewReference(
                kind=kind, issuer="DPO", reference=f"{kind}-1",  # type: ignore[arg-type]
                expires_on=TODAY + timedelta(days=10)))
    with db.read() as s:
        project = s.get(Project, "p-1")
        assert project is not None
        assert references.reference_shortfalls(project, list(req.references), TODAY) == []
        later = references.reference_shortfalls(project, ["dpia"], TODAY + timedelta(days=11))
        assert [r.renew for r in references.list_references(
            s, Principal(project.owner_id, "alice", frozenset({"researcher"}), None),
            "p-1")] == [True, True]
    assert "'dpia-1' expired on" in later[0] and "renew it" in later[0]


def test_a_member_who_is_not_lead_cannot_record_references(db: Database) -> None:
    with db.read() as s:
        bob = Principal(_user(s, "bob").id, "bob", frozenset({"researcher"}), None)
    with pytest.raises(PermissionDenied, match="only the lead"), db.write() as s:
        references.add_reference(s, KEY, bob, "p-1", references.NewReference(
            kind="dpia", issuer="DPO", reference="D", expires_on=TODAY + timedelta(days=9)))


def test_a_policy_can_require_evidence_and_references() -> None:
    policy = Policy.model_validate({"requires": {"evidence": ["accredited-researcher"],
                                                 "references": ["dpia"]}})
    assert policy.requires.references == ["dpia"]
    with pytest.raises(InvalidInput, match=r"requires\.evidence"):
        parse_policy("requires:\n  evidence: [a-cup-of-tea]\n", where="policy.yaml")


def test_renewal_reminders_are_sent_once_and_say_no_reference(db: Database) -> None:
    with db.write() as s:
        soon = evidence.add_evidence(s, KEY, OP, "alice", _new(days=10))
        evidence.add_evidence(s, KEY, OP, "bob", _new(days=200))
        assert soon.renew
    with db.write() as s:
        sent = evidence.remind_due(s, KEY)
    with db.write() as s:
        again = evidence.remind_due(s, KEY)
    assert [(r.kind, r.expires_on) for r in sent] == [("accredited-researcher",
                                                       TODAY + timedelta(days=10))]
    assert again == []
    with db.read() as s:
        entry = s.scalars(select(LedgerEntry).where(
            LedgerEntry.kind == "evidence.reminder")).one()
        assert "DEA-123" not in str(entry.payload)
        alice = Principal(_user(s, "alice").id, "alice", frozenset({"researcher"}), None)
        assert [e.reminded for e in evidence.list_evidence(s, alice)] == [True]


def test_reference_reminders_are_sent_once_and_shown_to_the_lead(db: Database) -> None:
    with db.write() as s:
        references.add_reference(s, KEY, OP, "p-1", references.NewReference(
            kind="data-sharing-agreement", issuer="NHS England", reference="DSA-9",
            expires_on=TODAY + timedelta(days=5)))
    with db.write() as s:
        sent = references.remind_due(s, KEY)
    with db.write() as s:
        assert references.remind_due(s, KEY) == []
    assert [(r.kind, r.reminded) for r in sent] == [("data-sharing-agreement", True)]
    with db.read() as s:
        alice = _user(s, "alice")
        lead = Principal(alice.id, "alice", frozenset({"researcher"}), None)
        bob = Principal(_user(s, "bob").id, "bob", frozenset({"researcher"}), None)
        assert [r.reference for r in references.due_for_lead(s, lead)] == ["DSA-9"]
        assert references.due_for_lead(s, bob) == []
        entry = s.scalars(select(LedgerEntry).where(
            LedgerEntry.kind == "project.reference-reminder")).one()
        assert entry.subject == "project:p-1" and "DSA-9" not in str(entry.payload)


def test_the_federation_baseline_adds_to_every_datasets_policy(db: Database) -> None:
    with db.read() as s:
        ada = Principal(_user(s, "ada").id, "ada", frozenset({"admin"}), None)
        rob = Principal(_user(s, "bob").id, "bob", frozenset({"researcher"}), None)
    body = evidence.NewBaseline(tier="safeguarded", evidence=["safe-researcher-training"],
                                references=["data-sharing-agreement"])
    with pytest.raises(PermissionDenied, match="role admin"), db.write() as s:
        evidence.set_baseline(s, KEY, rob, body)
    with db.write() as s:
        made = evidence.set_baseline(s, KEY, ada, body)
    assert made.evidence == ["safe-researcher-training"]
    with db.read() as s:
        merged = evidence.requirements_for(s, "safeguarded",
                                           Requirements(evidence=["accredited-researcher"]))
        untouched = evidence.requirements_for(s, "controlled", Requirements())
        project = s.get(Project, "p-1")
        assert project is not None
        found = evidence.shortfalls(s, project, [_user(s, "alice").id], merged)
    assert merged.evidence == ["safe-researcher-training", "accredited-researcher"]
    assert merged.references == ["data-sharing-agreement"]
    assert untouched == Requirements()
    assert len(found) == 3 and "safe-researcher-training" in found[0]
    with db.write() as s:  # setting it again replaces it
        evidence.set_baseline(s, KEY, OP, evidence.NewBaseline(tier="safeguarded"))
    with db.read() as s:
        assert evidence.baseline(s, "safeguarded") == Requirements()
        entries = s.scalars(select(LedgerEntry).where(
            LedgerEntry.kind == "evidence.baseline")).all()
        assert [e.subject for e in entries] == ["tier:safeguarded"] * 2


def test_migration_backfills_the_accredited_flag_as_evidence(db_url: str) -> None:
    db = Database(db_url)
    db.migrate()
    cfg = alembic_config(db)
    command.downgrade(cfg, "0015_federation_lifecycle")
    with db.write_engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO users (username, display_name, created_at, disabled, accredited) "
            "VALUES ('old', 'Old', CURRENT_TIMESTAMP, :f, :t), "
            "('new', 'New', CURRENT_TIMESTAMP, :f, :f)"), {"t": True, "f": False})
        conn.execute(sa.text("INSERT INTO user_roles (user_id, role) SELECT id, 'researcher' "
                             "FROM users WHERE username = 'old'"))
    command.upgrade(cfg, "head")
    with db.read() as s:
        old, new = _user(s, "old"), _user(s, "new")
        assert [(e.kind, e.expires_on) for e in old.evidence] == [("legacy-flag", None)]
        assert old.accredited and not new.accredited
        # Dropping the column lost nothing that points at a user.
        assert old.role_names == {"researcher"}
    db.dispose()


def test_the_admin_cli_records_evidence_and_sets_the_baseline(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ndl.cli import app

    database = Database(str(tmp_path / "hub.db"))
    database.migrate()
    with database.write() as s:
        accounts.create_user(s, "carol", roles=["researcher"])
    where = ["--db", str(tmp_path / "hub.db"), "--data-dir", str(tmp_path)]
    runner = CliRunner()
    later = (TODAY + timedelta(days=90)).isoformat()
    bad = runner.invoke(app, ["admin", "evidence", "add", "carol", "--kind",
                              "accredited-researcher", "--issuer", "UKSA", "--reference", "R",
                              "--expires", "2027-02-30", *where])
    assert bad.exit_code == 2 and "--expires: '2027-02-30' is not a date" in bad.output
    wrong = runner.invoke(app, ["admin", "evidence", "add", "carol", "--kind", "tea",
                                "--issuer", "UKSA", "--reference", "R", "--expires", later,
                                *where])
    assert wrong.exit_code == 2 and "--kind" in wrong.output
    ok = runner.invoke(app, ["admin", "evidence", "add", "carol", "--kind",
                             "accredited-researcher", "--issuer", "UKSA", "--reference",
                             "DEA-7", "--expires", later, *where])
    assert ok.exit_code == 0, ok.output
    assert f"valid until {later}" in ok.output
    base = runner.invoke(app, ["admin", "evidence", "baseline", "--tier", "controlled",
                               "--evidence", "safe-researcher-training", "--reference",
                               "dpia", *where])
    assert base.exit_code == 0, base.output
    with database.read() as s:
        carol = _user(s, "carol")
        assert [(e.kind, e.reference, e.recorded_by) for e in carol.evidence] == [
            ("accredited-researcher", "DEA-7", "admin-cli")]
        assert evidence.baseline(s, "controlled") == Requirements(
            evidence=["safe-researcher-training"], references=["dpia"])
    database.dispose()

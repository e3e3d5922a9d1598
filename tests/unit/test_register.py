"""The register's hash chain: any edit, deletion, reordering or truncation is detected."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from ndl.core.db import Database
from ndl.core.keys import SigningKey
from ndl.ledger import register
from ndl.ledger.models import LedgerEntry

KEY = SigningKey.generate()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    with database.write() as s:
        for i in range(6):
            register.append(s, KEY, kind="test.event", actor=f"user{i}", subject=f"thing/{i}",
                            payload={"i": i, "note": "ünïcode ok"})
    yield database
    database.dispose()


def _verify(db: Database, **kw: object) -> register.VerifyReport:
    with db.read() as s:
        return register.verify(s, KEY.public_b64, **kw)  # type: ignore[arg-type]


def _sql(db: Database, sql: str, **params: object) -> None:
    with db.write() as s:
        s.execute(text(sql), params)


def test_untouched_register_verifies(db: Database) -> None:
    report = _verify(db)
    assert report.ok, report.problems
    assert report.entries == 6 and report.head_seq == 6


def test_edited_entry_is_detected(db: Database) -> None:
    _sql(db, "UPDATE ledger_entries SET actor = 'mallory' WHERE seq = 3")
    report = _verify(db)
    assert not report.ok
    assert any("entry 3 was edited" in p for p in report.problems)


def test_edited_payload_is_detected(db: Database) -> None:
    _sql(db, "UPDATE ledger_entries SET payload = :p WHERE seq = 2", p='{"i": 99}')
    assert any("entry 2 was edited" in p for p in _verify(db).problems)


def test_deleted_entry_is_detected(db: Database) -> None:
    _sql(db, "DELETE FROM ledger_entries WHERE seq = 4")
    problems = _verify(db).problems
    assert any("missing" in p for p in problems)
    assert any("entry 5 does not follow" in p for p in problems)


def test_reordered_entries_are_detected(db: Database) -> None:
    # Swap the contents of entries 2 and 3, keeping sequence numbers in order.
    _sql(db, "UPDATE ledger_entries SET seq = 1000 WHERE seq = 2")
    _sql(db, "UPDATE ledger_entries SET seq = 2 WHERE seq = 3")
    _sql(db, "UPDATE ledger_entries SET seq = 3 WHERE seq = 1000")
    report = _verify(db)
    assert not report.ok
    assert any("does not follow" in p or "edited" in p for p in report.problems)


def test_dropped_tail_is_detected_by_the_head(db: Database) -> None:
    _sql(db, "DELETE FROM ledger_entries WHERE seq >= 5")
    assert any("dropped from the end" in p for p in _verify(db).problems)


def test_dropped_tail_and_head_rewind_is_detected_by_a_saved_head(db: Database) -> None:
    with db.read() as s:
        saved = register.head(s)
    with db.read() as s:
        four = s.get(LedgerEntry, 4)
        assert four is not None
        h4 = four.hash
    _sql(db, "DELETE FROM ledger_entries WHERE seq >= 5")
    _sql(db, "UPDATE ledger_head SET seq = 4, hash = :h", h=h4)
    assert _verify(db).ok  # consistent on its own…
    report = _verify(db, expect_head=saved)  # …but not with what a reader saw before
    assert any("history was rewritten" in p for p in report.problems)


def test_rewritten_chain_without_the_key_is_detected(db: Database) -> None:
    """An attacker who recomputes every hash still cannot sign them."""
    with db.write() as s:
        prev = register.GENESIS
        for e in s.query(LedgerEntry).order_by(LedgerEntry.seq):
            if e.seq == 2:
                e.actor = "mallory"
            e.prev_hash = prev
            e.hash = register.compute_hash(prev, e.seq, e.ts, e.kind, e.actor, e.subject,
                                           e.payload)
            prev = e.hash
        s.execute(text("UPDATE ledger_head SET hash = :h"), {"h": prev})
    problems = _verify(db).problems
    assert any("not signed by the hub key" in p for p in problems)


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    errors: list[Exception] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                with db.write() as s:
                    register.append(s, KEY, kind="race", actor=f"t{n}", subject=str(i))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = _verify(db)
    assert report.ok, report.problems
    assert report.entries == 6 + 40


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.integers(1, 6), field=st.sampled_from(["ts", "kind", "actor", "subject"]),
       junk=st.text(min_size=1, max_size=10))
def test_any_single_field_edit_fails_verification(
    tmp_path_factory: pytest.TempPathFactory, seq: int, field: str, junk: str
) -> None:
    database = Database(str(tmp_path_factory.mktemp("reg") / "hub.db"))
    database.migrate()
    with database.write() as s:
        for i in range(6):
            register.append(s, KEY, kind="k", actor="a", subject=str(i))
    with database.write() as s:
        e = s.get(LedgerEntry, seq)
        assert e is not None
        if getattr(e, field) == junk:
            junk += "x"
        setattr(e, field, junk)
    assert not _verify(database).ok
    database.dispose()

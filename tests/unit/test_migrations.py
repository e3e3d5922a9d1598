"""Migrations build the schema the models describe, on both databases, and can be re-run."""

from __future__ import annotations

from alembic import command

from ndl.core.db import Database
from ndl.core.migrate import alembic_config


def test_migrations_match_the_models_and_are_idempotent(db_url: str) -> None:
    db = Database(db_url)
    db.migrate()
    db.migrate()  # a second start is a no-op
    command.check(alembic_config(db))  # raises if the models drifted from the migrations
    command.downgrade(alembic_config(db), "base")
    db.migrate()
    db.dispose()


def test_going_back_past_issue_13_keeps_the_rows_that_point_at_users_and_datasites(
        db_url: str) -> None:
    """Downgrades drop columns in place: on SQLite batch mode would copy and DROP the parent
    tables, and with foreign keys on that cascades to roles, tokens and datasites' rows."""
    from ndl.access import accounts
    from ndl.access.models import UserRole
    from ndl.core.keys import SigningKey
    from ndl.federation.models import Datasite

    db = Database(db_url)
    db.migrate()
    with db.write() as s:
        accounts.create_org(s, "trust", "Trust")
        accounts.create_user(s, "nina", roles=["steward"], org_id="trust", password="x" * 12)
        s.add(Datasite(id="site", org_id="trust", name="Site",
                       public_key=SigningKey.generate().public_b64))
    command.downgrade(alembic_config(db), "0011_mock_method_text")
    with db.read_engine.connect() as c:
        roles = c.exec_driver_sql("SELECT count(*) FROM user_roles").scalar_one()
        sites = c.exec_driver_sql("SELECT count(*) FROM datasites").scalar_one()
    assert (roles, sites) == (1, 1)
    db.migrate()
    with db.read() as s:
        assert s.query(UserRole).count() == 1
    db.dispose()

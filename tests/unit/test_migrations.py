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

"""Run the hub's Alembic migrations from inside the package (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from ndl.core.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = db.write_engine
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    command.upgrade(alembic_config(db), revision)


def all_models() -> None:
    """Import every module that defines tables, so Base.metadata is complete."""
    import ndl.access.models
    import ndl.access.project_models
    import ndl.catalogue.models
    import ndl.core.ratelimit
    import ndl.federation.blob_models
    import ndl.federation.incident_models
    import ndl.federation.key_models
    import ndl.federation.lifecycle_models
    import ndl.federation.models
    import ndl.federation.party_models
    import ndl.federation.work_models
    import ndl.jobs.models
    import ndl.ledger.models
    import ndl.ledger.security_models
    import ndl.wishlist.models  # noqa: F401

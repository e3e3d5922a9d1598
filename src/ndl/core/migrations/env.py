"""Alembic environment: the engine comes from ndl.core.migrate, never from a config file."""

from alembic import context

from ndl.core.db import Base
from ndl.core.migrate import all_models

all_models()
config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=True,
        # The search index tables are managed by hand in the migrations.
        include_name=lambda name, type_, parent: not (
            type_ == "table" and (name or "").startswith(("dataset_fts", "dataset_search"))
        ),
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

"""search: the dataset's number on PostgreSQL's search rows

Revision ID: 0010_search_num
Revises: 0009_rate_limits
Create Date: 2026-12-05

A full-text match on PostgreSQL must yield dataset numbers (the facet bitmaps are keyed by
them). Without the number on the search row, every match joined ``datasets`` by its string id:
65-120 ms for the ~27,000 matches of a common word at 100,000 datasets, most of a search.
SQLite needs nothing: its FTS5 rowid already is the number (0002).

The GIN index also stops queueing new entries in its unsorted pending list (fastupdate): every
search scanned that list linearly (up to 4 MB) until a vacuum merged it, and its size swayed
the planner to a sequential scan. Publications are rare next to searches, so they pay instead.
"""

from alembic import op

revision = "0010_search_num"
down_revision = "0009_rate_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("ALTER TABLE dataset_search ADD COLUMN num INTEGER")
    op.execute("UPDATE dataset_search s SET num = d.num FROM datasets d "
               "WHERE d.id = s.dataset_id")
    op.execute("ALTER TABLE dataset_search ALTER COLUMN num SET NOT NULL")
    op.execute("ALTER INDEX ix_dataset_search_doc SET (fastupdate = off)")
    op.execute("SELECT gin_clean_pending_list('ix_dataset_search_doc')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("ALTER INDEX ix_dataset_search_doc RESET (fastupdate)")
    op.execute("ALTER TABLE dataset_search DROP COLUMN num")

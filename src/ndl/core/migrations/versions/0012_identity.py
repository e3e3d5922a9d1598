"""identity: suspension of users and datasites, sign-in through OpenID Connect

Revision ID: 0012_identity
Revises: 0011_mock_method_text
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from ndl.core.db import UTCDateTime

revision = "0012_identity"
down_revision = "0011_mock_method_text"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("users", "datasites"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("suspended_at", UTCDateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column("suspended_reason", sa.Text(), nullable=True))
    op.create_table(
        "user_identities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("issuer", "subject"),
    )
    op.create_index("ix_user_identities_user_id", "user_identities", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_user_identities_user_id", table_name="user_identities")
    op.drop_table("user_identities")
    # Dropped in place (SQLite 3.35+): batch mode would copy and DROP users/datasites, and
    # with foreign keys on that cascades to every row pointing at them.
    for table in ("datasites", "users"):
        op.drop_column(table, "suspended_reason")
        op.drop_column(table, "suspended_at")

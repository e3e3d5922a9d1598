"""API token scopes, prefixes and last use

Revision ID: 0004_token_scopes
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

import ndl.core.db

revision = "0004_token_scopes"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing tokens keep full rights (they had them before scopes existed) and no prefix.
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=80), server_default="full",
                                      nullable=False))
        batch_op.add_column(sa.Column("prefix", sa.String(length=16), server_default="",
                                      nullable=False))
        batch_op.add_column(sa.Column("last_used_at",
                                      ndl.core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("prefix")
        batch_op.drop_column("scope")

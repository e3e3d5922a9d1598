"""rate_limits: sign-in backoff and anonymous SQL buckets shared by every hub process

Revision ID: 0009_rate_limits
Revises: 0008_jobs
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_rate_limits"
down_revision = "0008_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("rate_limits",
    sa.Column("key", sa.String(length=220), nullable=False),
    sa.Column("level", sa.Float(), nullable=False),
    sa.Column("since", sa.Float(), nullable=False),
    sa.Column("until", sa.Float(), nullable=False),
    sa.Column("seen", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("key")
    )
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.create_index("ix_rate_limits_seen", ["seen"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_limits_seen")
    op.drop_table("rate_limits")

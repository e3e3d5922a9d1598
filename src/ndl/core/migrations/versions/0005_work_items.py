"""work items: long work with progress, cancellation and a result

Revision ID: 0005_work_items
Revises: 0004_token_scopes
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

import ndl.core.db

revision = "0005_work_items"
down_revision = "0004_token_scopes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("requester", sa.String(length=200), nullable=False),
        sa.Column("datasite_id", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("params_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("progress_message", sa.String(length=200), nullable=False),
        sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deadline", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("released_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.String(length=300), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("result_sha256", sa.String(length=64), nullable=True),
        sa.Column("coordination_id", sa.String(length=36), nullable=True),
        sa.Column("redelivered", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["datasite_id"], ["datasites.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        for col in ("requester", "datasite_id", "state", "deadline", "coordination_id",
                    "result_sha256"):
            batch_op.create_index(batch_op.f(f"ix_work_items_{col}"), [col], unique=False)


def downgrade() -> None:
    op.drop_table("work_items")

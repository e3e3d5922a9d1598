"""blobs: finished blobs by SHA-256, their readers, and uploads in progress

Revision ID: 0006_blobs
Revises: 0005_work_items
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

import ndl.core.db

revision = "0006_blobs"
down_revision = "0005_work_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sha256"),
    )
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        for col in ("owner", "state", "expires_at"):
            batch_op.create_index(batch_op.f(f"ix_blobs_{col}"), [col], unique=False)
    op.create_table(
        "blob_readers",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("reader", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "reader"),
    )
    op.create_table(
        "blob_uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("blob_uploads", schema=None) as batch_op:
        for col in ("owner", "sha256", "updated_at"):
            batch_op.create_index(batch_op.f(f"ix_blob_uploads_{col}"), [col], unique=False)


def downgrade() -> None:
    op.drop_table("blob_uploads")
    op.drop_table("blob_readers")
    op.drop_table("blobs")

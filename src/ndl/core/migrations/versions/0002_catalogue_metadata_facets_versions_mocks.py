"""catalogue metadata, facets, versions, mocks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import uuid

import sqlalchemy as sa
from alembic import op

import ndl.core.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_facets",
        sa.Column("dataset_id", sa.String(length=200), nullable=False),
        sa.Column("facet", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "facet", "value"),
    )
    with op.batch_alter_table("dataset_facets", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_facets_facet_value", ["facet", "value"], unique=False)

    op.create_table(
        "dataset_mocks",
        sa.Column("dataset_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("parquet", sa.LargeBinary(), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id"),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("dataset_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("metadata_hash", sa.String(length=64), nullable=False),
        sa.Column("published_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "version"),
    )
    op.create_table(
        "catalogue_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # A fresh epoch per database, so caches never mistake a recreated catalogue for the old.
    op.execute(
        sa.text("INSERT INTO catalogue_state (id, generation, epoch) VALUES (1, 0, :e)")
        .bindparams(e=uuid.uuid4().hex)
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("num", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("meta", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    # Number existing datasets in id order; the search index is keyed by this number.
    op.execute(
        "UPDATE datasets SET num = (SELECT count(*) FROM datasets d2 WHERE d2.id <= datasets.id)"
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.alter_column("num", existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint("uq_datasets_num", ["num"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "UPDATE dataset_fts SET rowid = "
            "(SELECT num FROM datasets WHERE datasets.id = dataset_fts.dataset_id)"
        )

def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_constraint("uq_datasets_num", type_="unique")
        batch_op.drop_column("num")
        batch_op.drop_column("meta")
    op.drop_table("catalogue_state")

    op.drop_table("dataset_versions")
    op.drop_table("dataset_mocks")
    with op.batch_alter_table("dataset_facets", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_facets_facet_value")

    op.drop_table("dataset_facets")

"""joining and leaving, datasite status, withdrawal, deletion, closure, retention

Revision ID: 0015_federation_lifecycle
Revises: 0014_incidents_security_log
Create Date: 2026-12-06

Datasites gain a membership state (pending / approved / retired; existing ones are approved:
a steward or admin registered them), datasets a withdrawal and deletion date, projects a
retention period; three tables hold status reports, deletion records and project closures.
"""

import sqlalchemy as sa
from alembic import op

from ndl.core.db import UTCDateTime

revision = "0015_federation_lifecycle"
down_revision = "0014_incidents_security_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasites") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=False,
                                   server_default="approved"))
        batch.add_column(sa.Column("approved_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("approved_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retired_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retired_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("withdrawn_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("withdrawn_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("deleted_at", UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "datasite_status",
        sa.Column("datasite_id", sa.String(64), sa.ForeignKey("datasites.id"),
                  primary_key=True),
        sa.Column("reported_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=False),
    )
    op.create_table(
        "deletion_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dataset_id", sa.String(200), sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("datasite_id", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("requested_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("deleted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_deletion_records_dataset_id", "deletion_records", ["dataset_id"])
    op.create_index("ix_deletion_records_datasite_id", "deletion_records", ["datasite_id"])
    op.create_table(
        "project_closures",
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("closed_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outputs_until", UTCDateTime(timezone=True), nullable=False),
        sa.Column("outputs_expired_at", UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("project_closures")
    op.drop_index("ix_deletion_records_datasite_id", "deletion_records")
    op.drop_index("ix_deletion_records_dataset_id", "deletion_records")
    op.drop_table("deletion_records")
    op.drop_table("datasite_status")
    # Dropped in place (SQLite 3.35+): batch mode would copy and DROP these parent tables,
    # and with foreign keys on that cascades to every row pointing at them.
    for table, columns in (
            ("projects", ("retention_days",)),
            ("datasets", ("deleted_at", "withdrawn_reason", "withdrawn_at")),
            ("datasites", ("retired_reason", "retired_at", "approved_at", "approved_by",
                           "state"))):
        for column in columns:
            op.drop_column(table, column)

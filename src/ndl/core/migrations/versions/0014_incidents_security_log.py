"""incidents, notices and the security log

Revision ID: 0014_incidents_security_log
Revises: 0013_keys
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import ndl.core.db

revision = "0014_incidents_security_log"
down_revision = "0013_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("security_events",
    sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(length=60), nullable=False),
    sa.Column("actor", sa.String(length=200), nullable=False),
    sa.Column("subject", sa.String(length=300), nullable=False),
    sa.Column("org_id", sa.String(length=64), nullable=True),
    sa.Column("source", sa.String(length=100), nullable=False),
    sa.Column("outcome", sa.String(length=20), nullable=False),
    sa.Column("details", sa.JSON(), nullable=False),
    sa.Column("prev_hash", sa.String(length=64), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_security_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_security_events_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_security_events_org_id"), ["org_id"],
                              unique=False)

    op.create_table("security_log_head",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.execute("INSERT INTO security_log_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")

    op.create_table("incidents",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("title", sa.String(length=200), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("severity", sa.String(length=10), nullable=False),
    sa.Column("state", sa.String(length=12), nullable=False),
    sa.Column("raised_by", sa.String(length=64), nullable=False),
    sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("updated_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("register_seq", sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incidents_raised_by"), ["raised_by"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_state"), ["state"], unique=False)

    op.create_table("incident_links",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("incident_id", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("ref", sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("incident_id", "kind", "ref")
    )
    with op.batch_alter_table("incident_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_links_incident_id"), ["incident_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_incident_links_ref"), ["ref"], unique=False)

    op.create_table("incident_actions",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("incident_id", sa.Integer(), nullable=False),
    sa.Column("action", sa.String(length=40), nullable=False),
    sa.Column("subject", sa.String(length=300), nullable=False),
    sa.Column("actor", sa.String(length=64), nullable=False),
    sa.Column("note", sa.String(length=2000), nullable=False),
    sa.Column("at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("register_seq", sa.Integer(), nullable=True),
    sa.Column("register_hash", sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("incident_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_actions_incident_id"), ["incident_id"],
                              unique=False)

    op.create_table("notices",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("incident_id", sa.Integer(), nullable=False),
    sa.Column("recipient_kind", sa.String(length=10), nullable=False),
    sa.Column("recipient", sa.String(length=64), nullable=False),
    sa.Column("event", sa.String(length=12), nullable=False),
    sa.Column("why", sa.String(length=300), nullable=False),
    sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("message_id", sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"]),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notices_incident_id"), ["incident_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_notices_recipient"), ["recipient"], unique=False)


def downgrade() -> None:
    op.drop_table("notices")
    op.drop_table("incident_actions")
    op.drop_table("incident_links")
    op.drop_table("incidents")
    op.drop_table("security_log_head")
    op.drop_table("security_events")

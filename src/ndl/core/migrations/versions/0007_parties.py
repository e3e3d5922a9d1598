"""parties: enclaves and other parties, encryption keys, the sealed relay, coordinations

Revision ID: 0007_parties
Revises: 0006_blobs
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

import ndl.core.db

revision = "0007_parties"
down_revision = "0006_blobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("party_encryption_keys",
    sa.Column("principal", sa.String(length=80), nullable=False),
    sa.Column("public_key", sa.String(length=64), nullable=False),
    sa.Column("proof", sa.JSON(), nullable=False),
    sa.Column("updated_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("principal")
    )
    op.create_table("party_messages",
    sa.Column("id", sa.String(length=36), nullable=False),
    sa.Column("sender", sa.String(length=80), nullable=False),
    sa.Column("recipient", sa.String(length=80), nullable=False),
    sa.Column("purpose", sa.String(length=200), nullable=False),
    sa.Column("sha256", sa.String(length=64), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
    sa.Column("blob_sha256", sa.String(length=64), nullable=True),
    sa.Column("sender_sig", sa.String(length=100), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("lease_until", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("recipient", "sha256")
    )
    with op.batch_alter_table("party_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_party_messages_expires_at"), ["expires_at"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_party_messages_recipient"), ["recipient"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_party_messages_sender"), ["sender"],
                              unique=False)

    op.create_table("parties",
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("kind", sa.String(length=32), nullable=False),
    sa.Column("org_id", sa.String(length=64), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("public_key", sa.String(length=64), nullable=False),
    sa.Column("registered_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("public_key")
    )
    with op.batch_alter_table("parties", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_parties_org_id"), ["org_id"],
                              unique=False)

    op.create_table("coordinations",
    sa.Column("id", sa.String(length=36), nullable=False),
    sa.Column("requester_id", sa.Integer(), nullable=False),
    sa.Column("requester", sa.String(length=80), nullable=False),
    sa.Column("purpose", sa.Text(), nullable=False),
    sa.Column("params_sha256", sa.String(length=64), nullable=False),
    sa.Column("approvals_needed", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(length=32), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("result_sha256", sa.String(length=64), nullable=True),
    sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("updated_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column("expires_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["requester_id"], ["users.id"], ),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("coordinations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coordinations_requester_id"), ["requester_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_coordinations_state"), ["state"],
                              unique=False)

    op.create_table("coordination_members",
    sa.Column("coordination_id", sa.String(length=36), nullable=False),
    sa.Column("party", sa.String(length=80), nullable=False),
    sa.Column("contributes", sa.Boolean(), nullable=False),
    sa.Column("approved_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column("contribution_sha256", sa.String(length=64), nullable=True),
    sa.Column("contributed_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column("withdrawn_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["coordination_id"], ["coordinations.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("coordination_id", "party")
    )


def downgrade() -> None:
    op.drop_table("coordination_members")
    with op.batch_alter_table("coordinations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coordinations_state"))
        batch_op.drop_index(batch_op.f("ix_coordinations_requester_id"))

    op.drop_table("coordinations")
    with op.batch_alter_table("parties", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parties_org_id"))

    op.drop_table("parties")
    with op.batch_alter_table("party_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_party_messages_sender"))
        batch_op.drop_index(batch_op.f("ix_party_messages_recipient"))
        batch_op.drop_index(batch_op.f("ix_party_messages_expires_at"))

    op.drop_table("party_messages")
    op.drop_table("party_encryption_keys")

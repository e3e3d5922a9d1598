"""evidence on people and projects: accreditations and approvals with expiry

The boolean ``users.accredited`` becomes evidence: each accredited user gets a row of kind
``legacy-flag`` (no expiry known), and the column goes. ``User.accredited`` is now derived.

Revision ID: 0016_evidence
Revises: 0015_federation_lifecycle
Create Date: 2026-12-06
"""

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

from ndl.core.db import UTCDateTime

revision = "0016_evidence"
down_revision = "0015_federation_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    evidence = op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("issuer", sa.String(200), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("recorded_by", sa.String(100), nullable=False),
        sa.Column("recorded_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=False),
        sa.Column("reminded_at", UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_evidence_user_id", "evidence", ["user_id"])
    op.create_table(
        "project_references",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.String(64),
                  sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("issuer", sa.String(200), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
        sa.Column("recorded_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_project_references_project_id", "project_references", ["project_id"])
    op.create_table(
        "requirement_baseline",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("applies_to", sa.String(10), nullable=False),
        sa.Column("set_by", sa.String(100), nullable=False),
        sa.Column("set_at", UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tier", "kind"),
    )
    # Backfill: the flag said "accredited" without saying by whom or until when.
    conn = op.get_bind()
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("accredited", sa.Boolean()))
    ids = [r[0] for r in conn.execute(sa.select(users.c.id).where(users.c.accredited))]
    if ids:
        now, today = datetime.now(UTC), date.today()
        op.bulk_insert(evidence, [
            {"user_id": i, "kind": "legacy-flag", "issuer": "ndl (accredited flag)",
             "reference": "legacy-flag", "issued_on": today, "expires_on": None,
             "recorded_by": "migration 0016", "recorded_at": now, "revoked_at": None,
             "revoked_reason": "", "reminded_at": None} for i in ids])
    if conn.dialect.name == "sqlite":
        # SQLite (3.35+) drops the column in place. Batch mode would copy and DROP the users
        # table, and with foreign keys on that cascades to every row pointing at a user
        # (roles, tokens, this very evidence).
        op.execute("ALTER TABLE users DROP COLUMN accredited")
    else:
        op.drop_column("users", "accredited")


def downgrade() -> None:
    op.add_column("users", sa.Column("accredited", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    conn = op.get_bind()
    conn.execute(sa.text(
        "UPDATE users SET accredited = :t WHERE id IN (SELECT user_id FROM evidence WHERE "
        "kind IN ('legacy-flag', 'accredited-researcher') AND revoked_at IS NULL)"),
        {"t": True})
    op.drop_table("requirement_baseline")
    op.drop_index("ix_project_references_project_id", "project_references")
    op.drop_table("project_references")
    op.drop_index("ix_evidence_user_id", "evidence")
    op.drop_table("evidence")

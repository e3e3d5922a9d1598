"""keys: rotation with overlap and revocation for the hub, datasites and parties

Every datasite's and party's existing public key gets a row (active since it registered), so
an installation from before this revision keeps working; the hub's key gets its row when the
hub next starts (its key lives in a file, not in the database).

Revision ID: 0013_keys
Revises: 0012_identity
Create Date: 2026-12-06
"""

import base64
import hashlib

import sqlalchemy as sa
from alembic import op

import ndl.core.db

revision = "0013_keys"
down_revision = "0012_identity"
branch_labels = None
depends_on = None


def _fingerprint(public_b64: str) -> str:
    raw = base64.urlsafe_b64decode(public_b64 + "=" * (-len(public_b64) % 4))
    return hashlib.sha256(raw).hexdigest()[:16]


def upgrade() -> None:
    keys = op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("not_before", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retire_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", ndl.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("endorsement", sa.JSON(), nullable=True),
        sa.Column("revocation", sa.JSON(), nullable=True),
        sa.Column("created_at", ndl.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
        sa.UniqueConstraint("public_key"),
    )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signing_keys_owner"), ["owner"], unique=False)
    conn = op.get_bind()
    rows = []
    for table, prefix in (("datasites", "datasite:"), ("parties", "party:")):
        old = sa.table(table, sa.column("id", sa.String()), sa.column("public_key", sa.String()),
                       sa.column("registered_at", ndl.core.db.UTCDateTime()))
        for ident, public_key, registered in conn.execute(
                sa.select(old.c.id, old.c.public_key, old.c.registered_at)):
            rows.append({"owner": prefix + ident, "public_key": public_key,
                         "fingerprint": _fingerprint(public_key), "not_before": registered,
                         "reason": "", "created_at": registered})
    if rows:
        op.bulk_insert(keys, rows)


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_keys_owner"))
    op.drop_table("signing_keys")

"""keys: rotation with overlap and revocation for the hub, datasites and parties

Revision ID: 0013_keys
Revises: 0012_identity
Create Date: 2026-12-06
"""

import sqlalchemy as sa  # noqa: F401 - used once the tables are added
from alembic import op  # noqa: F401

revision = "0013_keys"
down_revision = "0012_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

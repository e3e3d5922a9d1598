"""evidence on people and projects: accreditations and approvals with expiry

Revision ID: 0016_evidence
Revises: 0015_federation_lifecycle
Create Date: 2026-12-06
"""

import sqlalchemy as sa  # noqa: F401 - used once the tables are added
from alembic import op  # noqa: F401

revision = "0016_evidence"
down_revision = "0015_federation_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""joining and leaving, datasite status, withdrawal, deletion, closure, retention

Revision ID: 0015_federation_lifecycle
Revises: 0014_incidents_security_log
Create Date: 2026-12-06
"""

import sqlalchemy as sa  # noqa: F401 - used once the tables are added
from alembic import op  # noqa: F401

revision = "0015_federation_lifecycle"
down_revision = "0014_incidents_security_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

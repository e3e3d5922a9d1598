"""incidents, notices and the security log

Revision ID: 0014_incidents_security_log
Revises: 0013_keys
Create Date: 2026-12-06
"""

import sqlalchemy as sa  # noqa: F401 - used once the tables are added
from alembic import op  # noqa: F401

revision = "0014_incidents_security_log"
down_revision = "0013_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

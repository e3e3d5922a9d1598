"""identity: suspension of users and datasites, sign-in through OpenID Connect

Revision ID: 0012_identity
Revises: 0011_mock_method_text
Create Date: 2026-12-06
"""

import sqlalchemy as sa  # noqa: F401 - used once the tables are added
from alembic import op  # noqa: F401

revision = "0012_identity"
down_revision = "0011_mock_method_text"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""mocks: the method's description as text of any length

Revision ID: 0011_mock_method_text
Revises: 0010_search_num
Create Date: 2026-12-06

A mock's method names its privacy parameters, its columns and its fabricated identifiers; for
a dataset with nine columns it passed the 200 characters of ``dataset_mocks.method``, and
PostgreSQL refused the upload (SQLite does not enforce the length, so only PostgreSQL hubs
lost those mocks). Found by the federation load test.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_mock_method_text"
down_revision = "0010_search_num"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite keeps any length anyway, but its schema should say what the model says (batch
    # mode copies the table there; mocks are few).
    with op.batch_alter_table("dataset_mocks") as batch:
        batch.alter_column("method", type_=sa.Text(), existing_type=sa.String(200),
                           existing_nullable=False)


def downgrade() -> None:
    op.execute("UPDATE dataset_mocks SET method = substr(method, 1, 200)")
    with op.batch_alter_table("dataset_mocks") as batch:
        batch.alter_column("method", type_=sa.String(200), existing_type=sa.Text(),
                           existing_nullable=False)

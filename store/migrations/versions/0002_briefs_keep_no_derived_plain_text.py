"""briefs keep no derived plain text: it is made from the HTML when asked for

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("briefs") as batch_op:
        batch_op.drop_column("content_text")


def downgrade() -> None:
    with op.batch_alter_table("briefs") as batch_op:
        batch_op.add_column(
            sa.Column("content_text", sa.String(), nullable=False, server_default="")
        )

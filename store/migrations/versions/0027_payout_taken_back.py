"""what came back of a paid payout (a reversal, a refund), for tax figures net of it

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payouts") as table:
        table.add_column(
            sa.Column("taken_back_cents", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("payouts") as table:
        table.drop_column("taken_back_cents")

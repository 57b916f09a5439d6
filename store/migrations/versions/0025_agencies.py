"""creators paid through an agency: the roster's agency, and the one each payout went through

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("roster_members") as table:
        table.add_column(sa.Column("agency", sa.String(length=48), nullable=True))
    with op.batch_alter_table("payouts") as table:
        table.add_column(sa.Column("agency", sa.String(length=48), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payouts") as table:
        table.drop_column("agency")
    with op.batch_alter_table("roster_members") as table:
        table.drop_column("agency")

"""rate windows: each remote account's rate limit shared by every process on the store (the
slots granted in its current window, and a pause the remote asked for)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_windows",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("slots", sa.JSON(), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "account"),
    )


def downgrade() -> None:
    op.drop_table("rate_windows")

"""sprint calendar: each sprint's steps done or waiting for a go-ahead, and whether a live
sprint is running, paused or stopped

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sprint_runs") as batch:
        batch.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="running")
        )
    op.create_table(
        "sprint_steps",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=48), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("go_ahead_by", sa.String(), nullable=True),
        sa.Column("go_ahead_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.PrimaryKeyConstraint("campaign_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("sprint_steps")
    with op.batch_alter_table("sprint_runs") as batch:
        batch.drop_column("state")

"""sprint runs: a campaign's sprint once started (live or rehearsal) and how far it has got;
follow-ups found by their outbox message when it is sent

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sprint_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("sample", sa.Float(), nullable=False),
        sa.Column("holdout", sa.JSON(), nullable=False),
        sa.Column("weeks_done", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("campaign_id"),
    )
    op.create_index("ix_followups_outbox_id", "followups", ["outbox_id"])


def downgrade() -> None:
    op.drop_index("ix_followups_outbox_id", "followups")
    op.drop_table("sprint_runs")

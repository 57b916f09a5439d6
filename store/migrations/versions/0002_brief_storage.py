"""brief storage: the campaign's part of brief inputs kept once per version of it; no stored
plain text (it is made from the HTML when asked for)

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
    op.create_table(
        "brief_campaign_inputs",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index(
        "ix_brief_campaign_inputs_campaign_id", "brief_campaign_inputs", ["campaign_id"]
    )
    with op.batch_alter_table("briefs") as batch_op:
        batch_op.drop_column("content_text")


def downgrade() -> None:
    with op.batch_alter_table("briefs") as batch_op:
        batch_op.add_column(
            sa.Column("content_text", sa.String(), nullable=False, server_default="")
        )
    op.drop_index("ix_brief_campaign_inputs_campaign_id", "brief_campaign_inputs")
    op.drop_table("brief_campaign_inputs")

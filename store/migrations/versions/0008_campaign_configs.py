"""campaign configs: the policy, follow-up rules and brief templates a campaign was applied with,
kept in the store with their hash, and each campaign's current version of each

A campaign applied before this revision has no versions (the columns stay empty): a migration
cannot read the campaign's folder, so runs ask for the campaign to be applied again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("policy_hash", "followups_hash", "templates_hash")


def upgrade() -> None:
    op.create_table(
        "campaign_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "kind", "hash"),
    )
    with op.batch_alter_table("campaigns") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        for column in COLUMNS:
            batch.drop_column(column)
    op.drop_table("campaign_configs")

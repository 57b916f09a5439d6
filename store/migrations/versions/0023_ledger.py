"""the payments ledger: each creator's earnings as double-entry postings, made once each

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("posting", sa.String(length=120), nullable=False),
        sa.Column("account", sa.String(length=40), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("cause", sa.String(length=120), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("reverses", sa.String(length=120), nullable=True),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["roster_members.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("posting", "account"),
    )
    op.create_index(
        "ix_ledger_entries_campaign_member", "ledger_entries", ["campaign_id", "member_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_campaign_member", table_name="ledger_entries")
    op.drop_table("ledger_entries")

"""paying creators: contracts, approvals of what they are owed, payout accounts, payouts, W-9s

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def _owned() -> list[sa.Column]:
    """The columns every table here has: its id and the roster member it is about."""
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("roster_members.id"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "payment_approvals",
        *_owned(),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("needed", sa.Integer(), nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("posting", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_payment_approvals_member", "payment_approvals", ["member_id", "status"])
    op.create_table(
        "payout_accounts",
        *_owned(),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("account", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id"),
    )
    op.create_table(
        "payouts",
        *_owned(),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("account", sa.String(length=254), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("remote_id", sa.String(length=120), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
    )
    op.create_index("ix_payouts_campaign_status", "payouts", ["campaign_id", "status"])
    op.create_index("ix_payouts_member_id", "payouts", ["member_id"])
    op.create_table(
        "tax_forms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("creator_id", sa.Integer(), sa.ForeignKey("creators.id"), nullable=False),
        sa.Column("form", sa.String(length=8), nullable=False),
        sa.Column("collected_on", sa.Date(), nullable=False),
        sa.Column("legal_name", sa.String(length=200), nullable=True),
        sa.Column("tin_last4", sa.String(length=4), nullable=True),
        sa.Column("business", sa.Boolean(), nullable=False),
        sa.Column("street", sa.String(length=34), nullable=True),
        sa.Column("street2", sa.String(length=34), nullable=True),
        sa.Column("city", sa.String(length=30), nullable=True),
        sa.Column("state", sa.String(length=2), nullable=True),
        sa.Column("zip", sa.String(length=9), nullable=True),
        sa.Column("recorded_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("creator_id"),
    )


    op.create_table(
        "contracts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("roster_members.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed_name", sa.String(length=200), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signed_address", sa.String(length=64), nullable=True),
        sa.Column("signed_user_agent", sa.String(length=500), nullable=True),
        sa.Column("countersigned_by", sa.String(length=254), nullable=True),
        sa.Column("countersigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pdf_file", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id", "version"),
    )
    op.create_index("ix_contracts_campaign_id", "contracts", ["campaign_id"])
    op.create_index("ix_contracts_member_id", "contracts", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_contracts_member_id", table_name="contracts")
    op.drop_index("ix_contracts_campaign_id", table_name="contracts")
    op.drop_table("contracts")
    op.drop_table("tax_forms")
    op.drop_index("ix_payouts_member_id", table_name="payouts")
    op.drop_index("ix_payouts_campaign_status", table_name="payouts")
    op.drop_table("payouts")
    op.drop_table("payout_accounts")
    op.drop_index("ix_payment_approvals_member", table_name="payment_approvals")
    op.drop_table("payment_approvals")

"""tiktok accounts: business accounts connected by OAuth with their sealed tokens, and the
campaign of each DM conversation; comments polled keep the id their webhook gives them

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tiktok_accounts",
        sa.Column("business_id", sa.String(length=128), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("region", sa.String(length=2), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("access_token", sa.String(), nullable=False),
        sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refresh_token", sa.String(), nullable=False),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["roster_members.id"]),
        sa.PrimaryKeyConstraint("business_id"),
    )
    op.create_table(
        "tiktok_conversations",
        sa.Column("conversation_id", sa.String(length=128), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["roster_members.id"]),
        sa.PrimaryKeyConstraint("conversation_id"),
    )
    # A polled comment is stored as `<comment_id>:insert`, the id its comment.update webhook
    # gives it, so that the two count as one.
    payload_comment = (
        "payload ->> 'comment_id'"
        if op.get_bind().dialect.name == "postgresql"
        else "json_extract(payload, '$.comment_id')"
    )
    op.execute(
        sa.text(
            "UPDATE engagement_events SET external_id = external_id || :suffix "
            "WHERE source = 'tiktok' AND type IN ('comment', 'reply') "
            f"AND external_id = {payload_comment}"
        ).bindparams(suffix=":insert")
    )


def downgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE engagement_events SET external_id = substr(external_id, 1, "
            "length(external_id) - 7) WHERE source = 'tiktok' AND external_id LIKE :pattern"
        ).bindparams(pattern="%:insert")
    )
    op.drop_table("tiktok_conversations")
    op.drop_table("tiktok_accounts")

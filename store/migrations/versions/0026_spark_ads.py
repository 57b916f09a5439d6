"""Spark Ads: creators' authorizations of their posts, the boosts behind them, their daily
paid metrics

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spark_authorizations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("creative_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=200), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("consent", sa.String(length=254), nullable=False),
        sa.Column("identity_id", sa.String(length=120), nullable=True),
        sa.Column("item_id", sa.String(length=64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["creative_id"], ["creatives.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_spark_authorizations_campaign_id", "spark_authorizations", ["campaign_id"]
    )
    op.create_index(
        "ix_spark_authorizations_creative_id", "spark_authorizations", ["creative_id"]
    )
    op.create_table(
        "spark_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("creative_id", sa.Integer(), nullable=False),
        sa.Column("asked_by", sa.String(length=254), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["creative_id"], ["creatives.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("creative_id"),
    )
    op.create_index("ix_spark_requests_campaign_id", "spark_requests", ["campaign_id"])
    op.create_table(
        "boosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("creative_id", sa.Integer(), nullable=False),
        sa.Column("authorization_id", sa.Integer(), nullable=False),
        sa.Column("daily_budget_cents", sa.Integer(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("remote_campaign_id", sa.String(length=64), nullable=True),
        sa.Column("remote_adgroup_id", sa.String(length=64), nullable=True),
        sa.Column("remote_ad_id", sa.String(length=64), nullable=True),
        sa.Column("started_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["authorization_id"], ["spark_authorizations.id"]),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["creative_id"], ["creatives.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_boosts_campaign_id", "boosts", ["campaign_id"])
    op.create_index("ix_boosts_creative_id", "boosts", ["creative_id"])
    op.create_table(
        "paid_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("boost_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *[
            sa.Column(name, sa.Integer(), nullable=False)
            for name in (
                "impressions", "reach", "clicks", "spend_cents", "conversions", "video_plays",
                "watched_2s", "watched_6s",
            )
        ],
        sa.Column("average_play_seconds", sa.Float(), nullable=False),
        *[
            sa.Column(name, sa.Integer(), nullable=False)
            for name in ("watched_25", "watched_50", "watched_75", "watched_100")
        ],
        sa.Column("pulled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["boost_id"], ["boosts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("boost_id", "day"),
    )
    op.create_index("ix_paid_metrics_boost_id", "paid_metrics", ["boost_id"])


def downgrade() -> None:
    op.drop_table("paid_metrics")
    op.drop_table("boosts")
    op.drop_table("spark_requests")
    op.drop_table("spark_authorizations")

"""signup confirmation: consent asked for on the signup page waits, pending, for the person to
confirm it (a link by email, YES by text), and the signup page's limits per client and
address are counted in the rate windows, whose idle rows may go

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_index("ix_consent_requests_contact_id", "consent_requests", ["contact_id"])
    with op.batch_alter_table("rate_windows") as batch:
        batch.add_column(sa.Column("idle_at", sa.Float(), nullable=False, server_default="0"))
        batch.create_index("ix_rate_windows_idle", ["kind", "idle_at"])


def downgrade() -> None:
    with op.batch_alter_table("rate_windows") as batch:
        batch.drop_index("ix_rate_windows_idle")
        batch.drop_column("idle_at")
    op.drop_index("ix_consent_requests_contact_id", table_name="consent_requests")
    op.drop_table("consent_requests")

"""approver credentials: sign-in links, web sessions and API tokens (hashes only)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approver_credentials",
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("secret_hash"),
    )
    op.create_index("ix_approver_credentials_email", "approver_credentials", ["email"])


def downgrade() -> None:
    op.drop_index("ix_approver_credentials_email", "approver_credentials")
    op.drop_table("approver_credentials")

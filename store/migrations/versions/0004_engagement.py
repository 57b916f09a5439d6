"""engagement: contact tags, one contact per platform handle, the rules' queue, polling cursors

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
    op.create_index(
        "ux_contacts_platform_handle", "contacts", ["platform", "handle"], unique=True
    )
    op.create_index(
        "ix_engagement_events_waiting",
        "engagement_events",
        ["id"],
        postgresql_where=sa.text("processed_at IS NULL"),
        sqlite_where=sa.text("processed_at IS NULL"),
    )
    op.create_table(
        "poll_cursors",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("cursor", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "key"),
    )


def downgrade() -> None:
    op.drop_table("poll_cursors")
    op.drop_index("ix_engagement_events_waiting", "engagement_events")
    op.drop_index("ux_contacts_platform_handle", "contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("tags")

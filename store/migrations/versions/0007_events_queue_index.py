"""engagement events: the waiting queue is found by its partial index alone; the full index on
processed_at cost every processed event an index update and led PostgreSQL, before it had
statistics for a fresh load, to scan every event for a batch

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_engagement_events_processed_at", table_name="engagement_events")


def downgrade() -> None:
    op.create_index(
        "ix_engagement_events_processed_at", "engagement_events", ["processed_at"], unique=False
    )

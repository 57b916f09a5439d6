"""outbox claim index: a destination's pending messages in the order a drain takes them, so a
claim reads its batch and no more, however many messages other destinations have waiting; only
pending ones, so a message sent leaves it rather than moving within it

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_outbox_claim",
        "outbox",
        ["channel", "destination", "available_at", "id"],
        sqlite_where=pending,
        postgresql_where=pending,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_claim", "outbox")

"""outbox leased index: the messages a drain holds right now, by destination and subject, so
that a claim can pass over a person whose message another drain is sending (one subject's
messages to a destination are in one drain's hands at a time, on any machine)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    leased = sa.text("lease_id IS NOT NULL")
    op.create_index(
        "ix_outbox_leased",
        "outbox",
        ["destination", "subject_type", "subject_id"],
        sqlite_where=leased,
        postgresql_where=leased,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_leased", "outbox")

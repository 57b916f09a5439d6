"""lead sync: find a person's outbox messages (their sync rows, their remote ids) by subject

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_subject", "outbox", ["subject_type", "subject_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_subject", "outbox")

"""ledger cause index: a creative's earnings found by their cause (`creative:12`) without reading
the whole ledger, which grows with the campaign: each creative earned read it once, so a
1,000-creator sprint's weekly steps grew with the square of its size

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-06
"""

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_entries_cause", "ledger_entries", ["cause"])


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_cause", "ledger_entries")

"""consent records: every consent given, confirmed or withdrawn, with its source, the words
shown or written, and where it came from, append-only

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("wording", sa.String(), nullable=True),
        sa.Column("origin", sa.String(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_consent_records_contact_id", "consent_records", ["contact_id"])
    # The consents on record before: one entry each, as they stand (no words, no origin).
    op.execute(
        "INSERT INTO consent_records (contact_id, channel, status, source, recorded_at) "
        "SELECT contact_id, channel, status, source, changed_at FROM contact_consents "
        "ORDER BY changed_at, id"
    )


def downgrade() -> None:
    op.drop_index("ix_consent_records_contact_id", table_name="consent_records")
    op.drop_table("consent_records")

"""timers entity index: a review task's timers found by the task without reading every timer
not yet fired, which grow with the campaign: each decision read them all, so a 1,000-creator
sprint's reviews grew with the square of its size

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-06
"""

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_timers_entity", "timers", ["entity_type", "entity_id"])


def downgrade() -> None:
    op.drop_index("ix_timers_entity", "timers")

"""review comments: approvers' comments on the version under review, each optionally at a
moment of its video

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=254), nullable=False),
        sa.Column("at_seconds", sa.Integer(), nullable=True),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"]),
        sa.ForeignKeyConstraint(["draft_id"], ["creative_drafts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_comments_task_id", "review_comments", ["task_id"])
    op.create_index("ix_review_comments_draft_id", "review_comments", ["draft_id"])


def downgrade() -> None:
    op.drop_index("ix_review_comments_draft_id", table_name="review_comments")
    op.drop_index("ix_review_comments_task_id", table_name="review_comments")
    op.drop_table("review_comments")

"""draft video file: a video the creator uploaded with a version of their creative, kept under
RALLY_HOME/uploads by its content's hash

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("creative_drafts") as batch:
        batch.add_column(sa.Column("video_file", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("creative_drafts") as batch:
        batch.drop_column("video_file")

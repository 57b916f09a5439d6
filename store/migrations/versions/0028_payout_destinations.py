"""payout messages kept per campaign and provider (`<campaign id>:<provider>`), so that a run
for one campaign sends its own payouts only

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05
"""


import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT outbox.id, outbox.destination, payouts.campaign_id FROM outbox "
            "JOIN payouts ON CAST(payouts.id AS TEXT) = outbox.subject_id "
            "WHERE outbox.channel = 'payout' AND outbox.subject_type = 'payout' "
            "AND outbox.destination NOT LIKE '%:%'"
        )
    ).all()
    for id_, provider, campaign_id in rows:
        conn.execute(
            sa.text("UPDATE outbox SET destination = :d WHERE id = :id"),
            {"d": f"{campaign_id}:{provider}", "id": id_},
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, destination FROM outbox WHERE channel = 'payout'")
    ).all()
    for id_, destination in rows:
        conn.execute(
            sa.text("UPDATE outbox SET destination = :d WHERE id = :id"),
            {"d": destination.partition(":")[2] or destination, "id": id_},
        )

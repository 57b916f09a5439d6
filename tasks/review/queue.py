"""The open review tasks as `rally review queue` lists them: plain columns in one query, so it
loads neither the review pages' helpers nor, unless asked to filter by approver, the campaign
file's classes."""

from datetime import datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from store.models import Campaign, Creative, CreativeDraft, ReviewStatus, ReviewTask
from tasks.campaigns.campaign import campaign_spec


def review_queue(
    session: Session,
    *,
    approver: str | None = None,
    tier: str | None = None,
    overdue: bool = False,
    now: datetime,
    campaign_id: int | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Open review tasks, overdue first, then by due time; only an approver's groups, or one
    campaign's tasks, if given. With `limit`, a page by task id instead (after `after`), read
    for that page alone: the API's, which has no approver to filter for.
    One query of plain columns (no objects: a queue of thousands stays quick), and each
    campaign read once."""
    assert limit is None or approver is None, "a page is read in SQL: no approver filter"
    query: Any = (
        sa_select(
            col(ReviewTask.id),
            col(ReviewTask.tier),
            col(ReviewTask.approver_group),
            col(ReviewTask.escalated_to),
            col(ReviewTask.due_at),
            col(CreativeDraft.version),
            col(CreativeDraft.caption),
            col(Creative.id).label("creative"),
            col(Creative.campaign_id),
        )
        .join(CreativeDraft, col(CreativeDraft.id) == col(ReviewTask.draft_id))
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .where(col(ReviewTask.status) == ReviewStatus.OPEN)
        .order_by(col(ReviewTask.due_at))
    )
    if campaign_id is not None:
        query = query.where(col(Creative.campaign_id) == campaign_id)
    if tier:
        query = query.where(col(ReviewTask.tier) == tier)
    if overdue:
        query = query.where(col(ReviewTask.due_at) <= now)
    if limit is not None:
        query = query.order_by(None).order_by(col(ReviewTask.id)).limit(limit)
        if after is not None:
            query = query.where(col(ReviewTask.id) > after)
    rows = session.execute(query).all()
    ids = {row.campaign_id for row in rows}
    campaigns = {c.id: c for c in session.exec(select(Campaign).where(col(Campaign.id).in_(ids)))}
    queue = []
    for row in rows:
        campaign = campaigns[row.campaign_id]
        if approver and not _may_decide(approver, campaign, {row.approver_group, row.escalated_to}):
            continue
        late = row.due_at is not None and row.due_at <= now
        queue.append(
            {
                "task": row.id,
                "campaign": campaign.slug,
                "creative": row.creative,
                "version": row.version,
                "tier": row.tier,
                "group": row.approver_group,
                "escalated_to": row.escalated_to,
                "due_at": row.due_at.isoformat() if row.due_at else None,
                "overdue": late,
                "caption": row.caption,
            }
        )
    if limit is not None:
        return queue
    return sorted(queue, key=lambda r: (not r["overdue"], r["due_at"] or ""))


def _may_decide(approver: str, campaign: Campaign, groups: set[str | None]) -> bool:
    approvers = campaign_spec(campaign).approvers
    return any(approver.lower() in approvers.get(g or "", []) for g in groups)

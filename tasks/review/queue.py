"""The open review tasks as `rally review queue` lists them: plain columns in one query of the
plain tables (`store.tables`), so it loads neither the review's model classes nor, unless asked
to filter by approver, the campaign file's classes."""

from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy import select as sa_select
from sqlmodel import Session

from store.tables import campaigns, creative_drafts, creatives, review_tasks
from tasks.campaigns.campaign import campaign_spec

OPEN = "open"  # ReviewStatus.OPEN, without loading the review's model classes


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
    task, draft, creative = review_tasks.c, creative_drafts.c, creatives.c
    query: Any = (
        sa_select(
            task.id,
            task.tier,
            task.approver_group,
            task.escalated_to,
            task.due_at,
            draft.version,
            draft.caption,
            creative.id.label("creative"),
            creative.campaign_id,
        )
        .join(creative_drafts, draft.id == task.draft_id)
        .join(creatives, creative.id == draft.creative_id)
        .where(task.status == OPEN)
        .order_by(task.due_at)
    )
    if campaign_id is not None:
        query = query.where(creative.campaign_id == campaign_id)
    if tier:
        query = query.where(task.tier == tier)
    if overdue:
        query = query.where(task.due_at <= now)
    if limit is not None:
        query = query.order_by(None).order_by(task.id).limit(limit)
        if after is not None:
            query = query.where(task.id > after)
    rows = session.execute(query).all()
    ids = {row.campaign_id for row in rows}
    found = session.execute(sa_select(campaigns).where(campaigns.c.id.in_(ids)))
    by_id = {c.id: c for c in found}
    queue = []
    for row in rows:
        campaign = by_id[row.campaign_id]
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


def _may_decide(approver: str, campaign: Row[Any], groups: set[str | None]) -> bool:
    approvers = campaign_spec(campaign).approvers
    return any(approver.lower() in approvers.get(g or "", []) for g in groups)

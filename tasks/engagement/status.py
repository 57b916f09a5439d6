"""`rally events status`: a campaign's events by type, and its follow-ups by rule and outcome
(sent, queued, delayed, done, or the reason one was withheld: capped, opted out, no consent)."""

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from store.models import EngagementEvent, FollowUp, FollowUpStatus
from tasks.campaigns.campaign import get_campaign
from tasks.engagement.consent import outcome_kind


def outcome(status: str, reason: str | None, due_at: datetime, now: datetime) -> str:
    if status == FollowUpStatus.FAILED:
        return "failed"
    if status == FollowUpStatus.WITHHELD:
        return outcome_kind(reason or "withheld")
    if status == FollowUpStatus.QUEUED and due_at > now:
        return "delayed"
    if status == FollowUpStatus.CANCELLED:
        return f"cancelled ({reason})" if reason else "cancelled"
    return str(status)


def engagement_status(session: Session, slug: str, *, now: datetime) -> dict[str, Any]:
    campaign = get_campaign(session, slug)
    events = dict(
        session.execute(
            sa_select(col(EngagementEvent.type), func.count())
            .where(col(EngagementEvent.campaign_id) == campaign.id)
            .group_by(col(EngagementEvent.type))
        ).all()
    )
    redelivered, unprocessed = session.execute(
        sa_select(
            func.coalesce(func.sum(col(EngagementEvent.deliveries) - 1), 0),
            func.count().filter(col(EngagementEvent.processed_at).is_(None)),
        ).where(col(EngagementEvent.campaign_id) == campaign.id)
    ).one()
    by_rule: dict[str, Counter[str]] = {}
    outcomes: Counter[str] = Counter()
    rows = session.execute(
        sa_select(
            col(FollowUp.rule_id), col(FollowUp.status), col(FollowUp.reason), col(FollowUp.due_at)
        ).where(col(FollowUp.campaign_id) == campaign.id)
    )
    for rule_id, status, reason, due_at in rows:
        kind = outcome(status, reason, due_at, now)
        by_rule.setdefault(rule_id, Counter())[kind] += 1
        outcomes[kind] += 1
    return {
        "campaign": slug,
        "events": dict(sorted(events.items())),
        "events_total": sum(events.values()),
        "redelivered": int(redelivered or 0),
        "unprocessed": int(unprocessed or 0),
        "followups": dict(outcomes.most_common()),
        "by_rule": {rule: dict(c.most_common()) for rule, c in sorted(by_rule.items())},
    }

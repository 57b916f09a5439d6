"""Review deadlines: due reminders to approvers, and escalation of an overdue task to the
tier's backup group. No tier approves by timeout: an escalated task stays open and the creative
stays blocked.
"""

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.policy import Policy
from store.audit import Change, record
from store.db import transaction
from store.models import (
    Campaign,
    Creative,
    CreativeDraft,
    ReviewStatus,
    ReviewTask,
    Timer,
)
from tasks.campaigns.configs import campaign_policy
from tasks.review.routing import (
    ESCALATION,
    REMINDER,
    group_members,
    notify_approvers,
    task_context,
)


def fire_review_timers(
    session: Session, *, now: datetime, policy_for: Any, public_url: str = ""
) -> dict[str, int]:
    """Up to 500 due reminders and escalations (`closed`: timers whose task was decided). An
    overdue task is escalated to its backup group and stays open: no tier approves by timeout."""
    done = {"reminded": 0, "escalated": 0, "closed": 0}
    timers = session.exec(
        select(Timer)
        .where(
            col(Timer.kind).in_((REMINDER, ESCALATION)),
            col(Timer.fired_at).is_(None),
            col(Timer.due_at) <= now,
        )
        .order_by(col(Timer.due_at))
        .limit(500)
    ).all()
    for timer in timers:
        timer.fired_at = now
        session.add(timer)
        task = session.get(ReviewTask, int(timer.entity_id))
        if task is None or task.status != ReviewStatus.OPEN:
            timer.payload = {"outcome": "decided before it was due"}
            done["closed"] += 1
            continue
        _, _, spec = task_context(session, task)
        due = f"{task.due_at:%Y-%m-%d %H:%M} UTC"
        if timer.kind == REMINDER:
            task.reminded_at = now
            notify_approvers(
                session,
                group_members(spec, task.approver_group),
                task,
                key=f"review:{task.id}:reminder",
                subject=f"Reminder: review task {task.id} is due {due}",
                text=f"Task {task.id} ({task.tier}) still needs a decision.",
                now=now,
                public_url=public_url,
            )
            done["reminded"] += 1
        else:
            _escalate(session, task, spec, policy_for(task), now=now, public_url=public_url)
            done["escalated"] += 1
        timer.payload = {"outcome": timer.kind.split(".")[1] + " sent"}
    return done


def _escalate(
    session: Session,
    task: ReviewTask,
    spec: CampaignSpec,
    policy: Policy,
    *,
    now: datetime,
    public_url: str,
) -> None:
    tier = next((t for t in policy.spec.tiers if t.id == task.tier), None)
    backup = tier.backup_group if tier else None
    task.escalated_at, task.escalated_to = now, backup
    session.add(task)
    notify_approvers(
        session,
        group_members(spec, backup) + group_members(spec, task.approver_group),
        task,
        key=f"review:{task.id}:escalated",
        subject=f"Overdue: review task {task.id} ({task.tier}) is escalated",
        text=(
            f"Task {task.id} passed its deadline without a decision. The creative stays blocked "
            f"until someone in {task.approver_group} or {backup or 'no backup group'} decides."
        ),
        now=now,
        public_url=public_url,
    )
    summary = f"{task.tier} review task {task.id} overdue: escalated to {backup or 'nobody'}"
    record(
        session,
        [
            Change(
                "rally",
                "review.escalated",
                "review_task",
                task.id or 0,
                summary,
                {"backup_group": backup},
            )
        ],
    )


def sweep_reviews(engine: Engine, *, now: datetime, public_url: str = "") -> dict[str, int]:
    """Fire every due review timer; each batch is one transaction."""
    total = {"reminded": 0, "escalated": 0, "closed": 0}
    while True:
        with transaction(engine) as session:

            @lru_cache(maxsize=64)
            def policy_of(campaign_id: int) -> Policy:
                campaign = session.get(Campaign, campaign_id)
                assert campaign is not None
                return campaign_policy(session, campaign)

            def policy_for_task(task: ReviewTask) -> Policy:
                draft = session.get(CreativeDraft, task.draft_id)
                creative = session.get(Creative, draft.creative_id) if draft else None
                assert creative is not None
                return policy_of(creative.campaign_id)

            done = fire_review_timers(
                session, now=now, policy_for=policy_for_task, public_url=public_url
            )
        for key, value in done.items():
            total[key] += value
        if sum(done.values()) < 500:
            return total

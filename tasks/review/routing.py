"""Routing a checked draft through its review: the tiers the campaign's policy asks for, each
tier's task opened with its reminder and escalation timers, its approvers emailed (their sign-in
links scrubbed from the store once sent), and tasks closed when a newer version replaces the draft.

A review is a state machine in the store: each tier of a draft is a `ReviewTask` that waits,
opens, and is decided (`decisions`); nothing sits blocked waiting for a person.
"""

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.errors import RallyError
from config.policy import Policy, TierSpec
from store.bulk import insert_rows
from store.models import (
    Campaign,
    Creative,
    CreativeDraft,
    CreativeStatus,
    Creator,
    ReviewStatus,
    ReviewTask,
    RosterMember,
    Timer,
)
from tasks.campaigns.campaign import campaign_spec
from tasks.drain import Handler
from tasks.outbox import Claimed, enqueue, scrub_links
from tasks.review.checks import DraftFacts, Finding

REMINDER, ESCALATION = "review.reminder", "review.escalation"


class ReviewRefused(RallyError):
    """A decision Rally will not record, with the reason the approver needs."""


def in_sample(policy: Policy, key: str, rate: float) -> bool:
    """A reproducible draw: the same creative under the same policy is always in or out."""
    digest = hashlib.sha256(f"{policy.version}:{key}".encode()).hexdigest()
    return int(digest[:8], 16) / 0x1_0000_0000 < rate


def route(policy: Policy, facts: DraftFacts, findings: list[Finding], key: str) -> list[TierSpec]:
    """The tiers this draft goes through, in the policy's order."""
    warned = any(not f.passed and f.severity == "warn" for f in findings)
    flags = {
        "always": True,
        "paid": facts.paid,
        "political": facts.political,
        "sponsored": facts.sponsored,
        "ai_generated": facts.ai_generated,
        "warning": warned,
    }
    return [
        tier
        for tier in policy.spec.tiers
        if any(flags.get(reason, False) for reason in tier.when)
        or ("sample" in tier.when and in_sample(policy, key, tier.sample_rate))
    ]


def is_paid_placement(creative: Creative) -> bool:
    """Whether the version in review is a posted creative's, to run as a paid placement: a
    creative is posted only once approved, and takes no new version after."""
    return creative.status in (CreativeStatus.POSTED, CreativeStatus.TAKEN_DOWN)


def group_members(spec: CampaignSpec, group: str | None) -> list[str]:
    return list(spec.approvers.get(group or "", []))


def open_task(
    session: Session,
    task: ReviewTask,
    tier: TierSpec,
    spec: CampaignSpec,
    *,
    now: datetime,
    public_url: str = "",
) -> None:
    """Open a tier's task: its deadline, its reminder and escalation timers, its emails."""
    task.status = ReviewStatus.OPEN
    task.due_at = now + timedelta(hours=tier.deadline_hours)
    session.add(task)
    reminder_at = task.due_at - timedelta(hours=tier.reminder_before_hours)
    insert_rows(
        session,
        Timer,
        [
            {"kind": kind, "entity_type": "review_task", "entity_id": str(task.id), "due_at": due}
            for kind, due in ((REMINDER, reminder_at), (ESCALATION, task.due_at))
            if kind == ESCALATION or (tier.reminder_before_hours and reminder_at > now)
        ],
    )
    creative, handle = _about(session, task)
    due = local_time(task.due_at, spec)
    notify_approvers(
        session,
        group_members(spec, tier.group),
        task,
        key=f"review:{task.id}:assigned",
        subject=f'{spec.name}: {tier.name} of @{handle}\'s "{creative.title}" '
        f"(creative {creative.id}, version {creative.current_version})",
        text=f"A draft by @{handle} for {spec.name} waits for your {tier.name.lower()}, due {due}.",
        now=now,
        public_url=public_url,
    )


def local_time(moment: datetime, spec: CampaignSpec) -> str:
    """A moment as the campaign's staff read it: in the campaign's time zone, named."""
    local = moment.astimezone(ZoneInfo(spec.timezone))
    return f"{local:%a %b} {local.day}, {local:%H:%M} {local.tzname()}"


def _about(session: Session, task: ReviewTask) -> tuple[Creative, str]:
    """The creative a task reviews, and its creator's handle."""
    row = session.exec(
        select(Creative, Creator.handle)
        .join(CreativeDraft, col(CreativeDraft.creative_id) == col(Creative.id))
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(CreativeDraft.id == task.draft_id)
    ).one()
    return row[0], row[1]


def notify(session: Session, to: list[str], *, key: str, subject: str, text: str) -> int:
    """Queue one plain email per recipient through the outbox (idempotent per key)."""
    return enqueue(
        session, [review_email(address, key=key, subject=subject, text=text) for address in to]
    )


def review_email(address: str, *, key: str, subject: str, text: str) -> dict[str, Any]:
    return {
        "channel": "email",
        "destination": "reviewer",
        "idempotency_key": f"{key}:{address}",
        "subject_type": "review",
        "subject_id": key,
        "payload": {"to": address, "subject": subject, "text": text, "html": ""},
    }


def notify_approvers(
    session: Session,
    to: list[str],
    task: ReviewTask,
    *,
    key: str,
    subject: str,
    text: str,
    now: datetime,
    public_url: str,
) -> None:
    """One email per approver, each with their own single-use sign-in link to the task."""
    from tasks.review.approvers import sign_in_link

    emails = []
    for address in to:
        how = f"Review it with: rally review show {task.id}"
        if public_url:
            link = sign_in_link(
                session,
                address,
                public_url=public_url,
                now=now,
                next_path=f"/review/tasks/{task.id}",
            )
            how = f"Open it (the link signs you in once): {link}"
        emails.append(review_email(address, key=key, subject=subject, text=f"{text}\n{how}\n"))
    enqueue(session, emails)


SIGN_IN_LINK = re.compile(r"\S+/(?:review|staff)/signin/\S+")


def forget_sign_in_links(session: Session, messages: list[Claimed], _at: datetime) -> None:
    """Review emails sent: the approvers' sign-in links they held are scrubbed, so the store
    keeps no usable copy."""
    scrub_links(session, messages, SIGN_IN_LINK, "[sign-in link sent]")


REVIEW_EMAIL = Handler(sent=forget_sign_in_links)


def notify_creator(session: Session, member_id: int, *, key: str, subject: str, text: str) -> None:
    """Email a creator (by their roster address), greeting them by handle."""
    member = session.get(RosterMember, member_id)
    creator = session.get(Creator, member.creator_id) if member else None
    if creator is not None and creator.email:
        notify(
            session, [creator.email], key=key, subject=subject, text=f"Hi @{creator.handle},{text}"
        )


def cancel_tasks(session: Session, draft_id: int, *, now: datetime) -> None:
    for task in session.exec(
        select(ReviewTask).where(
            ReviewTask.draft_id == draft_id,
            col(ReviewTask.status).in_((ReviewStatus.OPEN, ReviewStatus.WAITING)),
        )
    ):
        task.status = ReviewStatus.CANCELLED
        session.add(task)
        close_timers(session, task, now)


def close_timers(session: Session, task: ReviewTask, now: datetime) -> None:
    timers = Timer.__table__.c  # type: ignore[attr-defined]
    session.execute(
        update(Timer.__table__)  # type: ignore[attr-defined]
        .where(
            timers.entity_type == "review_task",
            timers.entity_id == str(task.id),
            timers.fired_at.is_(None),
        )
        .values(fired_at=now, payload={"outcome": f"task {task.status}"})
    )


def task_context(
    session: Session, task: ReviewTask
) -> tuple[CreativeDraft, Creative, CampaignSpec]:
    """A task's draft, its creative and the campaign's spec."""
    draft = session.get(CreativeDraft, task.draft_id)
    assert draft is not None
    creative = session.get(Creative, draft.creative_id)
    assert creative is not None
    campaign = session.get(Campaign, creative.campaign_id)
    assert campaign is not None
    return draft, creative, campaign_spec(campaign)

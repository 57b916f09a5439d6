"""Brief reminders, and what a brief's email or reminder going out changes in the store.

When a brief's email is sent, the brief is marked sent, the send is audited, and a reminder
timer is set for `brief.reminder_after_days` later (one per creator). When the timer fires and
the creator still has not acknowledged, the reminder email is queued; both go out through the
outbox like every other side effect (`tasks.mail` sends them and calls the handlers here).
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, update
from sqlmodel import Session, col, select

from briefs.environment import BriefTemplates
from config.errors import RallyError
from config.settings import Settings
from store.audit import Change, record
from store.bulk import with_defaults
from store.db import transaction
from store.models import Brief, Campaign, Creator, RosterMember, Timer
from tasks.briefs.emails import email_payload
from tasks.briefs.inputs import as_context
from tasks.briefs.run import (
    REMINDER_TEMPLATES,
    RENDER_ERRORS,
    campaign_templates,
    full_inputs,
    latest_briefs,
)
from tasks.campaigns.campaign import campaign_spec
from tasks.drain import Handler
from tasks.outbox import Claimed, enqueue

REMINDER = "brief.reminder"


def _brief_and_handle(session: Session, brief_id: int) -> tuple[Brief, str, Campaign]:
    row = session.exec(
        select(Brief, Creator.handle, Campaign)
        .join(RosterMember, col(RosterMember.id) == col(Brief.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .join(Campaign, col(Campaign.id) == col(Brief.campaign_id))
        .where(Brief.id == brief_id)
    ).one()
    return row[0], row[1], row[2]


def briefs_sent(session: Session, messages: list[Claimed], at: datetime) -> None:
    """Briefs emailed: each marked sent and audited, and its reminder timer set."""
    for message in messages:
        brief, handle, campaign = _brief_and_handle(session, int(message.subject_id))
        session.execute(update(Brief).where(col(Brief.id) == brief.id).values(sent_at=at))
        summary = f"brief v{brief.version} emailed to @{handle} on {campaign.slug}"
        _audit(session, message, brief, "brief.sent", summary)
        _set_reminder(session, campaign, brief, at)


def reminders_sent(session: Session, messages: list[Claimed], at: datetime) -> None:
    """Reminders emailed: each brief's reminder marked sent and audited."""
    for message in messages:
        brief, handle, campaign = _brief_and_handle(session, int(message.subject_id))
        session.execute(update(Brief).where(col(Brief.id) == brief.id).values(reminder_sent_at=at))
        summary = (
            f"reminder to acknowledge brief v{brief.version} sent to @{handle} on {campaign.slug}"
        )
        _audit(session, message, brief, "brief.reminded", summary)


BRIEF_EMAIL = Handler(sent=briefs_sent)
REMINDER_EMAIL = Handler(sent=reminders_sent)


def _audit(session: Session, message: Claimed, brief: Brief, action: str, summary: str) -> None:
    details = {"to": message.payload.get("to"), "message_id": message.remote_id}
    record(session, [Change("rally", action, "brief", brief.id or 0, summary, details)])


def _set_reminder(session: Session, campaign: Campaign, brief: Brief, sent_at: datetime) -> None:
    """One reminder per brief version, `reminder_after_days` after its email went out."""
    days = campaign_spec(campaign).brief.reminder_after_days
    if not days or brief.acknowledged_at is not None:
        return
    exists = session.exec(
        select(Timer.id).where(
            Timer.kind == REMINDER, Timer.entity_type == "brief", Timer.entity_id == str(brief.id)
        )
    ).first()
    if exists is None:
        row = {
            "kind": REMINDER,
            "entity_type": "brief",
            "entity_id": str(brief.id),
            "due_at": sent_at + timedelta(days=days),
        }
        session.execute(insert(Timer.__table__), [with_defaults(Timer, row)])  # type: ignore[attr-defined]


def queue_due_reminders(session: Session, *, now: datetime, public_url: str) -> int:
    """Fire due reminder timers: queue a reminder for each brief not yet acknowledged. Each
    timer's outcome (queued, acknowledged, superseded, or why it failed) is kept on it."""
    timers = list(
        session.exec(
            select(Timer)
            .where(Timer.kind == REMINDER, col(Timer.fired_at).is_(None), col(Timer.due_at) <= now)
            .order_by(col(Timer.due_at))
            .limit(500)
        )
    )
    briefs = {
        str(b.id): b
        for b in session.exec(
            select(Brief).where(col(Brief.id).in_([int(t.entity_id) for t in timers]))
        )
    }
    latest = latest_briefs(session, list({b.member_id for b in briefs.values()}))
    messages: list[dict[str, Any]] = []
    templates: dict[int, BriefTemplates] = {}  # each campaign's templates, read once per call
    for timer in timers:
        timer.fired_at = now
        brief = briefs.get(timer.entity_id)
        if brief is None or brief.acknowledged_at is not None:
            timer.payload = {"outcome": "acknowledged before the reminder"}
        elif latest[brief.member_id].id != brief.id:
            timer.payload = {"outcome": "a newer version replaced this brief"}
        else:
            try:
                messages.append(_reminder(session, brief, public_url, templates))
                timer.payload = {"outcome": "reminder queued"}
            except (*RENDER_ERRORS, RallyError) as exc:
                timer.payload = {"outcome": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return enqueue(session, messages)


def _reminder(
    session: Session, brief: Brief, public_url: str, templates: dict[int, BriefTemplates]
) -> dict[str, Any]:
    if brief.campaign_id not in templates:
        campaign = session.get(Campaign, brief.campaign_id)
        assert campaign is not None
        templates[brief.campaign_id] = campaign_templates(session, campaign)
    inputs = full_inputs(session, brief)
    context = {key: as_context(value, key) for key, value in inputs.items()}
    payload = email_payload(
        templates[brief.campaign_id], REMINDER_TEMPLATES, context, brief, public_url=public_url
    )
    return {
        "channel": "email",
        "destination": "creator",
        "idempotency_key": f"brief-reminder:{brief.id}",
        "subject_type": "brief_reminder",
        "subject_id": str(brief.id),
        "payload": payload,
    }


def send_reminders(engine: Engine, settings: Settings, *, now: datetime) -> int:
    """Queue the reminders that are due (`queue_due_reminders`) in a transaction of their own."""
    with transaction(engine) as session:
        return queue_due_reminders(session, now=now, public_url=settings.public_url)

"""Whether a recurring job has anything to do now, in one cheap query each, so that a local
timer starts a flow run (and Prefect records one) only when there is work: a `rally serve`
that ticks every minute for twelve weeks would otherwise fill Prefect's local database with
runs that did nothing. Like `tasks.mail`, it stands beside the capabilities whose queues it
looks at.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, exists, select
from sqlmodel import col

from store.db import transaction
from store.models import (
    Boost,
    EngagementEvent,
    OutboxMessage,
    OutboxStatus,
    TikTokAccount,
    Timer,
)
from tasks.briefs.reminders import REMINDER as BRIEF_REMINDER
from tasks.campaigns.campaign import get_campaign
from tasks.leads.records import CHANNEL as LEAD_CHANNEL
from tasks.review.routing import ESCALATION as REVIEW_ESCALATION
from tasks.review.routing import REMINDER as REVIEW_REMINDER
from tasks.sprint.calendar import live_sprints, steps_due
from tasks.webhooks.deliver import webhooks_due
from tasks.webhooks.events import CHANNEL as WEBHOOKS


def _any(engine: Engine, query: Select[Any]) -> bool:
    with transaction(engine, write=False) as session:
        return bool(session.execute(select(exists(query))).scalar())


def outbox_due(engine: Engine, now: datetime, *, leads: bool) -> bool:
    """Lead sync's messages (`leads`), or every other channel's but webhooks', which wait
    with their subscription (`webhooks_due`)."""
    channel = col(OutboxMessage.channel)
    return _any(
        engine,
        select(col(OutboxMessage.id)).where(
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            col(OutboxMessage.available_at) <= now,
            channel == LEAD_CHANNEL if leads else channel.not_in((LEAD_CHANNEL, WEBHOOKS)),
        ),
    )


def delivery_due(engine: Engine, now: datetime) -> bool:
    return outbox_due(engine, now, leads=False) or webhooks_due(engine, now)


def events_waiting(engine: Engine, now: datetime) -> bool:
    return _any(
        engine,
        select(col(EngagementEvent.id)).where(col(EngagementEvent.processed_at).is_(None)),
    )


def timers_due(kinds: tuple[str, ...]) -> Callable[[Engine, datetime], bool]:
    def due(engine: Engine, now: datetime) -> bool:
        return _any(
            engine,
            select(col(Timer.id)).where(
                col(Timer.kind).in_(kinds), col(Timer.fired_at).is_(None), col(Timer.due_at) <= now
            ),
        )

    return due


def sprint_steps_due(engine: Engine, now: datetime) -> bool:
    with transaction(engine, write=False) as session:
        return any(
            steps_due(session, get_campaign(session, slug), now=now)
            for slug in live_sprints(session)
        )


def tiktok_connected(engine: Engine, now: datetime) -> bool:
    return _any(engine, select(col(TikTokAccount.business_id)))


def boosts_made(engine: Engine, now: datetime) -> bool:
    return _any(engine, select(col(Boost.id)).where(col(Boost.remote_ad_id).is_not(None)))


CHECKS: dict[str, Callable[[Engine, datetime], bool]] = {
    "deliver": delivery_due,
    "sync-leads": lambda engine, now: outbox_due(engine, now, leads=True),
    "follow-up-rules": events_waiting,
    "review-deadlines": timers_due((REVIEW_REMINDER, REVIEW_ESCALATION)),
    "brief-reminders": timers_due((BRIEF_REMINDER,)),
    "tiktok-poll": tiktok_connected,
    "sprint-calendar": sprint_steps_due,
    "paid-metrics": boosts_made,
}


def has_work(name: str, engine: Engine, now: datetime) -> bool:
    """Whether the recurring job `name` has work now; True for jobs without a check."""
    check = CHECKS.get(name)
    return check is None or check(engine, now)

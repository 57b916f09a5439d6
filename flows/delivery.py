"""`deliver`: what the outbox holds, out (email, then replies, DMs, texts and CRM tags).
Each drain takes its messages under a lease, so deliveries on several machines never send a
message twice."""

from datetime import datetime
from typing import Any

from prefect import flow, task

from config.settings import get_settings
from store.db import open_store
from store.types import clock
from tasks.drain import DrainReport
from tasks.engagement.delivery import deliver_followups
from tasks.mail import deliver_email
from tasks.webhooks.deliver import deliver_webhooks


@task(name="deliver-email")
def deliver_email_task(at: datetime | None = None) -> DrainReport:
    settings = get_settings()
    return deliver_email(open_store(settings), settings, now=clock(at))


@task(name="deliver-followups")
def deliver_followups_task(at: datetime | None = None) -> dict[str, DrainReport]:
    settings = get_settings()
    return deliver_followups(open_store(settings), settings, now=clock(at))


@task(name="deliver-webhooks")
def deliver_webhooks_task(at: datetime | None = None) -> DrainReport:
    settings = get_settings()
    return deliver_webhooks(open_store(settings), settings, now=clock(at))


def deliver_all(at: datetime | None = None) -> dict[str, Any]:
    """Follow-ups by channel, then email, then webhooks, as tasks of the calling flow (webhooks
    last: a follow-up or email sent may have queued one)."""
    sent = {channel: vars(report) for channel, report in deliver_followups_task(at).items()}
    sent["email"] = vars(deliver_email_task(at))
    sent["webhooks"] = vars(deliver_webhooks_task(at))
    return sent


@flow(name="deliver")
def deliver() -> dict[str, Any]:
    """Send what is due in the outbox: emails (briefs, reminders, reviews, follow-ups),
    replies, DMs, texts and CRM tags, and webhooks. Failures are retried later with backoff;
    permanent ones are kept with their error for `rally events` to show."""
    return deliver_all()

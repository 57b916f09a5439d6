"""Engagement: `tiktok-poll` fetches new comments (and, hourly, video metrics);
`follow-up-rules` puts new events through the campaign rules, `batch_size` per task run,
never one task per event. What the rules queue goes out with `deliver`."""

from datetime import datetime
from typing import Annotated, Any

from prefect import flow, task
from pydantic import Field

from config.settings import get_settings
from store.db import Lock, only_one, open_store
from store.types import clock, utcnow
from tasks.engagement.poll import poll_tiktok
from tasks.engagement.processing import ProcessReport, process_pending

BATCH = 5000


@task(name="apply-rules")
def apply_rules(limit: int, at: datetime | None = None) -> ProcessReport:
    settings = get_settings()
    return process_pending(
        open_store(settings), now=clock(at)(), public_url=settings.public_url, limit=limit
    )


def apply_all(batch_size: int = BATCH, at: datetime | None = None) -> ProcessReport:
    """Every waiting event through the rules, as tasks of the calling flow."""
    total = ProcessReport()
    while True:
        report = apply_rules(batch_size, at)
        total.add(report)
        if report.events < batch_size:
            return total


@flow(name="follow-up-rules")
def follow_up_rules(batch_size: Annotated[int, Field(ge=1, le=50_000)] = BATCH) -> dict[str, Any]:
    """Apply each campaign's follow-up rules to every new comment, click and signup, and queue
    the replies, DMs, emails, texts and CRM tags they call for (consent, opt-outs and rate
    limits respected).

    Args:
        batch_size: Events per task run.
    """
    return apply_all(batch_size).as_dict()


@task(name="poll-tiktok")
def poll() -> dict[str, Any]:
    settings = get_settings()
    engine = open_store(settings)
    with only_one(engine, Lock.TIKTOK_POLL) as mine:
        if not mine:
            return {"skipped": "another poll is running"}
        return vars(poll_tiktok(engine, settings, now=utcnow))


@flow(name="tiktok-poll")
def tiktok_poll() -> dict[str, Any]:
    """Fetch new comments (and their threads' replies) on the campaigns' posted videos and, at
    most hourly, their metrics, each with the TikTok account the video is on. One poll at a
    time across every machine; nothing happens with no TikTok account connected."""
    return poll()

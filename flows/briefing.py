"""Briefs: `generate-briefs` renders and stores a campaign's briefs in batches and (with
`send`) delivers them; `brief-reminders` queues the reminders that have come due.
One task run per batch of creators, never one per creator."""

from datetime import datetime
from typing import Annotated, Any

from prefect import flow, task
from pydantic import Field

from config.settings import get_settings
from flows.delivery import deliver_email_task
from store.db import open_store, transaction
from store.types import clock, utcnow
from tasks import progress
from tasks.briefs.generate import generate_batch
from tasks.briefs.reminders import send_reminders
from tasks.briefs.run import GenerationReport, prepare, select_members

BATCH = 500


@task(name="render-briefs")
def render_batch(
    slug: str, member_ids: list[int], send: bool, at: datetime | None = None
) -> GenerationReport:
    settings = get_settings()
    with transaction(open_store(settings)) as session:
        run = prepare(session, slug, public_url=settings.public_url)
        return generate_batch(
            session, run, member_ids, actor=settings.actor, send=send, now=clock(at)()
        )


def generate(
    slug: str,
    handles: list[str] | None = None,
    send: bool = False,
    batch_size: int = BATCH,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The briefs of `slug`'s active creators (or just `handles`), as tasks of the calling
    flow; `at` runs them on a rehearsal's clock."""
    settings = get_settings()
    with transaction(open_store(settings), write=False) as session:
        run = prepare(session, slug, public_url=settings.public_url)  # fails early on templates
        member_ids = select_members(session, run.campaign, handles or ())
    total = GenerationReport()
    progress.report("briefs", 0, len(member_ids))
    for start in range(0, len(member_ids), batch_size):
        batch = member_ids[start : start + batch_size]
        total.add(render_batch(slug, batch, send, at))
        progress.report("briefs", start + len(batch), len(member_ids))
    summary: dict[str, Any] = {"campaign": slug, "creators": len(member_ids), **total.as_dict()}
    if send:
        summary["delivery"] = vars(deliver_email_task(at))
    return summary


@flow(name="generate-briefs")
def generate_briefs(
    slug: str,
    handles: list[str] | None = None,
    send: bool = False,
    batch_size: Annotated[int, Field(ge=1, le=5000)] = BATCH,
) -> dict[str, Any]:
    """Render the campaign's briefs (a new version only where the campaign or the creator
    changed) and, with `send`, email each brief not yet sent.

    Args:
        slug: The campaign's slug, as in its campaign.yaml.
        handles: Only these creators' briefs (TikTok handles without @); empty means every
            active creator.
        send: Email each brief that was not sent yet.
        batch_size: Creators per task run.
    """
    return generate(slug, handles, send, batch_size)


@task(name="queue-reminders")
def queue_reminders() -> int:
    settings = get_settings()
    return send_reminders(open_store(settings), settings, now=utcnow())


@flow(name="brief-reminders")
def brief_reminders() -> dict[str, Any]:
    """Queue a reminder for each brief not opened (or not acted on) by its reminder time; the
    `deliver` flow sends them."""
    return {"queued": queue_reminders()}

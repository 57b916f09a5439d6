"""`generate_briefs`: render and store a campaign's briefs in batches, then (with `send`)
deliver their emails. One task run per batch of creators, never one per creator."""

from datetime import datetime
from typing import Any

from prefect import flow, task

from config.settings import get_settings
from store.db import open_store, transaction
from store.types import clock
from tasks import progress
from tasks.briefs.generate import generate_batch
from tasks.briefs.run import GenerationReport, prepare, select_members
from tasks.drain import DrainReport
from tasks.mail import deliver_email

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


@task(name="deliver-email")
def deliver_emails(at: datetime | None = None) -> DrainReport:
    settings = get_settings()
    return deliver_email(open_store(settings), settings, now=clock(at))


@flow(name="generate-briefs")
def generate_briefs(
    slug: str,
    handles: list[str] | None = None,
    send: bool = False,
    batch_size: int = BATCH,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Briefs for every active creator of `slug` (or just `handles`); a summary at the end.
    `at` runs it on a rehearsal's clock."""
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
        delivery = deliver_emails(at)
        summary["delivery"] = vars(delivery)
    return summary

"""`process_engagement`: new events through the rules in batches, then the follow-ups that are
due out of the outbox. One task run per batch of events, never one per event."""

from datetime import datetime
from typing import Any

from prefect import flow, task

from config.settings import get_settings
from store.db import open_store
from store.types import clock
from tasks.engagement.delivery import deliver_followups
from tasks.engagement.processing import ProcessReport, process_pending
from tasks.mail import deliver_email

BATCH = 5000


@task(name="apply-rules")
def apply_rules(limit: int, at: datetime | None = None) -> ProcessReport:
    settings = get_settings()
    return process_pending(
        open_store(settings), now=clock(at)(), public_url=settings.public_url, limit=limit
    )


@task(name="deliver-followups")
def deliver(at: datetime | None = None) -> dict[str, Any]:
    settings = get_settings()
    engine = open_store(settings)
    sent = {k: vars(v) for k, v in deliver_followups(engine, settings, now=clock(at)).items()}
    sent["email"] = vars(deliver_email(engine, settings, now=clock(at)))
    return sent


@flow(name="process-engagement")
def process_engagement(
    batch_size: int = BATCH, send: bool = True, at: datetime | None = None
) -> dict[str, Any]:
    """Apply the rules to every new event, `batch_size` per task run; then deliver."""
    total = ProcessReport()
    while True:
        report = apply_rules(batch_size, at)
        total.add(report)
        if report.events < batch_size:
            break
    return {"processed": total.as_dict(), "delivered": deliver(at) if send else {}}

"""`sync_leads`: queued leads out to every campaign's destinations. One task run per pass
over the destinations, never one per lead; the drain inside batches and paces the calls."""

from datetime import datetime
from typing import Any

from prefect import flow, task

from config.settings import get_settings
from store.db import open_store
from store.types import clock
from tasks.leads.sync import sync_leads as drain_destinations


@task(name="drain-destinations")
def drain(
    campaign: str | None, destination: str | None, at: datetime | None = None
) -> dict[str, Any]:
    settings = get_settings()
    reports = drain_destinations(
        open_store(settings),
        settings,
        now=clock(at),
        campaign=campaign,
        destination=destination,
    )
    return {label: vars(report) for label, report in reports.items()}


@flow(name="sync-leads")
def sync_leads(
    campaign: str | None = None, destination: str | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """Send every queued lead (of one campaign or destination, if named)."""
    return drain(campaign, destination, at)

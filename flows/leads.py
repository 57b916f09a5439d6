"""Leads: `sync-leads` sends queued leads to every campaign's destinations (one task run per
pass over the destinations, never one per lead; the drain inside batches and paces the calls);
`retention-purge` erases the people past their campaigns' retention."""

from datetime import datetime
from typing import Any

from prefect import flow, task

from config.settings import get_settings
from store.db import open_store
from store.types import clock, utcnow
from tasks.leads.forget import purge_expired
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
def sync_leads(campaign: str | None = None, destination: str | None = None) -> dict[str, Any]:
    """Send every queued lead to its CRM, volunteer system or export, exactly once, at the
    pace each destination allows.

    Args:
        campaign: Only this campaign's leads (its slug); empty means every campaign.
        destination: Only this destination (its name in the campaign file); empty means all.
    """
    return drain(campaign, destination)


@task(name="purge-expired")
def purge() -> int:
    return purge_expired(open_store(get_settings()), now=utcnow())


@flow(name="retention-purge")
def retention_purge() -> dict[str, int]:
    """Erase the people whose every campaign ended more than its `retention_days` ago."""
    return {"erased": purge()}

"""Amplification: `paid-metrics` pulls each boost's figures from TikTok's reporting API once a
day, for every campaign with boosts (`tasks.amplification.metrics`), and asks creators whose
Spark Ads code ends within three days for a new one."""

from typing import Any

import httpx
from prefect import flow, get_run_logger

from config.settings import get_settings
from store.db import open_store, transaction
from store.models import Boost, Campaign
from store.types import utcnow
from tasks.amplification.boosts import ad_account, remind_expiring
from tasks.amplification.metrics import pull_paid_metrics


@flow(name="paid-metrics")
def paid_metrics() -> dict[str, Any]:
    """Pull the paid figures of every boost, day by day, one row a day and boost; remind the
    creators whose code ends within three days."""
    from sqlmodel import col, select

    settings = get_settings()
    engine = open_store(settings)
    with transaction(engine, write=False) as session:
        campaigns = session.exec(
            select(Campaign).where(col(Campaign.id).in_(select(Boost.campaign_id).distinct()))
        ).all()
    pulled: dict[str, int] = {}
    with httpx.Client(timeout=30) as client:
        for campaign in campaigns:
            account = ad_account(settings, client, campaign)
            pulled[campaign.slug] = pull_paid_metrics(engine, campaign.slug, account, now=utcnow())
    with transaction(engine) as session:
        reminded = sum(
            remind_expiring(
                session, session.merge(c), today=utcnow().date(), public_url=settings.public_url
            )
            for c in campaigns
        )
    get_run_logger().info("paid figures pulled: %s; %d creator(s) reminded", pulled, reminded)
    return {**pulled, "reminded": reminded}

"""Amplification: `paid-metrics` pulls each boost's figures from TikTok's reporting API once a
day, for every campaign with boosts, extends the boosts whose creators renewed their Spark Ads
code, and asks creators whose code ends within three days for a new one
(`tasks.amplification.metrics.daily_upkeep`)."""

from typing import Any

from prefect import flow, get_run_logger

from config.settings import get_settings
from store.db import open_store
from store.types import utcnow
from tasks.amplification.metrics import daily_upkeep


@flow(name="paid-metrics")
def paid_metrics() -> dict[str, Any]:
    """Pull the paid figures of every boost, day by day, one row a day and boost; extend the
    boosts whose code was renewed; remind the creators whose code ends within three days."""
    settings = get_settings()
    logger = get_run_logger()
    done = daily_upkeep(open_store(settings), settings, now=utcnow(), warn=logger.warning)
    logger.info("paid figures pulled: %s", done)
    return done

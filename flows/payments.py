"""Money: `pay-creators` pays each creator of a campaign their approved amount through their
payout provider, exactly once (`tasks.payments.payouts`); staff start it from the console's
Payments page, the Prefect UI or `rally payments payout`."""

from typing import Any

from prefect import flow, get_run_logger

from config.settings import get_settings
from store.db import open_store, transaction
from store.types import utcnow
from tasks.campaigns.campaign import get_campaign
from tasks.payments.payouts import pay, start_payouts


@flow(name="pay-creators")
def pay_creators(slug: str, by: str | None = None) -> dict[str, Any]:
    """Queue a payout of every approved amount and send them, each once; payouts left from an
    earlier run are finished, never sent twice. Creators without a payout account are named.

    Args:
        slug: The campaign's slug, as in its campaign.yaml.
        by: Who started the run (the staff member), for the ledger and audit log.
    """
    settings = get_settings()
    engine = open_store(settings)
    logger = get_run_logger()
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        started = start_payouts(session, campaign, actor=by or settings.actor, now=utcnow())
    for handle, why in started.skipped.items():
        logger.warning("%s: not paid: %s", handle, why)
    # the campaign's payouts only; NotConfigured fails the run, saying which key
    report = pay(engine, settings, now=utcnow, campaign_id=campaign.id)
    logger.info(
        "%d payout(s) queued; %d made, %d refused, %d to try again",
        started.payouts, report.sent, report.dead, report.retrying,
    )  # fmt: skip
    return {
        "campaign": slug,
        "queued": started.payouts,
        "queued_cents": started.cents,
        "not_paid": started.skipped,
        "paid": report.sent,
        "refused": report.dead,
        "retrying": report.retrying,
        "errors": report.errors,
    }

"""Paid beside organic: each boost's daily figures pulled from TikTok's reporting API and kept
once a day and boost (a later pull of a day replaces it, as TikTok's figures settle), and the
boosted posts' paid figures beside their organic run.

Per boost: impressions, reach, clicks, spend, CPM (spend per thousand impressions), CPC (per
click), CTR (clicks over impressions), conversions and the cost per conversion, video plays and
how far they were watched; beside them the post's organic views, engagement and signups (its
latest snapshot), and the lift paid added over the organic run: paid video plays over organic
views.
"""

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from config.errors import RallyError
from config.settings import Settings
from integrations.errors import IntegrationError
from integrations.http import client_or_own
from integrations.tiktok_ads import METRICS, REPORT_DAYS
from store.db import transaction
from store.models import Boost, Campaign, PaidMetrics
from tasks.amplification.boosts import ad_account, extend_boosts, remind_expiring
from tasks.amplification.winners import posts
from tasks.campaigns.campaign import get_campaign
from tasks.outbox import retrying

KEPT = tuple(METRICS.values())


class Reports(Protocol):
    def report(self, ad_ids: list[str], start: date, end: date) -> list[dict[str, Any]]: ...


def pull_paid_metrics(engine: Engine, slug: str, account: Reports, *, now: datetime) -> int:
    """Each of the campaign's boosts' figures for every day from its start to today, kept one
    row a day and boost; how many day rows were written."""
    with transaction(engine, write=False) as session:
        campaign = get_campaign(session, slug)
        boosts = session.exec(
            select(Boost).where(
                Boost.campaign_id == campaign.id, col(Boost.remote_ad_id).is_not(None)
            )
        ).all()
    if not boosts:
        return 0
    by_ad = {b.remote_ad_id or "": b.id or 0 for b in boosts}
    first = min(b.created_at.date() for b in boosts)
    written = 0
    start = first
    while start <= now.date():
        end = min(start + timedelta(days=REPORT_DAYS - 1), now.date())
        rows = retrying(None)(account.report, list(by_ad), start, end)
        with transaction(engine) as session:
            for row in rows:
                boost_id = by_ad.get(row["ad_id"])
                if boost_id is not None:
                    _keep_day(session, boost_id, row, now)
                    written += 1
        start = end + timedelta(days=1)
    return written


def daily_upkeep(
    engine: Engine,
    settings: Settings,
    client: httpx.Client | None = None,
    *,
    now: datetime,
    warn: Callable[..., None],
) -> dict[str, Any]:
    """Every campaign with boosts: its paid figures pulled and its boosts whose creators renewed
    their code extended (one campaign's missing token or TikTok's outage stops only its own,
    said through `warn`), and its creators whose code ends soon reminded. Days pulled by
    campaign, what was extended (or why not), and how many boosts' creators were asked.
    Without a `client`, the calls go through one of its own."""
    with transaction(engine, write=False) as session:
        campaigns = session.exec(
            select(Campaign).where(col(Campaign.id).in_(select(Boost.campaign_id).distinct()))
        ).all()
    pulled: dict[str, Any] = {}
    extended: list[str] = []
    with client_or_own(client, timeout=30) as http:
        for campaign in campaigns:
            try:
                with ad_account(settings, http, campaign, engine) as account:
                    pulled[campaign.slug] = pull_paid_metrics(
                        engine, campaign.slug, account, now=now
                    )
                    extended += extend_boosts(engine, campaign.slug, account, now=now)
            except (RallyError, IntegrationError) as exc:
                warn("%s: paid figures not pulled, or boosts not extended: %s", campaign.slug, exc)
    with transaction(engine) as session:
        pulled["reminded"] = sum(
            remind_expiring(
                session, session.merge(c), today=now.date(), public_url=settings.public_url
            )
            for c in campaigns
        )
    pulled["extended"] = extended
    return pulled


def _keep_day(session: Session, boost_id: int, row: dict[str, Any], now: datetime) -> None:
    found = session.exec(
        select(PaidMetrics).where(PaidMetrics.boost_id == boost_id, PaidMetrics.day == row["day"])
    ).first()
    if found is None:
        found = PaidMetrics(boost_id=boost_id, day=row["day"], pulled_at=now)
    for name in KEPT:
        setattr(found, name, row[name])
    found.pulled_at = now
    session.add(found)


def paid_beside_organic(
    session: Session, campaign: Campaign, *, as_of: date | None = None
) -> list[dict[str, Any]]:
    """Each boost's paid totals beside its post's organic figures (see the module): every day
    pulled, or, `as_of` a report's end, the days before it; a boost whose code ended before
    then (today) shows as ended."""
    until = as_of or date.max
    as_of = as_of or date.today()
    organic = {p.creative_id: p for p in posts(session, campaign, posted_only=False)}
    rows = []
    boosts = session.exec(  # those whose ad was made: the others never ran
        select(Boost)
        .where(Boost.campaign_id == campaign.id, col(Boost.remote_ad_id).is_not(None))
        .order_by(col(Boost.id))
    ).all()
    for boost in boosts:
        days = session.exec(
            select(PaidMetrics).where(PaidMetrics.boost_id == boost.id, PaidMetrics.day < until)
        ).all()
        paid = {
            name: sum(getattr(d, name) for d in days)
            for name in KEPT
            if name != "average_play_seconds"
        }
        post = organic.get(boost.creative_id)
        views = post.views if post else 0
        spend = paid["spend_cents"]
        rows.append(
            {
                "boost": boost.id,
                "creative": boost.creative_id,
                "creator": post.creator if post else None,
                "status": "ended" if boost.ends_on < as_of else boost.status,
                "days": len(days),
                "organic": {
                    "views": views,
                    "engagement_rate": round(post.engagement_rate, 4) if post else None,
                    "conversion_rate": round(post.conversion_rate, 4) if post else None,
                },
                "paid": paid
                | {
                    "cpm_cents": _per(spend * 1000, paid["impressions"]),
                    "cpc_cents": _per(spend, paid["clicks"]),
                    "ctr": round(paid["clicks"] / paid["impressions"], 4)
                    if paid["impressions"]
                    else None,
                    "cost_per_conversion_cents": _per(spend, paid["conversions"]),
                },
                "lift": round(paid["video_plays"] / views, 4) if views else None,
            }
        )
    return rows


def _per(cents: int, count: int) -> int | None:
    """Cents per one of `count`, rounded to the cent (none without any)."""
    return round(cents / count) if count else None

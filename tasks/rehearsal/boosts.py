"""A rehearsal's Spark Ads: in the amplification weeks, the simulated creators of the posts
worth boosting authorize them, their simulated legal reviewers approve them as paid
placements, the simulated staff boost them, and a simulated ad account
answers as TikTok would, with paid figures drawn from the rehearsal's seed, so that the report
shows paid beside organic. Nothing is asked of TikTok. A political campaign is never boosted.
"""

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.errors import RallyError
from integrations.tiktok_ads import AuthorizedPost
from store.db import transaction
from store.models import Boost, CreativeDraft, ReviewStatus, ReviewTask, SprintPhase
from tasks.amplification.boosts import open_paid_review, record_authorization, start_boost
from tasks.amplification.metrics import pull_paid_metrics
from tasks.amplification.winners import winners
from tasks.campaigns.campaign import campaign_spec, get_campaign
from tasks.rehearsal.people import approver_for, stream
from tasks.review.decisions import decide

BOOSTS_A_WEEK = 3
DAYS = 14  # the period a simulated creator's code covers


class RehearsalAds:
    """An ad account that makes nothing and answers as TikTok would: ids from names, and each
    ad's daily figures, within its boost's budget and days, drawn from the seed."""

    def __init__(self, engine: Engine, seed: int) -> None:
        self.engine, self.seed = engine, seed

    def authorize(self, code: str) -> AuthorizedPost:
        return AuthorizedPost(f"rehearsal-identity-{code[1:]}", "AUTH_CODE", f"item-{code[1:]}")

    def campaign_named(self, name: str) -> str | None:
        return f"rehearsal-{name}"

    def create_campaign(self, name: str) -> str:
        return f"rehearsal-{name}"

    def create_adgroup(
        self, campaign_id: str, name: str, daily_budget_cents: int, start: date, end: date
    ) -> str:
        return f"rehearsal-{name}"

    def adgroup_named(self, campaign_id: str, name: str) -> str | None:
        return None

    def ad_named(self, adgroup_id: str, name: str) -> str | None:
        return None

    def create_ad(self, adgroup_id: str, name: str, post: AuthorizedPost) -> str:
        return f"rehearsal-ad-{name}"

    def set_status(self, ad_id: str, *, running: bool) -> None:
        return None

    def extend_adgroup(self, adgroup_id: str, end: date) -> None:
        return None

    def report(self, ad_ids: list[str], start: date, end: date) -> list[dict[str, Any]]:
        with transaction(self.engine, write=False) as session:
            boosts = session.exec(select(Boost).where(col(Boost.remote_ad_id).in_(ad_ids))).all()
        rows = []
        for boost in boosts:
            first = max(start, boost.created_at.date())
            for n in range((min(end, boost.ends_on) - first).days + 1):
                day = first + timedelta(days=n)
                rows.append(self._day(boost.remote_ad_id or "", boost.daily_budget_cents, day))
        return rows

    def _day(self, ad_id: str, daily_cents: int, day: date) -> dict[str, Any]:
        """A day of an ad, as TikTok's reporting gives it: most of the daily budget spent at a
        CPM of 6 to 10, a CTR near 1%, some 4% to 8% of clicks converting."""
        rng = stream(self.seed, "boost", ad_id, day.isoformat())
        spend = round(daily_cents * rng.uniform(0.85, 1.0))
        impressions = round(spend / rng.uniform(600, 1000) * 1000)
        clicks = round(impressions * rng.uniform(0.007, 0.014))
        plays = round(impressions * rng.uniform(0.5, 0.7))
        return {
            "ad_id": ad_id,
            "day": day,
            "impressions": impressions,
            "reach": round(impressions * rng.uniform(0.6, 0.8)),
            "clicks": clicks,
            "spend_cents": spend,
            "conversions": round(clicks * rng.uniform(0.04, 0.08)),
            "video_plays": plays,
            "watched_2s": round(plays * 0.7),
            "watched_6s": round(plays * 0.45),
            "average_play_seconds": round(rng.uniform(4.0, 7.0), 1),
            "watched_25": round(plays * 0.35),
            "watched_50": round(plays * 0.22),
            "watched_75": round(plays * 0.14),
            "watched_100": round(plays * 0.08),
        }


def rehearse_boosts(engine: Engine, slug: str, seed: int, *, at: datetime) -> dict[str, int]:
    """The week's Spark Ads in a rehearsal (see the module): in the amplification weeks, the
    best posts not yet boosted are authorized and boosted (as far as the budget goes); every
    week, the boosts' paid figures so far are pulled. How many were boosted and pulled."""
    with transaction(engine, write=False) as session:
        campaign = get_campaign(session, slug)
        spec = campaign_spec(campaign)
        if spec.amplification is None or spec.political:
            return {"boosted": 0, "days_pulled": 0}
        phase = session.exec(
            select(SprintPhase).where(
                SprintPhase.campaign_id == campaign.id, SprintPhase.key == "amplification"
            )
        ).first()
        boosted = set(
            session.exec(select(Boost.creative_id).where(Boost.campaign_id == campaign.id)).all()
        )
        picks = [
            w.post.creative_id
            for w in winners(session, campaign).picks
            if w.post.creative_id not in boosted
        ][:BOOSTS_A_WEEK]
    account = RehearsalAds(engine, seed)
    made = 0
    if phase is not None and phase.starts_on <= at.date() <= phase.ends_on:
        for creative_id in picks:
            code = f"#rehearsal{creative_id:08d}"
            try:
                with transaction(engine) as session:
                    campaign = get_campaign(session, slug)
                    record_authorization(
                        session, campaign, creative_id, code, starts_on=at.date(),
                        ends_on=at.date() + timedelta(days=DAYS - 1),
                        consent="rehearsal: a simulated creator", actor="rehearsal:creator",
                        now=at,
                    )  # fmt: skip
                    open_paid_review(
                        session, campaign, creative_id, actor="rehearsal:staff", now=at,
                        public_url="",
                    )  # fmt: skip
                    approve_paid_review(session, campaign_spec(campaign), creative_id, at)
                start_boost(engine, slug, creative_id, account, actor="rehearsal:staff", now=at)
            except RallyError:  # the budget is spent, or the policy refuses: as staff would see
                continue
            made += 1
    pulled = pull_paid_metrics(engine, slug, account, now=at)
    return {"boosted": made, "days_pulled": pulled}


def approve_paid_review(
    session: Session, spec: CampaignSpec, creative_id: int, at: datetime
) -> None:
    """The simulated reviewers approve a creative's review as a paid placement, tier by tier."""
    while task := session.exec(
        select(ReviewTask)
        .join(CreativeDraft, col(CreativeDraft.id) == col(ReviewTask.draft_id))
        .where(CreativeDraft.creative_id == creative_id, ReviewTask.status == ReviewStatus.OPEN)
    ).first():
        decide(
            session, task_id=task.id or 0, decision="approve",
            approver=approver_for(session, spec, task), now=at, confirmed=["all"],
        )  # fmt: skip

"""Picking winners: the posts worth paid reach, as a recommendation with the numbers behind it.

A post qualifies when it is still up (posted, not taken down), has at least the terms'
`min_views` (enough views to trust its rates), and its engagement rate ((likes + comments +
shares) / views) and conversion rate (signups / clicks) are each at least `above_median` times
the campaign's median over its posts with views. Each post's figures are its latest metrics
snapshot. Ranked by how far above the medians it is (the lesser of its two multiples first,
so that a post strong on one count only does not lead).
"""

import statistics
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, select

from config.campaign import Amplification
from config.errors import RallyError
from store.models import Campaign, Creative, CreativeStatus, Creator, MetricSnapshot, RosterMember
from tasks.campaigns.campaign import campaign_spec


@dataclass(frozen=True)
class Post:
    """A posted creative's latest figures."""

    creative_id: int
    creator: str
    url: str | None
    views: int
    engagement_rate: float
    conversion_rate: float


@dataclass(frozen=True)
class Winner:
    post: Post
    engagement_multiple: float  # of the campaign's median
    conversion_multiple: float


@dataclass
class Winners:
    """A recommendation: the posts worth boosting, best first, and what they were held to."""

    median_engagement_rate: float
    median_conversion_rate: float
    min_views: int
    above_median: float
    considered: int
    picks: list[Winner] = field(default_factory=list)


def amplification_of(campaign: Campaign) -> Amplification:
    terms = campaign_spec(campaign).amplification
    if terms is None:
        raise RallyError(
            f"amplification: {campaign.slug}'s campaign file has no Spark Ads settings "
            "(advertiser_id, budget)"
        )
    return terms


def posts(session: Session, campaign: Campaign, *, posted_only: bool = True) -> list[Post]:
    """The campaign's posts still up (with not `posted_only`, those taken down too), each with
    its latest snapshot's figures."""
    statuses = [CreativeStatus.POSTED] + ([] if posted_only else [CreativeStatus.TAKEN_DOWN])
    latest = (
        select(MetricSnapshot.creative_id, func.max(MetricSnapshot.captured_at).label("at"))
        .where(
            MetricSnapshot.campaign_id == campaign.id, col(MetricSnapshot.creative_id).is_not(None)
        )
        .group_by(col(MetricSnapshot.creative_id))
        .subquery()
    )
    rows = session.exec(
        select(Creative, Creator.handle, MetricSnapshot)
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .join(latest, latest.c.creative_id == col(Creative.id))
        .join(
            MetricSnapshot,
            (col(MetricSnapshot.creative_id) == col(Creative.id))
            & (col(MetricSnapshot.captured_at) == latest.c.at),
        )
        .where(Creative.campaign_id == campaign.id, col(Creative.status).in_(statuses))
        .order_by(col(Creative.id))
    ).all()
    return [
        Post(
            creative.id or 0,
            handle,
            creative.posted_url,
            snapshot.views,
            (snapshot.likes + snapshot.comments + snapshot.shares) / snapshot.views
            if snapshot.views
            else 0.0,
            snapshot.signups / snapshot.clicks if snapshot.clicks else 0.0,
        )
        for creative, handle, snapshot in rows
    ]


def winners(session: Session, campaign: Campaign) -> Winners:
    """The posts worth boosting (see the module)."""
    terms = amplification_of(campaign)
    seen = [p for p in posts(session, campaign) if p.views > 0]
    found = Winners(
        median_engagement_rate=statistics.median(p.engagement_rate for p in seen) if seen else 0,
        median_conversion_rate=statistics.median(p.conversion_rate for p in seen) if seen else 0,
        min_views=terms.min_views,
        above_median=terms.above_median,
        considered=len(seen),
    )
    for post in seen:
        engagement = _multiple(post.engagement_rate, found.median_engagement_rate)
        conversion = _multiple(post.conversion_rate, found.median_conversion_rate)
        if (
            post.views >= terms.min_views
            and engagement >= terms.above_median
            and conversion >= terms.above_median
        ):
            found.picks.append(Winner(post, engagement, conversion))
    found.picks.sort(
        key=lambda w: (-min(w.engagement_multiple, w.conversion_multiple), w.post.creative_id)
    )
    return found


def _multiple(rate: float, median: float) -> float:
    """How many times the median a rate is (a rate above a median of nothing counts as far
    above it; nothing above nothing, as nothing)."""
    if median > 0:
        return rate / median
    return float("inf") if rate > 0 else 0.0

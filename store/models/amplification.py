"""Spark Ads: creators' authorizations of their posts, and the boosts that put paid reach
behind them (`tasks.amplification`)."""

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime, created_time


class SparkAuthorization(SQLModel, table=True):
    """A creator's Spark Ads authorization code for one posted creative, and the period it
    covers: the code is used once, to authorize the post on the campaign's ad account, whose
    identity and item ids are kept."""

    __tablename__ = "spark_authorizations"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    creative_id: int = Field(foreign_key="creatives.id", index=True)
    code: str = Field(max_length=200)
    starts_on: date
    ends_on: date
    consent: str = Field(max_length=254)  # who recorded the creator's consent, and how
    identity_id: str | None = Field(default=None, max_length=120)
    item_id: str | None = Field(default=None, max_length=64)
    recorded_at: datetime = created_time()


class SparkRequest(SQLModel, table=True):
    """Staff asked the creator of a posted creative for its Spark Ads authorization: the
    creator answers on their brief page."""

    __tablename__ = "spark_requests"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    creative_id: int = Field(foreign_key="creatives.id", unique=True)
    asked_by: str = Field(max_length=254)
    asked_at: datetime = created_time()


class BoostStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"  # stopped before its ad was made (TikTok refused a step for good)


class Boost(SQLModel, table=True):
    """Paid reach behind one creative: its ad group (with its daily budget) and ad on the
    campaign's TikTok ad account, under the authorization it used."""

    __tablename__ = "boosts"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    creative_id: int = Field(foreign_key="creatives.id", index=True)
    authorization_id: int = Field(foreign_key="spark_authorizations.id")
    daily_budget_cents: int
    ends_on: date
    status: str = Field(default=BoostStatus.RUNNING, max_length=16)
    remote_campaign_id: str | None = Field(default=None, max_length=64)
    remote_adgroup_id: str | None = Field(default=None, max_length=64)
    remote_ad_id: str | None = Field(default=None, max_length=64)
    started_by: str = Field(max_length=254)
    created_at: datetime = created_time()
    updated_at: datetime = created_time()


class PaidMetrics(SQLModel, table=True):
    """What one boost's ad did on one day (the ad account's time zone), as TikTok's reporting
    API gives it: one row a day and boost, replaced by a later pull of the same day (TikTok's
    figures for a day settle over the days after)."""

    __tablename__ = "paid_metrics"
    __table_args__ = (UniqueConstraint("boost_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    boost_id: int = Field(foreign_key="boosts.id", index=True)
    day: date
    impressions: int = 0
    reach: int = 0
    clicks: int = 0
    spend_cents: int = 0
    conversions: int = 0
    video_plays: int = 0
    watched_2s: int = 0
    watched_6s: int = 0
    average_play_seconds: float = 0.0
    watched_25: int = 0
    watched_50: int = 0
    watched_75: int = 0
    watched_100: int = 0
    pulled_at: datetime = Field(sa_type=UTCDateTime)

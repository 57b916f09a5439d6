"""The campaign as applied from its file, its creators and roster, and its sprint plan."""

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import created_time, optional_time


class Campaign(SQLModel, table=True):
    """A campaign as applied from its `campaign.yaml`; `spec` keeps the whole validated file."""

    __tablename__ = "campaigns"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, max_length=64)
    name: str
    objective: str
    political: bool
    paid: bool
    committee_name: str | None = None
    paid_for_by: str | None = None
    jurisdiction: str
    timezone: str
    start_date: date
    weeks: int
    spec: dict[str, Any] = Field(sa_type=JSON)
    spec_hash: str = Field(max_length=64)
    source_path: str | None = None
    # The versions of what the campaign was applied with (`CampaignConfig`); None: applied
    # before Rally kept them, so runs ask for the campaign to be applied again.
    policy_hash: str | None = Field(default=None, max_length=64)
    followups_hash: str | None = Field(default=None, max_length=64)
    templates_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_time()
    updated_at: datetime = created_time()


class Creator(SQLModel, table=True):
    """A person on a platform; the same creator may work on several campaigns."""

    __tablename__ = "creators"
    __table_args__ = (UniqueConstraint("platform", "handle"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=32)
    handle: str = Field(max_length=64)
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    followers: int | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = created_time()
    updated_at: datetime = created_time()


class RosterStatus(StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"


class RosterMember(SQLModel, table=True):
    """A creator's place on one campaign: segment, tier, rate and their own codes."""

    __tablename__ = "roster_members"
    __table_args__ = (
        UniqueConstraint("campaign_id", "creator_id"),
        UniqueConstraint("campaign_id", "source_code"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    creator_id: int = Field(foreign_key="creators.id", index=True)
    segment: str | None = None
    tier: str | None = None
    rate_cents: int | None = None
    agency: str | None = Field(default=None, max_length=48)  # paid through it (campaign file)
    tracking_code: str = Field(unique=True, max_length=32)
    source_code: str = Field(max_length=32)
    holdout: bool = False
    status: str = Field(default=RosterStatus.ACTIVE, max_length=16)
    created_at: datetime = created_time()
    updated_at: datetime = created_time()


class SprintPhase(SQLModel, table=True):
    __tablename__ = "sprint_phases"
    __table_args__ = (UniqueConstraint("campaign_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    key: str = Field(max_length=32)
    name: str
    first_week: int
    last_week: int
    starts_on: date
    ends_on: date


class MilestoneStatus(StrEnum):
    PENDING = "pending"
    MET = "met"
    MISSED = "missed"


class Milestone(SQLModel, table=True):
    __tablename__ = "milestones"
    __table_args__ = (UniqueConstraint("campaign_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    key: str = Field(max_length=48)
    name: str
    week: int
    due_on: date
    check: str = Field(max_length=48)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default=MilestoneStatus.PENDING, max_length=16)
    outcome: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    evaluated_at: datetime | None = optional_time()

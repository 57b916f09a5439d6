"""Briefs, creatives and their drafts, policy findings, review tasks and comments, approvers."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime, created_time, optional_time


class BriefCampaignInputs(SQLModel, table=True):
    """The campaign's part of its briefs' inputs, kept once per version of it (by hash)
    rather than in each of thousands of briefs; `rally briefs diff` reads old ones back."""

    __tablename__ = "brief_campaign_inputs"

    digest: str = Field(primary_key=True, max_length=64)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    inputs: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = created_time()


class Brief(SQLModel, table=True):
    """One rendered version of a creator's brief; a new version only when its inputs change.

    `inputs` holds the creator's part and `campaign_digest`, the key of the campaign's part.
    """

    __tablename__ = "briefs"
    __table_args__ = (UniqueConstraint("member_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    member_id: int = Field(foreign_key="roster_members.id", index=True)
    version: int
    inputs_hash: str = Field(max_length=64)
    inputs: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    content_markdown: str
    content_html: str  # the plain-text form is derived from it when asked for
    token: str = Field(unique=True, max_length=64)
    token_expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = created_time()
    sent_at: datetime | None = optional_time()
    acknowledged_at: datetime | None = optional_time()
    reminder_sent_at: datetime | None = optional_time()


class CreativeStatus(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    POSTED = "posted"
    TAKEN_DOWN = "taken_down"  # posted, then gone from TikTok


class Creative(SQLModel, table=True):
    """A piece of content a creator makes for a campaign; its drafts are the versions."""

    __tablename__ = "creatives"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    member_id: int = Field(foreign_key="roster_members.id", index=True)
    title: str
    status: str = Field(default=CreativeStatus.DRAFT, max_length=24, index=True)
    current_version: int = 0
    platform_video_id: str | None = Field(default=None, index=True)
    posted_url: str | None = None
    posted_at: datetime | None = optional_time()
    created_at: datetime = created_time()
    updated_at: datetime = created_time()


class CreativeDraft(SQLModel, table=True):
    """One submitted version of a creative; every version is kept."""

    __tablename__ = "creative_drafts"
    __table_args__ = (UniqueConstraint("creative_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    creative_id: int = Field(foreign_key="creatives.id", index=True)
    version: int
    brief_id: int | None = Field(default=None, foreign_key="briefs.id")
    caption: str
    script: str | None = None
    video_url: str | None = None
    duration_seconds: float | None = None
    paid: bool = False
    ai_generated: bool = False
    submitted_by: str
    submitted_at: datetime = created_time()
    status: str = Field(default=CreativeStatus.IN_REVIEW, max_length=24)
    # A video the creator uploaded with this version: `<sha256>.<ext>` under
    # RALLY_HOME/uploads/<campaign slug>/ (`tasks.review.uploads`).
    video_file: str | None = Field(default=None, max_length=80)


class Severity(StrEnum):
    BLOCK = "block"
    WARN = "warn"


class PolicyFinding(SQLModel, table=True):
    """What one policy rule said about one draft, under the policy version it ran."""

    __tablename__ = "policy_findings"

    id: int | None = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="creative_drafts.id", index=True)
    rule_id: str = Field(max_length=64)
    severity: str = Field(max_length=8)
    passed: bool
    message: str
    policy_version: str = Field(max_length=64)
    created_at: datetime = created_time()


class ReviewStatus(StrEnum):
    WAITING = "waiting"  # an earlier tier has not decided yet
    OPEN = "open"
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class ReviewTask(SQLModel, table=True):
    """One tier's review of one draft, owned by an approver group, with its deadline."""

    __tablename__ = "review_tasks"
    __table_args__ = (
        UniqueConstraint("draft_id", "tier"),
        Index("ix_review_tasks_status_due", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    draft_id: int = Field(foreign_key="creative_drafts.id", index=True)
    tier: str = Field(max_length=32)
    position: int
    approver_group: str = Field(max_length=64)
    status: str = Field(default=ReviewStatus.WAITING, max_length=24)
    due_at: datetime | None = optional_time()
    reminded_at: datetime | None = optional_time()
    escalated_at: datetime | None = optional_time()
    escalated_to: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = optional_time()
    note: str | None = None
    checklist: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    policy_version: str = Field(max_length=64)
    created_at: datetime = created_time()


class ApproverCredential(SQLModel, table=True):
    """How an approver proves who they are: a single-use sign-in link sent by email, the web
    session it opens, or an API token. Only a hash of the secret is kept."""

    __tablename__ = "approver_credentials"

    secret_hash: str = Field(primary_key=True, max_length=64)
    email: str = Field(index=True)
    kind: str = Field(max_length=16)  # link, session or api
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = optional_time()
    created_at: datetime = created_time()


class ReviewComment(SQLModel, table=True):
    """An approver's comment on the version a review task is for, optionally at a moment of
    its video (`at_seconds`); the task's other approvers see it beside that version."""

    __tablename__ = "review_comments"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="review_tasks.id", index=True)
    draft_id: int = Field(foreign_key="creative_drafts.id", index=True)
    author: str = Field(max_length=254)
    at_seconds: int | None = None
    body: str
    created_at: datetime = created_time()

"""Engagement events, contacts and their consent, follow-ups, and the TikTok accounts polled."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime, created_time, optional_time


class EngagementEvent(SQLModel, table=True):
    """One thing the public did (comment, click, signup...), from any source, stored once."""

    __tablename__ = "engagement_events"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_engagement_events_campaign_time", "campaign_id", "occurred_at"),
        Index(  # the rules' queue: only events still waiting, in order
            "ix_engagement_events_waiting",
            "id",
            postgresql_where=text("processed_at IS NULL"),
            sqlite_where=text("processed_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    external_id: str = Field(max_length=128)
    type: str = Field(max_length=24)
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id")
    member_id: int | None = Field(default=None, foreign_key="roster_members.id")
    contact_id: int | None = Field(default=None, foreign_key="contacts.id", index=True)
    actor: str | None = None
    video_id: str | None = None
    text: str | None = None
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = created_time()
    deliveries: int = 1
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    processed_at: datetime | None = optional_time()


class Contact(SQLModel, table=True):
    """A lead: one person, deduplicated on normalized email and phone, with first/last touch."""

    __tablename__ = "contacts"
    __table_args__ = (Index("ux_contacts_platform_handle", "platform", "handle", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    email: str | None = None
    email_normalized: str | None = Field(default=None, unique=True)
    phone: str | None = None
    phone_normalized: str | None = Field(default=None, unique=True)
    given_name: str | None = None
    family_name: str | None = None
    postal_code: str | None = None
    platform: str | None = None
    handle: str | None = Field(default=None, index=True)
    timezone: str | None = None
    first_source_code: str | None = None
    last_source_code: str | None = None
    first_member_id: int | None = Field(default=None, foreign_key="roster_members.id")
    last_member_id: int | None = Field(default=None, foreign_key="roster_members.id")
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = created_time()
    updated_at: datetime = created_time()
    erased_at: datetime | None = optional_time()


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"
    PENDING = "pending"  # asked for on the signup page, not yet confirmed by the person


class ContactConsent(SQLModel, table=True):
    """Consent per person and channel; no row means no consent."""

    __tablename__ = "contact_consents"
    __table_args__ = (UniqueConstraint("contact_id", "channel"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    channel: str = Field(max_length=16)
    status: str = Field(max_length=16)
    source: str
    changed_at: datetime = created_time()


class ConsentRecord(SQLModel, table=True):
    """One consent given, confirmed or withdrawn, as it happened: append-only, so a campaign can
    show for each person and channel when and how (TCPA, CAN-SPAM). `source` is where it came
    from (the signup page, a file, a reply), `wording` the words the person saw or wrote,
    `origin` the network address or sender it came from (blanked when the person is
    forgotten)."""

    __tablename__ = "consent_records"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    channel: str = Field(max_length=16)
    status: str = Field(max_length=16)
    source: str
    wording: str | None = None
    origin: str | None = None
    recorded_at: datetime = created_time()


class ConsentRequest(SQLModel, table=True):
    """A pending consent's request to confirm it, sent to the person: an email with a link
    (only a hash of its secret is kept; single use, expiring) or a text asking for YES."""

    __tablename__ = "consent_requests"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    channel: str = Field(max_length=16)
    secret_hash: str | None = Field(default=None, unique=True, max_length=64)
    created_at: datetime = created_time()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    confirmed_at: datetime | None = optional_time()


class FollowUpStatus(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"  # in the outbox, to go at `due_at`
    SENT = "sent"
    DONE = "done"  # an action with nothing to send (a tag)
    WITHHELD = "withheld"  # `reason` says why
    FAILED = "failed"  # the provider refused it for good; `reason` has its words
    CANCELLED = "cancelled"  # withdrawn before it went (the person opted out meanwhile)


class FollowUp(SQLModel, table=True):
    """A follow-up a rule decided on; `reason` says why one was withheld."""

    __tablename__ = "followups"
    __table_args__ = (
        UniqueConstraint("campaign_id", "rule_id", "contact_id"),
        Index("ix_followups_status_due", "status", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    rule_id: str = Field(max_length=64)
    event_id: int = Field(foreign_key="engagement_events.id", index=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    channel: str = Field(max_length=16)
    status: str = Field(default=FollowUpStatus.SCHEDULED, max_length=16)
    reason: str | None = None
    due_at: datetime = Field(sa_type=UTCDateTime)
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id", index=True)
    created_at: datetime = created_time()
    updated_at: datetime = created_time()


class PollCursor(SQLModel, table=True):
    """Where polling a remote list (a video's comments) left off, so a restart resumes there."""

    __tablename__ = "poll_cursors"

    source: str = Field(primary_key=True, max_length=32)
    key: str = Field(primary_key=True, max_length=128)
    cursor: str
    updated_at: datetime = created_time()


class TikTokAccount(SQLModel, table=True):
    """A TikTok business account Rally acts for: a campaign's own, or a creator's who
    authorized theirs (`member_id`), with its OAuth tokens sealed with `RALLY_SECRET_KEY`."""

    __tablename__ = "tiktok_accounts"

    business_id: str = Field(primary_key=True, max_length=128)  # TikTok's open_id for it
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id")
    member_id: int | None = Field(default=None, foreign_key="roster_members.id")
    region: str | None = Field(default=None, max_length=2)  # where it is registered (ISO 3166)
    scopes: list[str] = Field(default_factory=list, sa_type=JSON)
    access_token: str  # sealed
    access_expires_at: datetime = Field(sa_type=UTCDateTime)
    refresh_token: str  # sealed
    refresh_expires_at: datetime = Field(sa_type=UTCDateTime)
    connected_at: datetime = created_time()
    refreshed_at: datetime | None = optional_time()


class TikTokConversation(SQLModel, table=True):
    """A DM conversation's campaign, from the first of its messages Rally could attribute, so
    that the later ones go to the same campaign."""

    __tablename__ = "tiktok_conversations"

    conversation_id: str = Field(primary_key=True, max_length=128)
    campaign_id: int = Field(foreign_key="campaigns.id")
    member_id: int | None = Field(default=None, foreign_key="roster_members.id")
    created_at: datetime = created_time()

"""Rally's data model: every table, in one place, in the order a campaign meets them.

campaign -> roster (creators) -> sprint plan -> briefs -> creatives and drafts -> policy findings
and review tasks -> engagement events -> contacts and consent -> follow-ups -> outbox ->
metric snapshots -> sprint runs and reports; timers and the hash-chained audit log sit beside
them all.

Conventions: times are aware UTC (`UTCDateTime`); money is integer cents; status and kind
columns are plain strings whose values are the `StrEnum`s below; free-form structure is JSON.
"""

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime, utcnow


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime)


def _when(*, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, index=index)


# --- campaign and roster --------------------------------------------------------------------


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
    created_at: datetime = _created()
    updated_at: datetime = _created()


class ConfigKind(StrEnum):
    POLICY = "policy"
    FOLLOWUPS = "followups"
    TEMPLATES = "templates"


class CampaignConfig(SQLModel, table=True):
    """A policy, follow-up rules or brief template set as a campaign was applied with it, kept
    once per version (its hash): runs read it here, never from the campaign's folder, and any
    version a review or brief saw can be read back."""

    __tablename__ = "campaign_configs"
    __table_args__ = (UniqueConstraint("campaign_id", "kind", "hash"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    kind: str = Field(max_length=16)
    hash: str = Field(max_length=64)
    source: str  # as the campaign file names it: a built-in name, a file or a folder
    content: dict[str, Any] = Field(sa_type=JSON)  # a validated spec; templates: name -> text
    created_at: datetime = _created()


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
    created_at: datetime = _created()
    updated_at: datetime = _created()


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
    tracking_code: str = Field(unique=True, max_length=32)
    source_code: str = Field(max_length=32)
    holdout: bool = False
    status: str = Field(default=RosterStatus.ACTIVE, max_length=16)
    created_at: datetime = _created()
    updated_at: datetime = _created()


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
    evaluated_at: datetime | None = _when()


# --- briefs, creatives and review -----------------------------------------------------------


class BriefCampaignInputs(SQLModel, table=True):
    """The campaign's part of its briefs' inputs, kept once per version of it (by hash)
    rather than in each of thousands of briefs; `rally briefs diff` reads old ones back."""

    __tablename__ = "brief_campaign_inputs"

    digest: str = Field(primary_key=True, max_length=64)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    inputs: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _created()


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
    created_at: datetime = _created()
    sent_at: datetime | None = _when()
    acknowledged_at: datetime | None = _when()
    reminder_sent_at: datetime | None = _when()


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
    posted_at: datetime | None = _when()
    created_at: datetime = _created()
    updated_at: datetime = _created()


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
    submitted_at: datetime = _created()
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
    created_at: datetime = _created()


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
    due_at: datetime | None = _when()
    reminded_at: datetime | None = _when()
    escalated_at: datetime | None = _when()
    escalated_to: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = _when()
    note: str | None = None
    checklist: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    policy_version: str = Field(max_length=64)
    created_at: datetime = _created()


class ApproverCredential(SQLModel, table=True):
    """How an approver proves who they are: a single-use sign-in link sent by email, the web
    session it opens, or an API token. Only a hash of the secret is kept."""

    __tablename__ = "approver_credentials"

    secret_hash: str = Field(primary_key=True, max_length=64)
    email: str = Field(index=True)
    kind: str = Field(max_length=16)  # link, session or api
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = _when()
    created_at: datetime = _created()


# --- engagement, contacts and follow-ups ----------------------------------------------------


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
    received_at: datetime = _created()
    deliveries: int = 1
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    processed_at: datetime | None = _when()


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
    created_at: datetime = _created()
    updated_at: datetime = _created()
    erased_at: datetime | None = _when()


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
    changed_at: datetime = _created()


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
    recorded_at: datetime = _created()


class ConsentRequest(SQLModel, table=True):
    """A pending consent's request to confirm it, sent to the person: an email with a link
    (only a hash of its secret is kept; single use, expiring) or a text asking for YES."""

    __tablename__ = "consent_requests"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    channel: str = Field(max_length=16)
    secret_hash: str | None = Field(default=None, unique=True, max_length=64)
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    confirmed_at: datetime | None = _when()


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
    created_at: datetime = _created()
    updated_at: datetime = _created()


class PollCursor(SQLModel, table=True):
    """Where polling a remote list (a video's comments) left off, so a restart resumes there."""

    __tablename__ = "poll_cursors"

    source: str = Field(primary_key=True, max_length=32)
    key: str = Field(primary_key=True, max_length=128)
    cursor: str
    updated_at: datetime = _created()


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
    connected_at: datetime = _created()
    refreshed_at: datetime | None = _when()


class TikTokConversation(SQLModel, table=True):
    """A DM conversation's campaign, from the first of its messages Rally could attribute, so
    that the later ones go to the same campaign."""

    __tablename__ = "tiktok_conversations"

    conversation_id: str = Field(primary_key=True, max_length=128)
    campaign_id: int = Field(foreign_key="campaigns.id")
    member_id: int | None = Field(default=None, foreign_key="roster_members.id")
    created_at: datetime = _created()


# --- side effects, time and measurement -----------------------------------------------------


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    CANCELLED = "cancelled"  # withdrawn before it was sent (a newer message replaced it)


class OutboxMessage(SQLModel, table=True):
    """A side effect to deliver (email, DM, SMS, CRM upsert), written with the change behind it.

    `idempotency_key` makes a second enqueue of the same effect a no-op; the drain delivers,
    records `remote_id`, and parks permanent failures as `dead` with the remote's message.
    `remote_state` is what the remote said of the subject beyond its id, when it said more: for
    a lead, their subscription status there per channel (`{"email": "unsubscribed"}`).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_ready", "status", "channel", "available_at"),
        Index("ix_outbox_subject", "subject_type", "subject_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    destination: str = Field(max_length=64)
    idempotency_key: str = Field(unique=True, max_length=200)
    subject_type: str = Field(max_length=32)
    subject_id: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default=OutboxStatus.PENDING, max_length=16)
    attempts: int = 0
    available_at: datetime = _created()
    locked_until: datetime | None = _when()
    lease_id: str | None = Field(default=None, max_length=32)  # the drain holding it
    last_error: str | None = None
    remote_id: str | None = None
    remote_state: dict[str, Any] | None = Field(default=None, sa_type=JSON(none_as_null=True))
    created_at: datetime = _created()
    sent_at: datetime | None = _when()


class RateWindow(SQLModel, table=True):
    """One remote account's rate limit as every process on this store shares it
    (`tasks.rate_limits`): the slots granted in its current window, as `[ends_ms, count]` pairs
    (when they stop counting, in milliseconds on the store's clock), and until when the remote
    asked everyone to pause (seconds on that clock). From `idle_at` (seconds) the row holds
    nothing: no slot counts and no pause lasts, so it may go."""

    __tablename__ = "rate_windows"
    __table_args__ = (Index("ix_rate_windows_idle", "kind", "idle_at"),)

    kind: str = Field(primary_key=True, max_length=32)
    account: str = Field(primary_key=True)
    slots: list[list[int]] = Field(default_factory=list, sa_type=JSON)
    paused_until: float = 0.0
    idle_at: float = 0.0


class Timer(SQLModel, table=True):
    """A persisted deadline (review SLA, follow-up delay, brief reminder); survives restarts."""

    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("kind", "entity_type", "entity_id"),
        Index("ix_timers_due", "fired_at", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=48)
    entity_type: str = Field(max_length=32)
    entity_id: str = Field(max_length=64)
    due_at: datetime = Field(sa_type=UTCDateTime)
    fired_at: datetime | None = _when()
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _created()


class MetricSnapshot(SQLModel, table=True):
    """A video's counters at one moment; KPIs and scorecards are computed from these."""

    __tablename__ = "metric_snapshots"
    __table_args__ = (UniqueConstraint("campaign_id", "video_id", "captured_at"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    member_id: int | None = Field(default=None, foreign_key="roster_members.id")
    creative_id: int | None = Field(default=None, foreign_key="creatives.id")
    video_id: str = Field(max_length=64)
    captured_at: datetime = Field(sa_type=UTCDateTime)
    views: int = 0
    reach: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    clicks: int = 0
    signups: int = 0
    full_watch_rate: float | None = None
    average_watch_seconds: float | None = None
    spend_cents: int = 0


class SprintState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # its calendar's steps wait, and are caught up on when it resumes
    STOPPED = "stopped"


class SprintRun(SQLModel, table=True):
    """A campaign's sprint once started: on the real calendar (`live`) or as a rehearsal with
    simulated creators, approvers and audience (`rehearsal`), and the last week it finished."""

    __tablename__ = "sprint_runs"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", unique=True)
    mode: str = Field(max_length=16)
    seed: int | None = None
    sample: float = 1.0  # a rehearsal's share of the audience simulated person by person
    holdout: list[str] = Field(default_factory=list, sa_type=JSON)  # handles held out
    weeks_done: int = 0
    state: str = Field(default=SprintState.RUNNING, max_length=16)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = _when()


class SprintStep(SQLModel, table=True):
    """A step of a sprint's calendar (`tasks.sprint.calendar`) that was done, or that waits
    for staff's go-ahead; a step without a row is still to come."""

    __tablename__ = "sprint_steps"

    campaign_id: int = Field(foreign_key="campaigns.id", primary_key=True)
    key: str = Field(max_length=48, primary_key=True)
    due_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(max_length=16)  # waiting or done
    done_at: datetime | None = _when()  # when it was done, or began to wait
    outcome: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    go_ahead_by: str | None = None
    go_ahead_at: datetime | None = _when()


class Report(SQLModel, table=True):
    """A campaign's report up to a week, as it was made: its numbers (the report as JSON) and
    its page, so staff read it from the store whichever machine made it. A week reported
    again replaces its report."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("campaign_id", "week"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    week: int
    data: dict[str, Any] = Field(sa_type=JSON)
    html: str
    made_at: datetime = Field(sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """One entry of the append-only audit log; `hash` covers the entry and `prev_hash`."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_entity", "entity_type", "entity_id"),)

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str
    action: str = Field(max_length=64)
    entity_type: str = Field(max_length=32)
    entity_id: str = Field(max_length=64)
    summary: str
    changes: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The single row naming the last audit entry: appenders lock it, `verify` checks it."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int
    hash: str = Field(max_length=64)


# --- review comments ------------------------------------------------------------------------


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
    created_at: datetime = _created()


class StaffRun(SQLModel, table=True):
    """A piece of work staff started from the console: a Prefect deployment run
    (`flow_run_id`, `link`), or a `rally` command in a process on `host` (`pid`), which records
    how it ended (`exit_code`, the end of its output) itself. Every web process sees it."""

    __tablename__ = "staff_runs"

    id: str = Field(primary_key=True, max_length=32)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    action: str = Field(max_length=32)
    title: str = Field(max_length=120)
    started_by: str = Field(max_length=254)
    started_at: datetime = Field(sa_type=UTCDateTime)
    command: list[str] = Field(default_factory=list, sa_type=JSON)
    host: str = Field(default="", max_length=255)
    pid: int | None = None
    log_path: str | None = Field(default=None, max_length=1000)
    flow_run_id: str | None = Field(default=None, max_length=64)
    link: str | None = Field(default=None, max_length=1000)
    finished_at: datetime | None = _when()
    exit_code: int | None = None
    output_tail: str = ""

"""Side effects and time: the outbox, rate windows and timers."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime, created_time, optional_time


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
        # A destination's pending messages in the order drains take them (`tasks.outbox.claim`)
        Index(
            "ix_outbox_claim",
            "channel",
            "destination",
            "available_at",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_outbox_subject", "subject_type", "subject_id"),
        # The messages drains hold right now, by subject (`claim(..., one_per_subject=True)`)
        Index(
            "ix_outbox_leased",
            "destination",
            "subject_type",
            "subject_id",
            sqlite_where=text("lease_id IS NOT NULL"),
            postgresql_where=text("lease_id IS NOT NULL"),
        ),
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
    available_at: datetime = created_time()
    locked_until: datetime | None = optional_time()
    lease_id: str | None = Field(default=None, max_length=32)  # the drain holding it
    last_error: str | None = None
    remote_id: str | None = None
    remote_state: dict[str, Any] | None = Field(default=None, sa_type=JSON(none_as_null=True))
    created_at: datetime = created_time()
    sent_at: datetime | None = optional_time()


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
        Index("ix_timers_entity", "entity_type", "entity_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=48)
    entity_type: str = Field(max_length=32)
    entity_id: str = Field(max_length=64)
    due_at: datetime = Field(sa_type=UTCDateTime)
    fired_at: datetime | None = optional_time()
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = created_time()

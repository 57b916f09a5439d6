"""Tokens for Rally's REST API: what other systems (n8n, Zapier, a data team's scripts) present."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime, created_time, optional_time


class ApiToken(SQLModel, table=True):
    """A scoped, expiring API token. Only a SHA-256 of its secret is kept; the secret is shown
    once, when it is made. `campaign_id` None means every campaign (made deliberately, with
    `--all-campaigns`). Revoking sets `revoked_at`; the row stays for the audit log's sake."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    secret_hash: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=100)
    scopes: list[str] = Field(default_factory=list, sa_type=JSON)
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id", index=True)
    created_by: str = Field(max_length=254)
    created_at: datetime = created_time()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    last_used_at: datetime | None = optional_time()
    revoked_at: datetime | None = optional_time()
    revoked_by: str | None = Field(default=None, max_length=254)


class ApiIdempotencyKey(SQLModel, table=True):
    """A POST's `Idempotency-Key` and the answer it got, kept a day so that a client retrying
    after a lost answer gets the same answer and the work is not done twice. `status` is None
    while the first request is still being answered."""

    __tablename__ = "api_idempotency_keys"

    token_id: int = Field(foreign_key="api_tokens.id", primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    request_hash: str = Field(max_length=64)
    status: int | None = None
    body: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = created_time()


class WebhookSubscription(SQLModel, table=True):
    """Where a campaign's events are posted (`tasks.webhooks`): a URL, the event types it takes
    and its signing secret, sealed with `RALLY_SECRET_KEY`. Its deliveries are outbox messages
    (destination `webhook:<id>`), sent in order, one deliverer at a time (`locked_until`,
    `lease_id`). While the receiver fails, `failures` counts the tries in a row, `retry_at` is
    the next one and `failing_since` the first; failing for days disables it (`disabled_at`)."""

    __tablename__ = "webhook_subscriptions"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(default_factory=list, sa_type=JSON)
    secret_sealed: str
    description: str = Field(default="", max_length=200)
    created_by: str = Field(max_length=254)
    created_at: datetime = created_time()
    failures: int = 0
    failing_since: datetime | None = optional_time()
    retry_at: datetime | None = optional_time()
    last_error: str | None = None
    last_success_at: datetime | None = optional_time()
    locked_until: datetime | None = optional_time()
    lease_id: str | None = Field(default=None, max_length=32)
    disabled_at: datetime | None = optional_time()
    disabled_reason: str | None = None

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

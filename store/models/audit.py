"""The hash-chained audit log and its head."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime


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

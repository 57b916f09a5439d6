"""The policy, follow-up rules and brief templates each campaign was applied with, by version."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import created_time


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
    created_at: datetime = created_time()

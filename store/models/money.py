"""The payments ledger: what each creator has earned, as double-entry postings."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import created_time


class LedgerEntry(SQLModel, table=True):
    """One line of a posting. A posting (`posting`, its key: what earned it, so it is made
    once) is two or more lines whose amounts add up to zero: a debit is positive, a credit
    negative, in cents of `currency`. Earning a fee debits `fees` (what the campaign spent)
    and credits the creator's `payable` (what it owes them). Lines are never changed or
    deleted: a correction is a reversing posting (`reverses`: the key of the one it undoes)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("posting", "account"),
        Index("ix_ledger_entries_campaign_member", "campaign_id", "member_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    member_id: int = Field(foreign_key="roster_members.id")
    posting: str = Field(max_length=120)
    account: str = Field(max_length=40)
    amount_cents: int
    currency: str = Field(max_length=3)
    kind: str = Field(max_length=24)  # earned, bonus, reversal
    cause: str = Field(max_length=120)  # what earned it: `creative:12`, `signups:40`
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    reverses: str | None = Field(default=None, max_length=120)
    actor: str = Field(max_length=254)
    created_at: datetime = created_time()

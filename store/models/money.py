"""The payments ledger: what each creator has earned, as double-entry postings."""

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import created_time, optional_time


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
        Index("ix_ledger_entries_cause", "cause"),
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


class PaymentApproval(SQLModel, table=True):
    """Staff approving what a creator is owed before it can be paid: the amount awaiting
    approval when it was asked (`amount_cents`), approved by `needed` different people (two
    from the campaign's threshold up), each in `approvers` ({"by", "at"}). Once it has them,
    the posting `posting` moves the amount from `payable` to `approved`. One overtaken by more
    earnings before it had them is `superseded`; its successor asks again for the new amount."""

    __tablename__ = "payment_approvals"
    __table_args__ = (Index("ix_payment_approvals_member", "member_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    member_id: int = Field(foreign_key="roster_members.id")
    amount_cents: int
    currency: str = Field(max_length=3)
    needed: int
    approvers: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    status: str = Field(default="waiting", max_length=16)  # waiting, approved, superseded
    posting: str | None = Field(default=None, max_length=120)
    created_at: datetime = created_time()
    decided_at: datetime | None = optional_time()


class PayoutAccount(SQLModel, table=True):
    """Where a creator on a campaign is paid: their account at a payout provider (a Stripe
    connected account, `acct_...`). Only the provider's id is kept, never bank details."""

    __tablename__ = "payout_accounts"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="roster_members.id", unique=True)
    provider: str = Field(max_length=16)
    account: str = Field(max_length=254)
    created_at: datetime = created_time()
    updated_at: datetime = created_time()


class PayoutStatus(StrEnum):
    SENDING = "sending"  # in the outbox, or sent and not yet answered
    PAID = "paid"
    FAILED = "failed"  # refused by the provider: the amount is back in `approved`
    TAKEN_BACK = "taken_back"  # paid, then reversed or refunded: the amount waits for approval


class Payout(SQLModel, table=True):
    """One payment of a creator's approved amount through a payout provider, made once: its
    outbox message carries the provider's idempotency key (`reference`, random), so a repeat after a
    crash finds the first transfer instead of making a second. `remote_id` is the provider's
    transfer; `error` the provider's words when it refused."""

    __tablename__ = "payouts"
    __table_args__ = (Index("ix_payouts_campaign_status", "campaign_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    member_id: int = Field(foreign_key="roster_members.id", index=True)
    provider: str = Field(max_length=16)
    account: str = Field(max_length=254)
    amount_cents: int
    currency: str = Field(max_length=3)
    status: str = Field(default=PayoutStatus.SENDING, max_length=16)
    reference: str = Field(max_length=64, unique=True)  # the provider's idempotency key
    agency: str | None = Field(default=None, max_length=48)  # paid through it, as the roster said
    taken_back_cents: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    remote_id: str | None = Field(default=None, max_length=120)
    error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = created_time()
    settled_at: datetime | None = optional_time()


class TaxForm(SQLModel, table=True):
    """A creator's W-9 on file: when it was collected, the name and address on it (a business
    name for a `business`), and the last four digits of their taxpayer id. Never the whole
    number: Rally does not keep one. The address is what disbursement reports itemize."""

    __tablename__ = "tax_forms"

    id: int | None = Field(default=None, primary_key=True)
    creator_id: int = Field(foreign_key="creators.id", unique=True)
    form: str = Field(default="W-9", max_length=8)
    collected_on: date
    legal_name: str | None = Field(default=None, max_length=200)
    tin_last4: str | None = Field(default=None, max_length=4)
    business: bool = False
    street: str | None = Field(default=None, max_length=34)
    street2: str | None = Field(default=None, max_length=34)
    city: str | None = Field(default=None, max_length=30)
    state: str | None = Field(default=None, max_length=2)
    zip: str | None = Field(default=None, max_length=9)
    recorded_by: str = Field(max_length=254)
    created_at: datetime = created_time()


class Contract(SQLModel, table=True):
    """One version of a creator's contract for a campaign: its exact text (and that text's
    SHA-256), made from the brief's clauses and the creator's terms; a new version only when
    the text changes. The creator signs by typing their name on their brief page: kept as
    typed, with the moment, the network address and the browser's user agent, as an
    electronic signature is recorded under ESIGN and UETA. Staff countersign; the signed copy
    is a PDF under RALLY_HOME (`pdf_file`)."""

    __tablename__ = "contracts"
    __table_args__ = (UniqueConstraint("member_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    member_id: int = Field(foreign_key="roster_members.id", index=True)
    version: int
    text: str
    text_hash: str = Field(max_length=64)
    created_at: datetime = created_time()
    signed_name: str | None = Field(default=None, max_length=200)
    signed_at: datetime | None = optional_time()
    signed_address: str | None = Field(default=None, max_length=64)
    signed_user_agent: str | None = Field(default=None, max_length=500)
    countersigned_by: str | None = Field(default=None, max_length=254)
    countersigned_at: datetime | None = optional_time()
    pdf_file: str | None = Field(default=None, max_length=200)

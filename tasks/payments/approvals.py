"""Approving what a creator is owed before it is paid.

What a creator earned waits in `payable` until staff approve it: the whole amount waiting when
they approve, by one person, or by two different people from the campaign's
`payments.second_approval_from` up. The approval that has its people posts the amount from
`payable` to `approved`, where a payout run finds it. Earnings that come in while an approval
waits for its second person supersede it: the new amount is asked for again, from the start,
so nobody's approval ever covers money they did not see.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.audit import Change, record
from store.models import Campaign, Creator, LedgerEntry, PaymentApproval, RosterMember
from tasks.campaigns.campaign import campaign_spec, roster_member
from tasks.payments.ledger import APPROVAL, APPROVED, PAYABLE, post

WAITING, DONE, SUPERSEDED = "waiting", "approved", "superseded"


@dataclass(frozen=True)
class Approved:
    """What an approval did: the amount, who approved it so far, and whether it is posted
    (False: it waits for a second person)."""

    creator: str
    amount_cents: int
    currency: str
    approvers: list[str]
    needed: int
    posted: bool


def member_by_handle(session: Session, campaign: Campaign, handle: str) -> RosterMember:
    """The campaign's roster member with this handle (with or without @), whether or not
    still on the roster: a creator taken off it may still be owed."""
    found = roster_member(session, campaign, handle.strip().lstrip("@").lower())
    if found is None:
        raise RallyError(f"creator: @{handle.lstrip('@')} is not on {campaign.slug}'s roster")
    return found[0]


def balance(session: Session, member: RosterMember, account: str) -> int:
    """What the ledger holds for the creator in `account`, as cents owed to them (found by
    the ledger's campaign and member index)."""
    total = session.exec(
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(
            LedgerEntry.campaign_id == member.campaign_id,
            LedgerEntry.member_id == member.id,
            LedgerEntry.account == account,
        )
    ).one()
    return -int(total)


def approve(
    session: Session, campaign: Campaign, handle: str, *, by: str, now: datetime
) -> Approved:
    """`by` approves what creator `handle` has waiting: posted at once when one person is
    enough, else when a second, different person approves the same amount."""
    by = by.strip()
    if not by:
        raise RallyError("by: say who approves (a name or email)")
    member = member_by_handle(session, campaign, handle)
    assert member.id is not None and campaign.id is not None
    creator = f"@{handle.strip().lstrip('@').lower()}"
    waiting = balance(session, member, PAYABLE)
    if waiting <= 0:
        raise RallyError(f"{creator}: nothing awaits approval")
    spec = campaign_spec(campaign)
    currency, threshold = spec.budget.currency, spec.payments.second_approval_from
    needed = 2 if threshold is not None and waiting >= round(threshold * 100) else 1
    open_ = session.exec(
        select(PaymentApproval).where(
            PaymentApproval.member_id == member.id, PaymentApproval.status == WAITING
        )
    ).first()
    if open_ is not None and open_.amount_cents != waiting:
        open_.status, open_.decided_at = SUPERSEDED, now
        session.add(open_)
        open_ = None
    if open_ is None:
        open_ = PaymentApproval(
            campaign_id=campaign.id,
            member_id=member.id,
            amount_cents=waiting,
            currency=currency,
            needed=needed,
            created_at=now,
        )
    names = [a["by"] for a in open_.approvers]
    if by.lower() in (name.lower() for name in names):
        raise RallyError(
            f"{creator}: {by} approved these {waiting / 100:,.2f} {currency} already; "
            "a second person must approve them"
        )
    open_.approvers = [*open_.approvers, {"by": by, "at": now.isoformat()}]
    session.add(open_)
    session.flush()
    posted = len(open_.approvers) >= open_.needed
    if posted:
        open_.status, open_.decided_at = DONE, now
        open_.posting = f"approval:{open_.id}"
        post(
            session,
            campaign,
            member.id,
            posting=open_.posting,
            kind=APPROVAL,
            cause=f"approval:{open_.id}",
            lines=[(PAYABLE, waiting), (APPROVED, -waiting)],
            details={"approvers": [a["by"] for a in open_.approvers]},
            actor=by,
            now=now,
        )
    else:
        record(
            session,
            [
                Change(
                    by,
                    "payment.approval_started",
                    "payment_approval",
                    open_.id or 0,
                    f"{creator}: {waiting / 100:,.2f} {currency} approved by {by}; "
                    "a second person must approve them too",
                    {"member_id": member.id, "amount_cents": waiting},
                )
            ],
        )
    return Approved(
        creator, waiting, currency, [a["by"] for a in open_.approvers], open_.needed, posted
    )


def waiting_approvals(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """The approvals that wait for a second person, oldest first."""
    rows = session.exec(
        select(PaymentApproval, Creator.handle)
        .join(RosterMember, col(RosterMember.id) == col(PaymentApproval.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(PaymentApproval.campaign_id == campaign.id, PaymentApproval.status == WAITING)
        .order_by(col(PaymentApproval.id))
    ).all()
    return [
        {
            "creator": handle,
            "amount_cents": approval.amount_cents,
            "currency": approval.currency,
            "approvers": [a["by"] for a in approval.approvers],
            "needed": approval.needed,
            "since": approval.created_at.isoformat(),
        }
        for approval, handle in rows
    ]

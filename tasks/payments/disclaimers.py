"""The disclaimer archive: for each creative that went up, what the public saw and what stands
behind it, as a committee keeps it for its records and for anyone who asks.

A row per posted creative (still up or taken down since): where and when it was posted, the
caption of the version that was approved and its "Paid for by" sentence as it appears there,
the reviews that approved that version (tier, approver, when), what the creator earned for it
in the ledger, and the payouts that paid the creator.
"""

import re
from typing import Any

from sqlmodel import Session, col, select

from store.models import (
    Campaign,
    Creative,
    CreativeDraft,
    Creator,
    LedgerEntry,
    Payout,
    PayoutStatus,
    ReviewTask,
    RosterMember,
)
from tasks.payments.ledger import EARNINGS, PAYABLE

# The sentence, to its end: a stop followed by a space or the end (not a dot in a web address).
PAID_FOR_BY = re.compile(r"paid for by\b.*?(?:[.!?](?=\s|$)|$)", re.IGNORECASE | re.MULTILINE)


def disclaimer_archive(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """The campaign's posted creatives, oldest post first (see the module)."""
    posted = session.exec(
        select(Creative, CreativeDraft, Creator.handle)
        .join(
            CreativeDraft,
            (col(CreativeDraft.creative_id) == col(Creative.id))
            & (col(CreativeDraft.version) == col(Creative.current_version)),
        )
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(Creative.campaign_id == campaign.id, col(Creative.posted_at).is_not(None))
        .order_by(col(Creative.posted_at), col(Creative.id))
    ).all()
    drafts = [draft.id for _, draft, _ in posted]
    reviews: dict[int, list[dict[str, Any]]] = {}
    for task in session.exec(
        select(ReviewTask)
        .where(col(ReviewTask.draft_id).in_(drafts), ReviewTask.status == "approved")
        .order_by(col(ReviewTask.position))
    ):
        reviews.setdefault(task.draft_id, []).append(
            {"tier": task.tier, "by": task.decided_by, "at": _iso(task.decided_at)}
        )
    earned: dict[str, list[dict[str, Any]]] = {}
    for entry in session.exec(
        select(LedgerEntry).where(
            LedgerEntry.campaign_id == campaign.id,
            LedgerEntry.account == PAYABLE,
            col(LedgerEntry.kind).in_(EARNINGS),
            col(LedgerEntry.cause).like("creative:%"),
        )
    ):
        earned.setdefault(entry.cause, []).append(
            {"posting": entry.posting, "cents": -entry.amount_cents, "at": _iso(entry.created_at)}
        )
    paid: dict[int, list[dict[str, Any]]] = {}
    for payout in session.exec(
        select(Payout)
        .where(Payout.campaign_id == campaign.id, Payout.status == PayoutStatus.PAID)
        .order_by(col(Payout.settled_at))
    ):
        paid.setdefault(payout.member_id, []).append(
            {
                "payout": payout.id,
                "cents": payout.amount_cents,
                "settled": _iso(payout.settled_at),
                "transfer": payout.remote_id,
            }
        )
    rows = []
    for creative, draft, handle in posted:
        said = PAID_FOR_BY.search(draft.caption)
        lines = earned.get(f"creative:{creative.id}", [])
        rows.append(
            {
                "creative": creative.id,
                "creator": handle,
                "title": creative.title,
                "status": creative.status,
                "posted_at": _iso(creative.posted_at),
                "posted_url": creative.posted_url,
                "version": draft.version,
                "caption": draft.caption,
                "paid_for_by": said.group(0).strip() if said else None,
                "approvals": reviews.get(draft.id or 0, []),
                "earned_cents": sum(line["cents"] for line in lines),
                "earnings": lines,
                "creator_payouts": paid.get(creative.member_id, []),
            }
        )
    return rows


def _iso(at: Any) -> str | None:
    return at.isoformat() if at is not None else None

"""The payments ledger: each creator's earnings as double-entry postings.

A posting is made by the event that earns it (a deliverable approved, a post still up after
the days the terms ask, signups brought) and keyed by that event, so that making it again
changes nothing: the approval's transaction makes the first, and `earn_due`, which any number
of runs may repeat, makes the others. Its lines debit `fees` (the campaign's spend) and credit
the creator's `payable` (what the campaign owes them), and each posting is in the audit log.
Lines are never changed: `reverse` adds the opposite posting, citing the one it undoes.

The fee is the creator's roster rate, else their tier's, spread over the brief's deliverables
to the cent (the first `count` creatives a creator gets approved are those deliverables; the
cents a division leaves go to the last one); each split of the terms takes its share of a
deliverable's fee.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from functools import cache
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.errors import RallyError
from store.audit import Change, record
from store.models import (
    Campaign,
    Contact,
    Creative,
    CreativeStatus,
    Creator,
    LedgerEntry,
    RosterMember,
)
from tasks.campaigns.campaign import campaign_spec
from tasks.webhooks.events import Event, emit, occurrence

# Accounts: what the campaign spent (`fees`); what it owes a creator, awaiting approval
# (`payable`), approved (`approved`), in a payout not yet settled (`in_transit`); and what left
# its balance for them (`paid`).
FEES, PAYABLE, APPROVED, IN_TRANSIT, PAID = "fees", "payable", "approved", "in_transit", "paid"
EARNED, BONUS, REVERSAL, KILL_FEE = "earned", "bonus", "reversal", "kill_fee"
APPROVAL, PAYOUT, SETTLED, RETURNED = "approval", "payout", "settled", "returned"
TAKEN_BACK = "taken_back"  # a paid payout's money came back (reversed, refunded): to approve again
EARNINGS = (EARNED, BONUS, REVERSAL, KILL_FEE)  # the kinds that change what a creator is owed
# The webhook event each kind of posting is told as, and what a payment posting did.
TOLD = {
    EARNED: "payment.earned",
    BONUS: "payment.earned",
    KILL_FEE: "payment.earned",
    REVERSAL: "payment.reversed",
    APPROVAL: "payment.approved",
    SETTLED: "payment.paid",
    RETURNED: "payment.failed",
    TAKEN_BACK: "payment.failed",
}
DID = {
    APPROVAL: "approved for payment",
    PAYOUT: "sent to be paid",
    SETTLED: "paid",
    RETURNED: "refused by the payout provider, back to approved",
    TAKEN_BACK: "taken back after it was paid, to approve again",
}


@dataclass(frozen=True)
class Deliverable:
    """A creative as one of its creator's contracted deliverables: which one, and its fee."""

    number: int
    fee_cents: int


def post(
    session: Session,
    campaign: Campaign,
    member_id: int,
    *,
    posting: str,
    kind: str,
    cause: str,
    lines: list[tuple[str, int]],
    details: dict[str, Any],
    actor: str,
    now: datetime,
    reverses: str | None = None,
) -> bool:
    """Add the posting `posting` (False if it was made before): its lines must add up to
    zero."""
    assert campaign.id is not None
    if sum(amount for _, amount in lines) != 0:
        raise ValueError(f"posting {posting}: its lines add up to {sum(a for _, a in lines)}")
    currency = campaign_spec(campaign).budget.currency
    rows = [
        {
            "campaign_id": campaign.id,
            "member_id": member_id,
            "posting": posting,
            "account": account,
            "amount_cents": amount,
            "currency": currency,
            "kind": kind,
            "cause": cause,
            "details": details,
            "reverses": reverses,
            "actor": actor,
            "created_at": now,
        }
        for account, amount in lines
    ]
    connection = session.connection()  # Core: the ORM has nothing to do for these rows
    dialect = connection.dialect.name
    added = connection.execute(_adding(dialect), rows)
    if not (added.all() if dialect == "postgresql" else added.rowcount):
        return False  # made before: its lines are there already
    data: dict[str, Any] = {"posting": posting, "cause": cause, "currency": currency}
    if kind in EARNINGS:
        data["owed_cents"] = owed = -sum(amount for account, amount in lines if account == PAYABLE)
        summary = f"{kind} {owed / 100:,.2f} {currency} owed for {cause}"
    else:
        data["amount_cents"] = moved = sum(amount for _, amount in lines if amount > 0)
        summary = f"{moved / 100:,.2f} {currency} {DID.get(kind, kind)} ({cause})"
    told = TOLD.get(kind)
    if told:
        key, subject = occurrence("ledger", posting), f"member:{member_id}"
        emit(session, campaign.id, [Event(told, key, subject, "payments", data)], at=now)
    details = {"member_id": member_id, "lines": dict(lines), **details}
    record(session, [Change(actor, f"ledger.{kind}", "ledger_posting", posting, summary, details)])
    return True


@cache
def _adding(dialect: str) -> Any:
    """The insert of a posting's lines, none if the posting was made before (built once). On
    PostgreSQL it returns the lines it added (its driver's count for many rows is not theirs);
    SQLite's count is, and is cheaper to ask for."""
    table = LedgerEntry.__table__  # type: ignore[attr-defined]
    if dialect == "postgresql":
        adding = postgresql.insert(table).on_conflict_do_nothing(
            index_elements=["posting", "account"]
        )
        return adding.returning(table.c.id)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=["posting", "account"])


def member_rate_cents(member: RosterMember, spec: CampaignSpec) -> int | None:
    """The creator's fee for the campaign: their roster rate, else their tier's."""
    if member.rate_cents is not None:
        return member.rate_cents
    tier = spec.tiers.get(member.tier or "")
    return round(tier.rate * 100) if tier else None


def deliverable_of(
    session: Session, creative: Creative, member: RosterMember, spec: CampaignSpec
) -> Deliverable | None:
    """The deliverable `creative` is: the one its earlier earnings named, else the creator's
    next while the brief's count lasts; None past it, or without a rate."""
    earlier = session.exec(
        select(LedgerEntry.details).where(
            LedgerEntry.cause == f"creative:{creative.id}",
            LedgerEntry.kind == EARNED,
            LedgerEntry.account == PAYABLE,
        )
    ).first()
    if earlier:
        return Deliverable(earlier["deliverable"], earlier["fee_cents"])
    rate = member_rate_cents(member, spec)
    count = spec.brief.deliverables.count
    taken = deliverables_earned(session, member)
    if rate is None or taken >= count:
        return None
    return Deliverable(taken + 1, deliverable_fee(rate, count, taken + 1))


def deliverables_earned(session: Session, member: RosterMember) -> int:
    """How many of the creator's deliverables have earned part of their fee."""
    return session.exec(
        select(func.count(func.distinct(LedgerEntry.cause))).where(
            LedgerEntry.campaign_id == member.campaign_id,  # as the ledger's index has them
            LedgerEntry.member_id == member.id,
            LedgerEntry.kind == EARNED,
            LedgerEntry.account == PAYABLE,
        )
    ).one()


def deliverable_fee(rate_cents: int, count: int, number: int) -> int:
    """The fee of deliverable `number` of `count`: whole cents that add up to the rate
    exactly over all of them (nothing for one beyond them)."""
    if number > count:
        return 0
    return rate_cents * number // count - rate_cents * (number - 1) // count


def split_cents(fee_cents: int, spec: CampaignSpec, on: str) -> int:
    """The part of a deliverable's fee the split `on` earns: the splits take their shares in
    turn, to the cent, so that together they make the whole fee."""
    before = Fraction(0)
    for split in spec.payments.splits:
        after = before + Fraction(str(split.share))
        if split.on == on:
            return int(fee_cents * after) - int(fee_cents * before)
        before = after
    return 0


def earn(
    session: Session, campaign: Campaign, creative: Creative, on: str, *, actor: str, now: datetime
) -> int:
    """What the deliverable `creative` earns as the split `on` ("approved", "posted"), posted
    once; the cents posted (0: nothing, or made before)."""
    spec = campaign_spec(campaign)
    split = next((s for s in spec.payments.splits if s.on == on), None)
    member = session.get(RosterMember, creative.member_id)
    if split is None or member is None:
        return 0
    deliverable = deliverable_of(session, creative, member, spec)
    if deliverable is None:
        return 0
    cents = split_cents(deliverable.fee_cents, spec, on)
    made = cents > 0 and post(
        session,
        campaign,
        creative.member_id,
        posting=f"earned:creative:{creative.id}:{on}",
        kind=EARNED,
        cause=f"creative:{creative.id}",
        lines=[(FEES, cents), (PAYABLE, -cents)],
        details={
            "deliverable": deliverable.number,
            "fee_cents": deliverable.fee_cents,
            "split": on,
            "share": split.share,
        },
        actor=actor,
        now=now,
    )
    return cents if made else 0


def earn_kill_fee(
    session: Session, campaign: Campaign, member: RosterMember, *, reason: str, actor: str,
    now: datetime,
) -> int:  # fmt: skip
    """The campaign cancels the creator's deliverables not yet approved: they earn the terms'
    kill fee, that share of each one's fee, posted once; the cents posted."""
    spec = campaign_spec(campaign)
    share = spec.payments.kill_fee
    if share is None:
        raise RallyError(f"payments.kill_fee: {campaign.slug}'s terms have no kill fee")
    if not reason.strip():
        raise RallyError("reason: say why the deliverables are cancelled")
    rate = member_rate_cents(member, spec)
    if rate is None:
        raise RallyError("the creator has no fee: their roster rate and tier's are empty")
    count = spec.brief.deliverables.count
    cancelled = range(deliverables_earned(session, member) + 1, count + 1)
    cents = sum(int(deliverable_fee(rate, count, n) * Fraction(str(share))) for n in cancelled)
    if cents <= 0:
        raise RallyError("nothing to cancel: every deliverable was approved")
    made = post(
        session,
        campaign,
        member.id or 0,
        posting=f"kill_fee:member:{member.id}",
        kind=KILL_FEE,
        cause=f"kill_fee:{member.id}",
        lines=[(FEES, cents), (PAYABLE, -cents)],
        details={"reason": reason.strip(), "deliverables": len(cancelled), "share": share},
        actor=actor,
        now=now,
    )
    if not made:
        raise RallyError("their kill fee was posted already")
    return cents


def earn_due(session: Session, campaign: Campaign, *, actor: str, now: datetime) -> int:
    """Post what has come due since the last time: the posted split of each post still up
    for the terms' days, and the signup bonus for signups brought since. Safe to repeat, by
    any number of runs; the number of postings made."""
    spec = campaign_spec(campaign)
    made = 0
    posted = next((s for s in spec.payments.splits if s.on == "posted"), None)
    if posted is not None:
        up_since = now - timedelta(days=posted.live_days)
        creatives = session.exec(
            select(Creative).where(
                Creative.campaign_id == campaign.id,
                Creative.status == CreativeStatus.POSTED,
                col(Creative.posted_at) <= up_since,
            )
        ).all()
        for creative in creatives:
            made += bool(earn(session, campaign, creative, "posted", actor=actor, now=now))
    bonus = spec.payments.signup_bonus
    if bonus is not None:
        made += _earn_bonuses(session, campaign, bonus.per_signup, bonus.cap, actor=actor, now=now)
    return made


def _earn_bonuses(
    session: Session,
    campaign: Campaign,
    per_signup: float,
    cap: float,
    *,
    actor: str,
    now: datetime,
) -> int:
    """Each creator's signup bonus brought up to what their signups earn, within the cap: a
    posting for the difference, keyed by the total it brings them to."""
    signups: dict[int, int] = dict(
        session.exec(  # type: ignore[arg-type]
            select(Contact.first_member_id, func.count())
            .join(RosterMember, col(RosterMember.id) == col(Contact.first_member_id))
            .where(RosterMember.campaign_id == campaign.id, col(Contact.erased_at).is_(None))
            .group_by(col(Contact.first_member_id))
        ).all()
    )
    earned = dict(
        session.exec(
            select(LedgerEntry.member_id, -func.sum(LedgerEntry.amount_cents))
            .where(
                LedgerEntry.campaign_id == campaign.id,
                LedgerEntry.account == PAYABLE,
                col(LedgerEntry.kind).in_([BONUS]),
            )
            .group_by(col(LedgerEntry.member_id))
        ).all()
    )
    made = 0
    for member_id, count in signups.items():
        owed = min(round(count * per_signup * 100), round(cap * 100))
        cents = owed - int(earned.get(member_id) or 0)
        if cents > 0 and post(
            session,
            campaign,
            member_id,
            posting=f"bonus:member:{member_id}:{owed}",
            kind=BONUS,
            cause=f"signups:{count}",
            lines=[(FEES, cents), (PAYABLE, -cents)],
            details={"signups": count, "owed_cents": owed},
            actor=actor,
            now=now,
        ):
            made += 1
    return made


def reverse(session: Session, posting: str, *, reason: str, actor: str, now: datetime) -> int:
    """Undo the posting `posting` with its opposite, citing it and the reason; the cents it
    took back from what the creator is owed."""
    if not reason.strip():
        raise RallyError("reason: say why the posting is reversed")
    lines = session.exec(select(LedgerEntry).where(LedgerEntry.posting == posting)).all()
    if not lines:
        raise RallyError(f"no posting {posting!r} (`rally payments ledger SLUG` lists them)")
    first = lines[0]
    if first.kind == REVERSAL:
        raise RallyError(f"posting {posting!r} is a reversal: post the earning again instead")
    if first.kind not in EARNINGS:
        raise RallyError(
            f"posting {posting!r} moves money already earned ({first.kind}): only earnings are "
            "reversed; a payout is settled by what the payout provider answers"
        )
    campaign = session.get(Campaign, first.campaign_id)
    assert campaign is not None
    made = post(
        session,
        campaign,
        first.member_id,
        posting=f"reversal:{posting}",
        kind=REVERSAL,
        cause=first.cause,
        lines=[(line.account, -line.amount_cents) for line in lines],
        details={"reason": reason.strip()},
        actor=actor,
        now=now,
        reverses=posting,
    )
    if not made:
        raise RallyError(f"posting {posting!r} was reversed already")
    return -sum(line.amount_cents for line in lines if line.account == PAYABLE)


def ledger(
    session: Session,
    campaign: Campaign,
    handle: str | None = None,
    *,
    after: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The campaign's postings in the order they were made, one row per line, with the
    creator's handle; only one creator's with `handle`; with `after` and `limit`, a page by
    line id."""
    query = (
        select(LedgerEntry, Creator.handle)
        .join(RosterMember, col(RosterMember.id) == col(LedgerEntry.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(LedgerEntry.campaign_id == campaign.id)
        .order_by(col(LedgerEntry.id))
    )
    if handle is not None:
        query = query.where(Creator.handle == handle.lstrip("@").lower())
    if after is not None:
        query = query.where(col(LedgerEntry.id) > after)
    return [
        {
            "id": entry.id,
            "posting": entry.posting,
            "creator": creator,
            "account": entry.account,
            "amount_cents": entry.amount_cents,
            "currency": entry.currency,
            "kind": entry.kind,
            "cause": entry.cause,
            "reverses": entry.reverses,
            "details": entry.details,
            "actor": entry.actor,
            "at": entry.created_at.isoformat(),
        }
        for entry, creator in session.exec(query.limit(limit)).all()
    ]


def balances(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """Each creator's money in the campaign, by handle: earned from deliverables and from
    bonuses (reversals counted against what they undid), where it stands (awaiting approval,
    approved, in a payout, paid), and what is still owed (earned and not paid)."""
    rows = session.execute(
        sa_select(
            col(Creator.handle),
            col(LedgerEntry.account),
            col(LedgerEntry.kind),
            col(LedgerEntry.cause),
            col(LedgerEntry.amount_cents),
        )
        .select_from(LedgerEntry)
        .join(RosterMember, col(RosterMember.id) == col(LedgerEntry.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(col(LedgerEntry.campaign_id) == campaign.id, col(LedgerEntry.account) != FEES)
    ).all()
    stands = {PAYABLE: "awaiting_cents", APPROVED: "approved_cents"}
    stands |= {IN_TRANSIT: "in_transit_cents", PAID: "paid_cents"}
    owed: dict[str, dict[str, Any]] = {}
    for handle, account, kind, cause, amount in rows:
        row = owed.setdefault(
            handle,
            {"creator": handle, "fees_cents": 0, "bonus_cents": 0}
            | dict.fromkeys(stands.values(), 0),
        )
        row[stands[account]] -= amount
        if account == PAYABLE and kind in EARNINGS:
            bonus = kind == BONUS or (kind == REVERSAL and cause.startswith("signups:"))
            row["bonus_cents" if bonus else "fees_cents"] -= amount
    currency = campaign_spec(campaign).budget.currency
    for row in owed.values():
        row["earned_cents"] = row["fees_cents"] + row["bonus_cents"]
        row["owed_cents"] = row["earned_cents"] - row["paid_cents"]
        row["currency"] = currency
    return sorted(owed.values(), key=lambda r: r["creator"])

"""Paying creators their approved amounts through their account's provider (Stripe Connect,
PayPal Payouts; a rehearsal's folder), once.

A payout run (`start_payouts`) makes, for each creator with an approved amount and a payout
account, a payout: its row, its posting (`approved` to `in_transit`) and its outbox message, in
one transaction, so a run that dies leaves all three or none, and a creator with a payout on
its way gets no second one. `pay` drains the messages through the provider, one call per payout,
each with the idempotency key made with its payout (`reference`), and records a claimed batch's
answers together: a drain killed after the provider moved the money and before Rally recorded
it sends the same calls again, and the provider answers each with its first transfer. Nobody is
paid twice, and nobody is missed: a message stays in the outbox until its answer is recorded.

Stripe's answer and its webhook (`transfer.created`, naming the payout in its metadata) settle
a payout alike, whichever comes first: `in_transit` to `paid`; the other finds it done. PayPal
takes a payout and pays later: its item's webhook (or `reconcile`'s read of the batch) settles
it, or returns it.
A refusal (an unknown account, one that cannot take transfers) posts the amount back to
`approved`, for the next run once the account is fixed. A payout whose tries ran out without any
answer stays in transit: `reconcile` asks the provider whether its transfer exists, and settles
the payout, or returns its amount to `approved`.
"""

import json
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy import Engine, String, cast, func
from sqlmodel import Session, col, select
from tenacity.wait import wait_base

from config.errors import RallyError
from config.settings import Settings
from integrations.crm import RateLimit
from integrations.errors import IntegrationError, PermanentError
from integrations.http import client_or_own
from integrations.paypal import ITEM_NOT_PAID, ITEM_PAID, RATE, PayPal, PayPalSettings
from integrations.stripe import Stripe, StripeSettings
from store.audit import Change, record
from store.db import transaction
from store.models import (
    Campaign,
    Creator,
    LedgerEntry,
    OutboxMessage,
    OutboxStatus,
    Payout,
    PayoutAccount,
    PayoutStatus,
    RosterMember,
    TaxForm,
)
from tasks import progress
from tasks.campaigns.campaign import campaign_spec
from tasks.drain import DrainReport, Handler, drain, repeat_safe
from tasks.outbox import MAX_ATTEMPTS, Claimed, enqueue, retrying
from tasks.payments.approvals import approve, member_by_handle
from tasks.payments.ledger import (
    APPROVED,
    IN_TRANSIT,
    PAID,
    PAYABLE,
    PAYOUT,
    RETURNED,
    SETTLED,
    TAKEN_BACK,
    post,
)
from tasks.rate_limits import SharedRateLimit

CHANNEL = "payout"
STRIPE, PAYPAL, REHEARSAL = "stripe", "paypal", "rehearsal"
PROVIDERS = (STRIPE, PAYPAL, REHEARSAL)
PAYPAL_ID = re.compile(r"[A-Z0-9]{13}")


class NotConfigured(RallyError):
    """The payout provider's credentials are not set."""


def set_account(
    session: Session,
    campaign: Campaign,
    handle: str,
    account: str,
    *,
    provider: str = STRIPE,
    actor: str,
    now: datetime,
) -> None:
    """Record where creator `handle` is paid: their connected account at the provider."""
    account = account.strip()
    if provider == STRIPE and not (account.startswith("acct_") and 6 <= len(account) <= 254):
        raise RallyError(f"account: {account!r} is not a Stripe connected account id (acct_...)")
    if provider == PAYPAL and not (
        PAYPAL_ID.fullmatch(account)
        or re.fullmatch(r"[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]+", account)
    ):
        raise RallyError(f"account: {account!r} is not a PayPal email address or PayPal id")
    if provider not in PROVIDERS:
        raise RallyError(f"provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    member = member_by_handle(session, campaign, handle)
    row = session.exec(select(PayoutAccount).where(PayoutAccount.member_id == member.id)).first()
    before = row.account if row else None
    if row is None:
        row = PayoutAccount(member_id=member.id or 0, provider=provider, account=account)
    row.provider, row.account, row.updated_at = provider, account, now
    session.add(row)
    if before != account:
        record(
            session,
            [
                Change(
                    actor,
                    "payment.account_set",
                    "roster_member",
                    member.id or 0,
                    f"@{handle.lstrip('@').lower()} is paid to {provider} account {account}",
                    {"provider": provider, "account": account, "before": before},
                )
            ],
        )


@dataclass
class Started:
    """What a payout run queued: payouts and their cents; creators it could not pay, and why."""

    payouts: int = 0
    cents: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def start_payouts(
    session: Session,
    campaign: Campaign,
    *,
    actor: str,
    now: datetime,
    provider: str | None = None,
) -> Started:
    """Queue a payout of each creator's approved amount (see the module); only to accounts at
    `provider`, if given."""
    assert campaign.id is not None
    approved = session.exec(
        select(LedgerEntry.member_id, -func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.campaign_id == campaign.id, LedgerEntry.account == APPROVED)
        .group_by(col(LedgerEntry.member_id))
    ).all()
    members = {
        member_id: (handle, agency)
        for member_id, handle, agency in session.exec(
            select(RosterMember.id, Creator.handle, RosterMember.agency)
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(RosterMember.campaign_id == campaign.id)
        ).all()
    }
    accounts = {
        a.member_id: a
        for a in session.exec(
            select(PayoutAccount)
            .join(RosterMember, col(RosterMember.id) == col(PayoutAccount.member_id))
            .where(RosterMember.campaign_id == campaign.id)
        ).all()
    }
    on_the_way = set(
        session.exec(
            select(Payout.member_id).where(
                Payout.campaign_id == campaign.id, Payout.status == PayoutStatus.SENDING
            )
        ).all()
    )
    started = Started()
    for member_id, cents in sorted(approved):
        handle, agency = members.get(member_id, (str(member_id), None))
        handle = f"@{handle}"
        if not cents or cents <= 0:
            continue
        account = accounts.get(member_id)
        if account is None:
            started.skipped[handle] = "no payout account (`rally payments account`)"
            continue
        if provider is not None and account.provider != provider:
            continue
        if member_id in on_the_way:
            started.skipped[handle] = "a payout to them is on its way"
            continue
        _queue(
            session, campaign, member_id, handle, int(cents), account, agency,
            actor=actor, now=now,
        )  # fmt: skip
        started.payouts += 1
        started.cents += int(cents)
    return started


def _queue(
    session: Session,
    campaign: Campaign,
    member_id: int,
    handle: str,
    cents: int,
    account: PayoutAccount,
    agency: str | None,
    *,
    actor: str,
    now: datetime,
) -> None:
    """One payout: its row, its posting and its outbox message. `agency`: the one the roster
    says the creator is paid through (the payee disbursement reports itemize)."""
    currency = campaign_spec(campaign).budget.currency
    payout = Payout(
        campaign_id=campaign.id or 0,
        member_id=member_id,
        provider=account.provider,
        account=account.account,
        amount_cents=cents,
        currency=currency,
        reference=f"rally-payout-{uuid.uuid4().hex[:20]}",
        agency=agency,
        created_at=now,
    )
    session.add(payout)
    session.flush()
    post(
        session,
        campaign,
        member_id,
        posting=f"payout:{payout.id}",
        kind=PAYOUT,
        cause=f"payout:{payout.id}",
        lines=[(APPROVED, cents), (IN_TRANSIT, -cents)],
        details={"provider": payout.provider, "account": payout.account},
        actor=actor,
        now=now,
    )
    payload = {
        "payout": payout.id,
        "amount_cents": cents,
        "currency": currency,
        "account": payout.account,
        "reference": payout.reference,
        "campaign": campaign.slug,
        "to": handle,  # how the drain names the payout in what it reports
    }
    enqueue(
        session,
        [
            {
                "channel": CHANNEL,
                "destination": payout_destination(campaign.id or 0, payout.provider),
                "idempotency_key": payout.reference,
                "subject_type": "payout",
                "subject_id": str(payout.id),
                "payload": payload,
                "available_at": now,
                "created_at": now,
            }
        ],
    )


def settle(session: Session, payout_id: int, remote_id: str, *, actor: str, now: datetime) -> bool:
    """The provider moved the payout's money (transfer `remote_id`): post it as paid, once;
    False when it was settled before."""
    return settle_all(session, {payout_id: remote_id}, actor=actor, now=now) == 1


def settle_all(session: Session, transfers: Mapping[int, str], *, actor: str, now: datetime) -> int:
    """`settle` for many payouts (payout id -> transfer id), locked in one statement in id
    order and posted with their campaigns read once; how many were settled now."""
    query = (
        select(Payout)
        .where(col(Payout.id).in_(sorted(transfers)))
        .order_by(col(Payout.id))
        .with_for_update()
    )
    campaigns: dict[int, Campaign] = {}
    settled = 0
    for payout in session.exec(query).all():
        if payout.status in (PayoutStatus.PAID, PayoutStatus.TAKEN_BACK):
            continue
        remote_id = transfers[payout.id or 0]
        # a payout returned to `approved` whose money went after all is paid from there
        source = APPROVED if payout.status == PayoutStatus.FAILED else IN_TRANSIT
        payout.status, payout.remote_id, payout.settled_at = PayoutStatus.PAID, remote_id, now
        session.add(payout)
        lines = [(source, payout.amount_cents), (PAID, -payout.amount_cents)]
        campaign = campaigns.get(payout.campaign_id)
        if campaign is None:
            campaign = campaigns[payout.campaign_id] = _campaign(session, payout)
        details = {"transfer": remote_id}
        settled += _post(session, payout, SETTLED, lines, details, actor, now, campaign=campaign)
    return settled


def refuse(session: Session, payout_id: int, error: str, *, actor: str, now: datetime) -> bool:
    """The provider refused the payout: its amount goes back to `approved`; False when the
    payout was settled or returned before."""
    payout = session.get(Payout, payout_id, with_for_update=True)
    if payout is None or payout.status != PayoutStatus.SENDING:
        return False
    payout.status, payout.error, payout.settled_at = PayoutStatus.FAILED, error[:1000], now
    session.add(payout)
    lines = [(IN_TRANSIT, payout.amount_cents), (APPROVED, -payout.amount_cents)]
    return _post(session, payout, RETURNED, lines, {"error": error[:500]}, actor, now)


def take_back(
    session: Session, payout_id: int, cents: int, why: str, *, actor: str, now: datetime
) -> bool:
    """Money of a paid payout came back (Stripe reversed the transfer, PayPal refunded or
    returned the item): `cents` of it, counted from the first, goes back to what the creator
    is owed awaiting approval, since nobody should pay it again unseen; posted once per
    amount. False when there is nothing new to take back."""
    payout = session.get(Payout, payout_id, with_for_update=True)
    if payout is None or payout.status not in (PayoutStatus.PAID, PayoutStatus.TAKEN_BACK):
        return False
    cents = min(cents, payout.amount_cents)
    before = -sum(
        session.exec(
            select(LedgerEntry.amount_cents).where(
                LedgerEntry.cause == f"payout:{payout.id}",
                LedgerEntry.kind == TAKEN_BACK,
                LedgerEntry.account == PAYABLE,
            )
        ).all()
    )
    if cents <= before:
        return False
    payout.taken_back_cents = cents
    if cents == payout.amount_cents:
        payout.status = PayoutStatus.TAKEN_BACK
    payout.error = f"{cents / 100:,.2f} taken back after it was paid: {why}"[:1000]
    session.add(payout)
    lines = [(PAID, cents - before), (PAYABLE, before - cents)]
    details = {"why": why[:500], "taken_back_cents": cents}
    return _post(session, payout, TAKEN_BACK, lines, details, actor, now, of=f":{cents}")


def _post(
    session: Session,
    payout: Payout,
    kind: str,
    lines: list[tuple[str, int]],
    details: dict[str, Any],
    actor: str,
    now: datetime,
    of: str = "",
    *,
    campaign: Campaign | None = None,
) -> bool:
    """The payout's posting of `kind` (keyed by the payout, and `of` where it has several)."""
    return post(
        session,
        campaign or _campaign(session, payout),
        payout.member_id,
        posting=f"{kind}:payout:{payout.id}{of}",
        kind=kind,
        cause=f"payout:{payout.id}",
        lines=lines,
        details=details,
        actor=actor,
        now=now,
    )


def _campaign(session: Session, payout: Payout) -> Campaign:
    campaign = session.get(Campaign, payout.campaign_id)
    assert campaign is not None
    return campaign


def stripe_for(settings: Settings, client: httpx.Client, engine: Engine | None) -> Stripe:
    """The Stripe adapter, within the key's documented rate limit shared through the store."""
    stripe = settings.section(StripeSettings)
    key = stripe.secret_key.get_secret_value()
    if not key:
        raise NotConfigured("set RALLY_STRIPE_SECRET_KEY to pay creators through Stripe")
    limit = SharedRateLimit(engine, STRIPE, "", *stripe.rate) if engine is not None else None
    return Stripe(client, api_url=stripe.api_url, secret_key=key, limit=limit)


class Transfers(Protocol):
    """What pays a payout: Stripe, PayPal, or a rehearsal's folder; `limit` is the rate limit
    it holds slots of, given back after a run."""

    limit: RateLimit | None

    def transfer(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        key: str,
        group: str,
        metadata: Mapping[str, str],
    ) -> str: ...


class RehearsalPayouts:
    """A rehearsal's payouts: each written to `<folder>/<reference>.json` instead of moving
    money, as a rehearsal's email goes to the mailbox folder; a repeat rewrites the same file.
    Only the accounts a rehearsal gives its simulated creators (provider `rehearsal`) are paid
    this way, so no live payout ever lands in a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.limit: RateLimit | None = None  # a folder has no rate limit

    def transfer(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        key: str,
        group: str,
        metadata: Mapping[str, str],
    ) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        said = {"amount_cents": amount_cents, "currency": currency, "destination": destination}
        said |= {"reference": key, "metadata": dict(metadata)}
        (self.folder / f"{key}.json").write_text(json.dumps(said, indent=2) + "\n")
        return f"rehearsal_{key}"


def payout_destination(campaign_id: int, provider: str) -> str:
    """A payout message's outbox destination: its campaign's and provider's, so that a run
    for one campaign (its staff's, a rehearsal's) sends that campaign's payouts only."""
    return f"{campaign_id}:{provider}"


def pay(
    engine: Engine,
    settings: Settings,
    *,
    now: Callable[[], datetime],
    campaign_id: int | None = None,
    client: httpx.Client | None = None,
    limit: int | None = None,
    wait: wait_base | None = None,
) -> DrainReport:
    """Send the queued payouts (of one campaign, if given) through their providers and settle
    each as the provider answers (see the module); progress is told as `payouts`
    (`tasks.progress`)."""
    report = DrainReport()
    with client_or_own(client, timeout=httpx.Timeout(30.0, connect=5.0)) as http:
        for provider in PROVIDERS:
            for destination, total in _queued(engine, provider, campaign_id).items():
                paying = _provider(provider, settings, http, engine)
                report.add(
                    _drain(engine, settings, destination, provider, paying, total, now, limit, wait)
                )
                if paying.limit is not None:
                    paying.limit.release()
        return report


def _provider(provider: str, settings: Settings, http: httpx.Client, engine: Engine) -> Transfers:
    """The adapter that pays through `provider`."""
    if provider == REHEARSAL:
        return RehearsalPayouts(settings.home / "payouts")
    if provider == PAYPAL:
        return paypal_for(settings, http, engine)
    return stripe_for(settings, http, engine)


def paypal_for(settings: Settings, client: httpx.Client, engine: Engine | None) -> PayPal:
    """The PayPal adapter, within `integrations.paypal.RATE` shared through the store."""
    paypal = settings.section(PayPalSettings)
    secret = paypal.client_secret.get_secret_value()
    if not (paypal.client_id and secret):
        raise NotConfigured(
            "set RALLY_PAYPAL_CLIENT_ID and RALLY_PAYPAL_CLIENT_SECRET to pay creators via PayPal"
        )
    limit = SharedRateLimit(engine, PAYPAL, "", *RATE) if engine is not None else None
    return PayPal(
        client, api_url=paypal.api_url, client_id=paypal.client_id, client_secret=secret,
        limit=limit,
    )  # fmt: skip


def _queued(engine: Engine, provider: str, campaign_id: int | None) -> dict[str, int]:
    """How many payouts wait for `provider`, by destination (of one campaign, if given)."""
    pattern = f"%:{provider}" if campaign_id is None else payout_destination(campaign_id, provider)
    with transaction(engine, write=False) as session:
        counted = session.exec(
            select(OutboxMessage.destination, func.count())
            .where(
                OutboxMessage.channel == CHANNEL,
                col(OutboxMessage.destination).like(pattern),
                OutboxMessage.status == OutboxStatus.PENDING,
            )
            .group_by(col(OutboxMessage.destination))
            .order_by(col(OutboxMessage.destination))
        ).all()
    return dict(counted)


def _drain(
    engine: Engine,
    settings: Settings,
    destination: str,
    provider: str,
    paying: Transfers,
    total: int,
    now: Callable[[], datetime],
    limit: int | None,
    wait: wait_base | None,
) -> DrainReport:
    """One provider's queued payouts, a batch at a time."""

    def tell(report: DrainReport) -> None:
        done = report.sent + report.dead + report.retrying
        progress.report("payouts", min(done, total), total)

    def deliver(row: Claimed) -> str:
        """One payout's transfer, tried again at once on a passing failure (the batch's other
        payouts go on either way)."""
        return retrying(wait)(_transfer, paying, row.payload, row.idempotency_key)

    return drain(
        engine,
        channel=CHANNEL,
        destination=destination,
        sender=repeat_safe(deliver),
        handler=Handler(
            sent=_accepted if provider == PAYPAL else _settled(settings.actor),
            dead=_given_up(settings.actor),
        ),
        batch=25,
        now=now,
        lease=timedelta(seconds=settings.outbox_lease_seconds),
        limit=limit,
        wait=wait,
        progress=tell,
    )


def _transfer(paying: Transfers, payload: dict[str, Any], key: str) -> str:
    """A payout's call to its provider, made the same way each time: a repeat must carry the
    same body for the provider to answer it with the first transfer."""
    return paying.transfer(
        amount_cents=int(payload["amount_cents"]),
        currency=str(payload["currency"]),
        destination=str(payload["account"]),
        key=key,
        group=str(payload["reference"]),
        metadata={"rally_payout": str(payload["payout"]), "campaign": str(payload["campaign"])},
    )


def _settled(actor: str) -> Callable[[Session, list[Claimed], datetime], None]:
    def sent(session: Session, rows: list[Claimed], at: datetime) -> None:
        transfers: dict[int, str] = {}
        for row in rows:  # a payout's first answer, should a batch hold it twice
            transfers.setdefault(int(row.payload["payout"]), str(row.remote_id))
        settle_all(session, transfers, actor=actor, now=at)

    return sent


def _accepted(session: Session, rows: list[Claimed], at: datetime) -> None:
    """PayPal took these payouts: see `_taken`."""
    for row in rows:
        _taken(session, int(row.payload["payout"]), str(row.remote_id))


def _taken(session: Session, payout_id: int, batch: str) -> None:
    """PayPal took the payout as `batch`: it settles when its item does, by PayPal's webhook
    or `reconcile` (one settled by a webhook meanwhile keeps its transfer's id)."""
    payout = session.get(Payout, payout_id)
    if payout is not None and payout.status == PayoutStatus.SENDING:
        payout.remote_id = batch
        payout.error = None
        session.add(payout)


def _given_up(actor: str) -> Callable[[Session, Claimed, str, datetime], None]:
    def dead(session: Session, row: Claimed, error: str, at: datetime) -> None:
        payout_id = int(row.payload["payout"])
        if row.attempts + 1 < MAX_ATTEMPTS:  # a refusal: no transfer was made
            refuse(session, payout_id, error, actor=actor, now=at)
            return
        payout = session.get(Payout, payout_id)
        if payout is not None and payout.status == PayoutStatus.SENDING:
            payout.error = f"no answer after {MAX_ATTEMPTS} tries ({error[:300]}); " + (
                "`rally payments reconcile` asks the provider what became of it"
            )
            session.add(payout)

    return dead


def reconcile(
    engine: Engine, settings: Settings, *, now: datetime, client: httpx.Client | None = None
) -> dict[str, int]:
    """Ask the providers about payouts still in transit: a Stripe payout whose tries ran out
    without an answer (settled if its transfer exists, else returned); a PayPal payout whose
    tries ran out (sent again with the same request and sender batch ids, which PayPal answers
    with the first batch if it made one); and each PayPal payout it took (its item's state, as
    its webhook would have told)."""
    with transaction(engine, write=False) as session:
        unanswered = session.exec(
            select(
                Payout.id, Payout.created_at, OutboxMessage.payload, OutboxMessage.idempotency_key
            )
            .join(OutboxMessage, col(OutboxMessage.idempotency_key) == col(Payout.reference))
            .where(
                Payout.provider == PAYPAL,
                Payout.status == PayoutStatus.SENDING,
                col(Payout.remote_id).is_(None),
                OutboxMessage.status == OutboxStatus.DEAD,
            )
        ).all()
        stuck = session.exec(
            select(Payout)
            .join(OutboxMessage, col(OutboxMessage.idempotency_key) == col(Payout.reference))
            .where(
                Payout.provider == STRIPE,
                Payout.status == PayoutStatus.SENDING,
                OutboxMessage.status == OutboxStatus.DEAD,
            )
        ).all()
        taken = session.exec(
            select(Payout.remote_id).where(
                Payout.provider == PAYPAL,
                Payout.status == PayoutStatus.SENDING,
                col(Payout.remote_id).is_not(None),
            )
        ).all()
    batches = [str(batch) for batch in taken]
    counts = {"settled": 0, "returned": 0, "taken_back": 0}
    with client_or_own(client, timeout=httpx.Timeout(30.0, connect=5.0)) as http:
        if stuck:
            stripe = stripe_for(settings, http, engine)
            for payout in stuck:
                made = [t for t in stripe.transfers_in(payout.reference) if not t.get("reversed")]
                with transaction(engine) as session:
                    if made:
                        transfer = str(made[0]["id"])
                        counts["settled"] += settle(
                            session, payout.id or 0, transfer, actor=settings.actor, now=now
                        )
                    else:
                        counts["returned"] += refuse(
                            session, payout.id or 0, "the provider has no transfer for it",
                            actor=settings.actor, now=now,
                        )  # fmt: skip
        if unanswered or batches:
            paypal = paypal_for(settings, http, engine)
            for payout_id, created_at, payload, key in unanswered:
                if now - created_at > RESEND_WITHIN:
                    with transaction(engine) as session:
                        _too_old(session, payout_id or 0)
                    continue
                try:
                    batch = _transfer(paypal, dict(payload), key)
                except PermanentError as exc:  # refused: no batch was made, then or now
                    with transaction(engine) as session:
                        counts["returned"] += refuse(
                            session, payout_id or 0, str(exc), actor=settings.actor, now=now
                        )
                    continue
                except IntegrationError:  # PayPal not answering now either: next time
                    continue
                with transaction(engine) as session:
                    _taken(session, payout_id or 0, batch)
                batches.append(batch)
            for batch in batches:
                for item in paypal.batch(batch):
                    with transaction(engine) as session:
                        done = on_paypal_item(session, item, actor=settings.actor, now=now)
                    if done:
                        counts[done] += 1
    return counts


# PayPal keeps request ids and sender batch ids for 30 days: within them, a payout sent again
# is answered with its first batch; after, it could be paid a second time, so it is not sent.
RESEND_WITHIN = timedelta(days=28)


def _too_old(session: Session, payout_id: int) -> None:
    """A PayPal payout unanswered past `RESEND_WITHIN`: left in transit for staff, saying why."""
    payout = session.get(Payout, payout_id)
    if payout is not None and payout.status == PayoutStatus.SENDING:
        payout.error = (
            "no answer from PayPal, and too old to send again safely (PayPal forgets its ids "
            "after 30 days): look the payout up in the PayPal account by its reference"
        )
        session.add(payout)


def on_paypal_item(
    session: Session, item: dict[str, Any], *, actor: str, now: datetime
) -> str | None:
    """A PayPal payout item as its webhook or a batch read tells it: `settled` when it was
    paid, `returned` when it will not be (its amount back to approved), None for one still
    on its way, not ours, or settled before."""
    paid_item = item.get("payout_item")
    reference = paid_item.get("sender_item_id") if isinstance(paid_item, dict) else None
    state = str(item.get("transaction_status") or "")
    if not isinstance(reference, str):
        return None
    payout = session.exec(select(Payout).where(Payout.reference == reference)).first()
    if payout is None or payout.provider != PAYPAL:
        return None
    if state == ITEM_PAID:
        transaction_id = str(item.get("transaction_id") or item.get("payout_item_id") or "")
        return (
            "settled"
            if settle(session, payout.id or 0, transaction_id, actor=actor, now=now)
            else None
        )
    if state in ITEM_NOT_PAID:
        errors = item.get("errors") if isinstance(item.get("errors"), dict) else {}
        why = f"PayPal: {state}" + (
            f" ({errors.get('name')}: {errors.get('message')})" if errors else ""
        )
        if payout.status in (PayoutStatus.PAID, PayoutStatus.TAKEN_BACK):  # after SUCCESS
            taken = take_back(session, payout.id or 0, payout.amount_cents, why, actor=actor,
                              now=now)  # fmt: skip
            return "taken_back" if taken else None
        return "returned" if refuse(session, payout.id or 0, why, actor=actor, now=now) else None
    return None


def on_transfer_created(
    session: Session, transfer: dict[str, Any], *, actor: str, now: datetime
) -> bool:
    """Stripe's `transfer.created` for one of our payouts (by metadata and transfer group):
    settle it; False for a transfer that is not ours, or settled before."""
    metadata = transfer.get("metadata") if isinstance(transfer.get("metadata"), dict) else {}
    payout_id = str((metadata or {}).get("rally_payout", ""))
    if not payout_id.isdigit() or not isinstance(transfer.get("id"), str):
        return False
    payout = session.get(Payout, int(payout_id))
    if payout is None or payout.reference != transfer.get("transfer_group"):
        return False
    return settle(session, payout.id or 0, transfer["id"], actor=actor, now=now)


def on_transfer_reversed(
    session: Session, transfer: dict[str, Any], *, actor: str, now: datetime
) -> bool:
    """Stripe's `transfer.reversed` for one of our paid payouts: what it reversed so far goes
    back to awaiting approval (`take_back`); False for a transfer not ours, or told before."""
    metadata = transfer.get("metadata") if isinstance(transfer.get("metadata"), dict) else {}
    payout_id = str((metadata or {}).get("rally_payout", ""))
    reversed_cents = transfer.get("amount_reversed")
    if not payout_id.isdigit() or not isinstance(reversed_cents, int) or reversed_cents <= 0:
        return False
    payout = session.get(Payout, int(payout_id))
    if payout is None or payout.reference != transfer.get("transfer_group"):
        return False
    why = f"Stripe reversed transfer {transfer.get('id')}"
    return take_back(session, payout.id or 0, reversed_cents, why, actor=actor, now=now)


def payouts(
    session: Session, campaign: Campaign, *, before: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The campaign's payouts, newest first, with their creator; with `before` and `limit`, a
    page of those older than payout `before`."""
    query = (
        select(Payout, Creator.handle)
        .join(RosterMember, col(RosterMember.id) == col(Payout.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(Payout.campaign_id == campaign.id)
        .order_by(col(Payout.id).desc())
    )
    if before is not None:
        query = query.where(col(Payout.id) < before)
    rows = session.exec(query.limit(limit)).all()
    return [
        {
            "id": p.id,
            "creator": handle,
            "amount_cents": p.amount_cents,
            "currency": p.currency,
            "provider": p.provider,
            "account": p.account,
            "status": p.status,
            "transfer": p.remote_id,
            "error": p.error,
            "at": p.created_at.isoformat(),
            "settled_at": p.settled_at.isoformat() if p.settled_at else None,
        }
        for p, handle in rows
    ]


def settled_payouts(
    session: Session, since: datetime, until: datetime, campaigns: Collection[int] | None = None
) -> Any:
    """The payouts that settled from `since` up to `until` (not a rehearsal's; of `campaigns`
    if given), oldest first, each with its creator and their W-9 (None without one): what left
    the payer's balance, those whose money later came back (in part or in full:
    `taken_back_cents`) included."""
    query = (
        select(Payout, Creator, TaxForm)
        .join(RosterMember, col(RosterMember.id) == col(Payout.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .outerjoin(TaxForm, col(TaxForm.creator_id) == col(Creator.id))
        .where(
            col(Payout.status).in_([PayoutStatus.PAID, PayoutStatus.TAKEN_BACK]),
            Payout.provider != REHEARSAL,
            col(Payout.settled_at) >= since,
            col(Payout.settled_at) < until,
        )
        .order_by(col(Payout.settled_at), col(Payout.id))
    )
    if campaigns is not None:
        query = query.where(col(Payout.campaign_id).in_(campaigns))
    return session.exec(query).all()


def money_back(
    session: Session, since: datetime, until: datetime, campaigns: Collection[int]
) -> Any:
    """Money that came back from `since` up to `until` after a payout of `campaigns` was paid
    (a reversed transfer, a refunded item; not a rehearsal's), oldest first: each taken-back
    amount's `paid` line, with its payout, creator and their W-9 (None without one)."""
    return session.exec(
        select(LedgerEntry, Payout, Creator, TaxForm)
        .join(Payout, col(LedgerEntry.cause) == "payout:" + cast(col(Payout.id), String))
        .join(RosterMember, col(RosterMember.id) == col(Payout.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .outerjoin(TaxForm, col(TaxForm.creator_id) == col(Creator.id))
        .where(
            LedgerEntry.kind == TAKEN_BACK,
            LedgerEntry.account == PAID,
            Payout.provider != REHEARSAL,
            col(Payout.campaign_id).in_(campaigns),
            col(LedgerEntry.created_at) >= since,
            col(LedgerEntry.created_at) < until,
        )
        .order_by(col(LedgerEntry.created_at), col(LedgerEntry.id))
    ).all()


def rehearse_payouts(
    session: Session, campaign: Campaign, approvers: list[str], *, now: datetime
) -> Started:
    """A rehearsal's money: its simulated staff approve what each creator has waiting (a
    second of them where the amount needs two), each simulated creator has a rehearsal
    account, and their payouts are queued; `pay` writes them to the payouts folder."""
    first = approvers[0]
    second = next((a for a in approvers[1:] if a.lower() != first.lower()), "rehearsal:approver")
    waiting = session.exec(
        select(Creator.handle)
        .select_from(LedgerEntry)
        .join(RosterMember, col(RosterMember.id) == col(LedgerEntry.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(LedgerEntry.campaign_id == campaign.id, LedgerEntry.account == PAYABLE)
        .group_by(col(Creator.handle))
        .having(func.sum(LedgerEntry.amount_cents) < 0)
    ).all()
    for handle in sorted(waiting):
        if not approve(session, campaign, handle, by=first, now=now).posted:
            approve(session, campaign, handle, by=second, now=now)
    accounts = set(
        session.exec(
            select(Creator.handle)
            .join(RosterMember, col(RosterMember.creator_id) == col(Creator.id))
            .join(PayoutAccount, col(PayoutAccount.member_id) == col(RosterMember.id))
            .where(RosterMember.campaign_id == campaign.id)
        ).all()
    )
    for handle in sorted(set(waiting) - accounts):
        account = f"rehearsal:{handle}"
        set_account(session, campaign, handle, account, provider=REHEARSAL, actor=first, now=now)
    return start_payouts(session, campaign, actor=first, now=now, provider=REHEARSAL)

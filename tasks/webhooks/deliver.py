"""Posting queued webhook deliveries, per subscription, in the order they were queued.

One deliverer at a time holds a subscription (a lease on its row, so drains on several machines
share the work without two posting to one receiver at once). It claims the subscription's oldest
deliveries and posts them one by one; the first failure stops the subscription's queue there,
so nothing overtakes it: the failed delivery keeps its place and the subscription waits a
growing delay (`BACKOFF`, or longer if the receiver asked with Retry-After). A receiver down for
hours gets everything once it is back, in order. A delivery it refuses (a 4xx) `REFUSALS` times
is given up on (dead, to replay), and the queue moves on at once. A receiver failing without a
success for `webhook_disable_after_hours`, or answering 410 Gone, has its subscription disabled,
and the campaign's staff are emailed; what waits stays queued for when it is enabled again.

A crash between a post and its record repeats that delivery, with the same `webhook-id`.
"""

import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, String, cast, exists, literal, or_, update
from sqlmodel import Session, col, select

from config.settings import Settings
from integrations.errors import IntegrationError, PermanentError
from integrations.webhooks import GoneError, WebhookPoster
from store.audit import Change, record
from store.crypto import Sealer
from store.db import transaction
from store.models import Campaign, OutboxMessage, OutboxStatus, WebhookSubscription
from store.types import utcnow
from tasks.drain import DrainReport, Handler, record_outcomes
from tasks.outbox import Claimed, claim, enqueue, release, still_held
from tasks.webhooks.events import API_PREFIX, CHANNEL, DESTINATION_PREFIX, destination_of

BACKOFF = (5, 30, 120, 600, 1800, 3600)  # seconds before the 1st, 2nd ... retry; then hourly
REFUSALS = 5  # a delivery refused (4xx) this many times is given up on


def deliver_webhooks(
    engine: Engine,
    settings: Settings,
    *,
    now: Callable[[], datetime],
    poster: WebhookPoster | None = None,
    batch: int = 100,
) -> DrainReport:
    """Post what waits for every subscription that is enabled and not waiting out a failure."""
    report = DrainReport()
    with transaction(engine, write=False) as session:
        due = session.exec(select(col(WebhookSubscription.id)).where(*waiting(now()))).all()
    if not due:
        return report
    own = poster is None
    poster = poster or WebhookPoster()
    sealer = Sealer(settings.secret_key.get_secret_value())
    lease = timedelta(seconds=settings.outbox_lease_seconds)
    try:
        for subscription_id in due:
            report.add(
                deliver_subscription(
                    engine,
                    subscription_id or 0,
                    poster=poster,
                    sealer=sealer,
                    public_url=settings.public_url,
                    disable_after=timedelta(hours=settings.webhook_disable_after_hours),
                    now=now,
                    lease=lease,
                    batch=batch,
                )
            )
    finally:
        if own:
            poster.close()
    return report


def webhooks_due(engine: Engine, now: datetime) -> bool:
    """Whether any subscription has deliveries to post now (one query; `tasks.due`)."""
    with transaction(engine, write=False) as session:
        found = select(col(WebhookSubscription.id)).where(*waiting(now)).limit(1)
        return session.execute(found).first() is not None


def enabled_and_due(at: datetime) -> list[Any]:
    """The conditions on a subscription that may be posted to at `at`: enabled, and not
    waiting out a failure."""
    table = WebhookSubscription
    return [
        col(table.disabled_at).is_(None),
        or_(col(table.retry_at).is_(None), col(table.retry_at) <= at),
    ]


def waiting(at: datetime) -> list[Any]:
    """`enabled_and_due`, with deliveries waiting in the outbox."""
    queued = select(col(OutboxMessage.id)).where(
        col(OutboxMessage.channel) == CHANNEL,
        col(OutboxMessage.status) == OutboxStatus.PENDING,
        col(OutboxMessage.destination)
        == literal(DESTINATION_PREFIX) + cast(col(WebhookSubscription.id), String),
    )
    return [*enabled_and_due(at), exists(queued)]


def deliver_subscription(
    engine: Engine,
    subscription_id: int,
    *,
    poster: WebhookPoster,
    sealer: Sealer,
    public_url: str,
    disable_after: timedelta,
    now: Callable[[], datetime],
    lease: timedelta,
    batch: int = 100,
) -> DrainReport:
    """Post one subscription's waiting deliveries, oldest first, until none are left or one
    fails; nothing if another deliverer holds the subscription."""
    lease_id = uuid.uuid4().hex
    held = _take(engine, subscription_id, lease_id, now(), lease)
    if held is None:
        return DrainReport()
    report = DrainReport()
    secret = sealer.open(held.secret_sealed, f"webhook subscription {subscription_id}'s secret")
    destination = destination_of(subscription_id)
    try:
        while True:
            rows = claim(engine, channel=CHANNEL, destination=destination, limit=batch, now=now())
            if not rows:
                break
            # A batch ends a third of a lease in, so the leases taken for it cannot run out.
            ends = time.monotonic() + lease.total_seconds() / 3
            posted: list[Claimed] = []
            failure: IntegrationError | None = None
            for row in rows:
                try:
                    payload = _linked(row, public_url)
                    # signed with the real time, even in a rehearsal on its simulated clock:
                    # receivers refuse a timestamp far from theirs
                    poster.post(held.url, secret, payload["id"], payload, at=utcnow())
                except IntegrationError as exc:
                    failure = exc
                    break
                posted.append(row)
                if time.monotonic() > ends:
                    break
            tried = len(posted) + (failure is not None)
            release(engine, rows[tried:])
            if posted:
                report.add(
                    record_outcomes(
                        engine,
                        posted,
                        {row.id: None for row in posted},
                        at=now(),
                        handler=Handler(sent=_healthy(subscription_id), take_turns=False),
                    )
                )
            if failure is not None:
                failed = _failed(engine, held, rows[len(posted)], failure, now(), disable_after)
                report.add(failed)
                if not failed.dead:  # one given up on is out of the way: go on with the next
                    break
            if not _renew(engine, subscription_id, lease_id, now() + lease):
                break
    finally:
        _give_back(engine, subscription_id, lease_id)
    return report


def _linked(row: Claimed, public_url: str) -> dict[str, Any]:
    """The payload with its API links made absolute (the address Rally is reached at now)."""
    data = dict(row.payload.get("data", {}))
    links = data.get("links")
    if isinstance(links, dict):
        data["links"] = {
            name: public_url + path if str(path).startswith(API_PREFIX) else path
            for name, path in links.items()
        }
    return row.payload | {"data": data}


def _take(
    engine: Engine, subscription_id: int, lease_id: str, at: datetime, lease: timedelta
) -> WebhookSubscription | None:
    """Hold the subscription for this deliverer, if it is enabled, due and held by no other."""
    table = WebhookSubscription
    with transaction(engine, take_turns=False) as session:
        taken = session.execute(
            update(table)
            .where(
                col(table.id) == subscription_id,
                *enabled_and_due(at),
                or_(col(table.locked_until).is_(None), col(table.locked_until) < at),
            )
            .values(locked_until=at + lease, lease_id=lease_id)
        ).rowcount  # type: ignore[attr-defined]
        return session.get(table, subscription_id) if taken else None


def _renew(engine: Engine, subscription_id: int, lease_id: str, until: datetime) -> bool:
    table = WebhookSubscription
    with transaction(engine, take_turns=False) as session:
        return bool(
            session.execute(
                update(table)
                .where(col(table.id) == subscription_id, col(table.lease_id) == lease_id)
                .values(locked_until=until)
            ).rowcount  # type: ignore[attr-defined]
        )


def _give_back(engine: Engine, subscription_id: int, lease_id: str) -> None:
    table = WebhookSubscription
    with transaction(engine, take_turns=False) as session:
        session.execute(
            update(table)
            .where(col(table.id) == subscription_id, col(table.lease_id) == lease_id)
            .values(locked_until=None, lease_id=None)
        )


def _healthy(subscription_id: int) -> Callable[[Session, list[Claimed], datetime], None]:
    """What deliveries accepted mean: the receiver works, its failures are behind it."""

    def sent(session: Session, rows: list[Claimed], at: datetime) -> None:
        session.execute(
            update(WebhookSubscription)
            .where(col(WebhookSubscription.id) == subscription_id)
            .values(
                failures=0, failing_since=None, retry_at=None, last_error=None, last_success_at=at
            )
        )

    return sent


def _failed(
    engine: Engine,
    held: WebhookSubscription,
    row: Claimed,
    error: IntegrationError,
    at: datetime,
    disable_after: timedelta,
) -> DrainReport:
    """Record a failed delivery: it keeps its place (or is given up on, refused `REFUSALS`
    times), and the subscription waits before its next try, or is disabled."""
    said = str(error)[:1000]
    gone = isinstance(error, GoneError)
    # A delivery's attempts count the receiver's refusals of it; an outage is the
    # subscription's, counted in its failures.
    refused = isinstance(error, PermanentError) and not gone
    dead = refused and row.attempts + 1 >= REFUSALS
    with transaction(engine) as session:
        if still_held(session, [row]):
            session.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.id) == row.id)
                .values(
                    attempts=row.attempts + int(refused),
                    last_error=said,
                    locked_until=None,
                    lease_id=None,
                    **({"status": OutboxStatus.DEAD} if dead else {}),
                )
            )
        subscription = session.get(WebhookSubscription, held.id)
        if subscription is None:
            return DrainReport()
        subscription.failures += 1
        subscription.failing_since = subscription.failing_since or at
        subscription.last_error = said
        asked = getattr(error, "retry_after", None) or 0
        wait = max(backoff(subscription.failures), timedelta(seconds=asked))
        subscription.retry_at = None if dead else at + wait
        if gone:
            disable(session, subscription, at, "the receiver answered 410 Gone")
        elif at - subscription.failing_since >= disable_after:
            hours = (at - subscription.failing_since).total_seconds() / 3600
            disable(session, subscription, at, f"no delivery has succeeded for {hours:.0f} hours")
        session.add(subscription)
    return DrainReport(
        retrying=int(not dead), dead=int(dead), errors=[f"webhook {held.id}: {said}"]
    )


def backoff(failures: int) -> timedelta:
    """How long a subscription waits after its `failures`-th failure in a row, with jitter so
    that many receivers back from an outage are not tried at one instant."""
    seconds = BACKOFF[min(failures, len(BACKOFF)) - 1]
    return timedelta(seconds=seconds * random.uniform(0.9, 1.1))


def disable(session: Session, subscription: WebhookSubscription, at: datetime, why: str) -> None:
    """Disable a failing subscription, audited, and email the campaign's staff why and how to
    start it again."""
    from tasks.campaigns.campaign import campaign_spec

    subscription.disabled_at, subscription.disabled_reason = at, why
    campaign = session.get(Campaign, subscription.campaign_id)
    record(
        session,
        [Change("rally", "webhook.disabled", "webhook_subscription", subscription.id or 0, why)],
    )
    if campaign is None:
        return
    key = f"webhook-disabled:{subscription.id}:{at.isoformat()}"
    subject = f"Rally: webhook to {subscription.url} disabled"
    text = (
        f"Rally stopped posting {campaign.name}'s events to {subscription.url} "
        f"(subscription {subscription.id}): {why}.\n"
        f"The last error: {subscription.last_error}\n\n"
        "What it missed is kept. Once the receiver works, start it again with\n"
        f"  rally webhooks enable {subscription.id}\n"
        "and anything given up on earlier with\n"
        f"  rally webhooks replay {subscription.id}\n"
    )
    enqueue(
        session,
        [
            {
                "channel": "email",
                "destination": "staff",
                "idempotency_key": f"{key}:{address}",
                "subject_type": "webhook",
                "subject_id": str(subscription.id),
                "payload": {"to": address, "subject": subject, "text": text, "html": ""},
            }
            for address in sorted(campaign_spec(campaign).staff)
        ],
    )

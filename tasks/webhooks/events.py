"""What a campaign's webhook subscriptions hear: each event a service emits, in the transaction
of the change behind it, becomes one outbox message per subscription that takes its type
(`tasks.webhooks.deliver` posts them). With no subscription, emitting costs one small query.

A payload carries ids, the campaign's slug and a link into the API, and no more personal data
than a token with the event type's scope would read there: a lead's email and name for the
`leads:read` events, a creator's public handle for the rest.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlmodel import Session

from store.models import Campaign, WebhookSubscription
from tasks.outbox import enqueue

CHANNEL = "webhook"
DESTINATION_PREFIX = "webhook:"  # and the subscription's id: `destination_of`
API_PREFIX = "/api/v1"

# Each event type: the scope a token needs to read what it tells, and what it means.
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "brief.acknowledged": ("briefs:read", "a creator acknowledged their brief"),
    "creative.submitted": ("creatives:read", "a creator submitted a draft for review"),
    "creative.approved": ("creatives:read", "a creative passed every review tier"),
    "creative.rejected": ("creatives:read", "a reviewer rejected a creative"),
    "creative.posted": ("creatives:read", "an approved creative was posted"),
    "lead.created": ("leads:read", "a new lead signed up or was imported"),
    "lead.synced": ("leads:read", "a lead reached a CRM or volunteer system"),
    "consent.changed": ("leads:read", "a contact gave or withdrew consent"),
    "followup.sent": ("followups:read", "a follow-up (DM, email, text, tag) went out"),
    "sprint.week_closed": ("campaign:read", "a sprint week was closed"),
    "milestone.missed": ("campaign:read", "a sprint milestone passed without being met"),
    "payment.earned": ("payments:read", "a creator earned part of their fee, or a bonus"),
    "payment.reversed": ("payments:read", "a posting of the payments ledger was reversed"),
    "payment.approved": ("payments:read", "staff approved what a creator is owed for payment"),
    "payment.paid": ("payments:read", "a payout reached the creator's account"),
    "payment.failed": ("payments:read", "the payout provider refused a payout"),
    "webhook.test": ("webhooks:read", "a test delivery asked for by staff"),
}


@dataclass(frozen=True)
class Event:
    """One thing that happened. `key` names this occurrence (a retried change emits it once);
    `subject` ("creative:12") is what deliveries keep in order for; `collection` is the API
    path under the campaign that lists it (`creatives`)."""

    type: str
    key: str
    subject: str
    collection: str
    data: dict[str, Any] = field(default_factory=dict)


MAX_KEY = 150


def occurrence(*parts: object) -> str:
    """An event's `key` from the parts that name its occurrence (`occurrence("creative", 12,
    "approved")` -> `creative:12:approved`); one too long keeps its start and a hash of all."""
    key = ":".join(str(part) for part in parts)
    if len(key) <= MAX_KEY:
        return key
    return key[: MAX_KEY - 17] + ":" + hashlib.sha256(key.encode()).hexdigest()[:16]


def iso(at: datetime | None) -> str | None:
    """A time as events carry it: UTC, ISO 8601, with a Z."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at else None


def emit(session: Session, campaign_id: int, events: Sequence[Event], *, at: datetime) -> int:
    """Queue `events` for each enabled subscription of the campaign that takes their type, in
    the caller's transaction; return how many deliveries were queued."""
    if not events:
        return 0
    messages = [
        delivery(subscription_id, slug, event, at)
        for subscription_id, types, slug in _subscribed(session, campaign_id)
        for event in events
        if event.type in types
    ]
    return enqueue(session, messages)


def listening(session: Session, campaign_id: int, event_type: str) -> bool:
    """Whether any enabled subscription of the campaign takes `event_type`: events made by the
    thousand (`lead.synced`) need not be built for nobody."""
    return any(event_type in types for _, types, _ in _subscribed(session, campaign_id))


def _subscribed(session: Session, campaign_id: int) -> Sequence[Any]:
    """The campaign's enabled subscriptions (id, event types, campaign slug), read once a
    transaction: a payout run emits for every creator."""
    known = session.info.setdefault(SUBSCRIPTIONS, {})
    subscriptions = known.get(campaign_id)
    if subscriptions is None:
        subscriptions = known[campaign_id] = session.execute(
            _subscriptions(), {"b_campaign": campaign_id}
        ).all()
    return subscriptions


SUBSCRIPTIONS = "webhooks.subscriptions"  # `Session.info` key: each campaign's, as read


def subscriptions_changed(session: Session) -> None:
    """Forget the subscriptions this transaction read: one was added or changed in it."""
    session.info.pop(SUBSCRIPTIONS, None)


@cache
def _subscriptions() -> Any:
    """A campaign's enabled subscriptions, with its slug (built once: every change that emits
    runs it, and building it costs more than running it)."""
    subscriptions = WebhookSubscription.__table__.c  # type: ignore[attr-defined]
    campaigns = Campaign.__table__.c  # type: ignore[attr-defined]
    return (
        select(subscriptions.id, subscriptions.event_types, campaigns.slug)
        .join_from(
            WebhookSubscription.__table__,  # type: ignore[attr-defined]
            Campaign.__table__,  # type: ignore[attr-defined]
            campaigns.id == subscriptions.campaign_id,
        )
        .where(
            subscriptions.campaign_id == bindparam("b_campaign"),
            subscriptions.disabled_at.is_(None),
        )
    )


def delivery(subscription_id: int, slug: str, event: Event, at: datetime) -> dict[str, Any]:
    """The outbox message that takes `event` to one subscription. Its `webhook-id` is made from
    the subscription and the occurrence, so every try and every replay carries the same one."""
    key = f"webhook:{subscription_id}:{event.key}"
    subject_type, _, subject_id = event.subject.partition(":")
    links = {"collection": f"{API_PREFIX}/campaigns/{slug}/{event.collection}".rstrip("/")}
    return {
        "channel": CHANNEL,
        "destination": destination_of(subscription_id),
        "idempotency_key": key,
        "subject_type": subject_type[:32],
        "subject_id": subject_id[:64],
        "available_at": at,
        "payload": {
            "id": message_id(key),
            "type": event.type,
            "timestamp": iso(at),
            "data": {"campaign": slug, **event.data, "links": links},
        },
    }


def destination_of(subscription_id: int | None) -> str:
    """The outbox destination of a subscription's deliveries."""
    return f"{DESTINATION_PREFIX}{subscription_id}"


def message_id(key: str) -> str:
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]

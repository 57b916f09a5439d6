"""Webhook subscriptions, made by staff (`rally webhooks add`) or a token with `webhooks:write`:
a campaign's URL to post events to, the event types it takes and its signing secret, shown once
and kept sealed with `RALLY_SECRET_KEY` (Rally must sign with it, so a hash would not do).
Every change is audited; a subscription removed keeps its row, disabled, for the log's sake.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.audit import Change, record
from store.crypto import Sealer
from store.models import Campaign, OutboxMessage, OutboxStatus, WebhookSubscription
from tasks.outbox import enqueue
from tasks.webhooks.events import (
    CHANNEL,
    EVENT_TYPES,
    Event,
    delivery,
    destination_of,
    iso,
    subscriptions_changed,
)

REMOVED = "removed by staff"
MAX_PER_CAMPAIGN = 20


@dataclass(frozen=True)
class Made:
    """A new subscription and its secret, which is shown this once."""

    subscription: WebhookSubscription
    secret: str


def check_event_types(types: Sequence[str], scopes: frozenset[str] | None = None) -> list[str]:
    """The event types asked for, known and (for a token, `scopes`) each readable by it;
    none asked for means every type the scopes allow."""
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise RallyError(
            f"unknown event type {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    wanted = list(dict.fromkeys(types)) or [t for t in EVENT_TYPES if t != "webhook.test"]
    if scopes is not None:
        if not types:
            wanted = [t for t in wanted if _readable(EVENT_TYPES[t][0], scopes)]
        refused = [t for t in wanted if not _readable(EVENT_TYPES[t][0], scopes)]
        if refused:
            needed = sorted({EVENT_TYPES[t][0] for t in refused})
            raise RallyError(f"event type {', '.join(refused)} needs scope {', '.join(needed)}")
    if not wanted:
        raise RallyError("subscribe to at least one event type its maker's scopes can read")
    return wanted


def _readable(scope: str, scopes: frozenset[str]) -> bool:
    resource = scope.partition(":")[0]
    return scope in scopes or f"{resource}:write" in scopes


def add_subscription(
    session: Session,
    campaign: Campaign,
    *,
    url: str,
    event_types: Sequence[str],
    description: str,
    sealer: Sealer,
    actor: str,
    now: datetime,
) -> Made:
    """A new subscription with a new secret; audited (the secret is not)."""
    from integrations.webhooks import check_url, new_secret

    active = session.exec(
        select(func.count())
        .select_from(WebhookSubscription)
        .where(
            col(WebhookSubscription.campaign_id) == campaign.id,
            col(WebhookSubscription.disabled_at).is_(None),
        )
    ).one()
    if active >= MAX_PER_CAMPAIGN:
        raise RallyError(
            f"campaign {campaign.slug} already has {active} webhook subscriptions, the most "
            "it may have: remove one first"
        )
    secret = new_secret()
    subscription = WebhookSubscription(
        campaign_id=campaign.id or 0,
        url=check_url(url),
        event_types=list(event_types),
        secret_sealed=sealer.seal(secret),
        description=description.strip()[:200],
        created_by=actor,
        created_at=now,
    )
    session.add(subscription)
    session.flush()
    subscriptions_changed(session)
    record(
        session,
        [
            Change(
                actor,
                "webhook.subscribed",
                "webhook_subscription",
                subscription.id or 0,
                f"{campaign.slug}: {subscription.url} for {', '.join(event_types)}",
            )
        ],
    )
    return Made(subscription, secret)


def subscriptions_of(
    session: Session, campaign_id: int | None = None
) -> list[tuple[WebhookSubscription, str, dict[str, int]]]:
    """Each subscription (of one campaign, or all), its campaign's slug and its deliveries by
    status (`pending`, `dead`, `sent`); removed ones are left out."""
    query = select(WebhookSubscription, Campaign.slug).join(
        Campaign, col(Campaign.id) == col(WebhookSubscription.campaign_id)
    )
    if campaign_id is not None:
        query = query.where(col(WebhookSubscription.campaign_id) == campaign_id)
    query = query.where(
        (col(WebhookSubscription.disabled_reason).is_(None))
        | (col(WebhookSubscription.disabled_reason) != REMOVED)
    )
    rows = session.exec(query.order_by(col(WebhookSubscription.id))).all()
    counts: dict[str, dict[str, int]] = {}
    for destination, status, count in session.exec(
        select(OutboxMessage.destination, OutboxMessage.status, func.count())
        .where(
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.destination).in_([destination_of(s.id) for s, _ in rows]),
        )
        .group_by(col(OutboxMessage.destination), col(OutboxMessage.status))
    ):
        counts.setdefault(destination, {})[status] = count
    return [(s, slug, counts.get(destination_of(s.id), {})) for s, slug in rows]


def subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    found = session.get(WebhookSubscription, subscription_id)
    if found is None or found.disabled_reason == REMOVED:
        raise RallyError(f"no webhook subscription {subscription_id}")
    return found


def remove_subscription(
    session: Session, subscription_id: int, *, actor: str, now: datetime
) -> WebhookSubscription:
    """Stop a subscription for good: nothing more is queued for it, and what waits is
    withdrawn."""
    found = subscription(session, subscription_id)
    found.disabled_at, found.disabled_reason = now, REMOVED
    session.add(found)
    session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.destination) == destination_of(subscription_id),
            col(OutboxMessage.status) == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.CANCELLED, last_error=REMOVED)
    )
    record(
        session,
        [Change(actor, "webhook.removed", "webhook_subscription", subscription_id, found.url)],
    )
    return found


def enable_subscription(
    session: Session, subscription_id: int, *, actor: str, now: datetime
) -> WebhookSubscription:
    """Start a disabled subscription again: what waited for it goes out, oldest first."""
    found = subscription(session, subscription_id)
    was = found.disabled_reason or "enabled"
    found.disabled_at = found.disabled_reason = found.failing_since = found.retry_at = None
    found.failures = 0
    session.add(found)
    subscriptions_changed(session)
    record(
        session,
        [
            Change(
                actor,
                "webhook.enabled",
                "webhook_subscription",
                subscription_id,
                f"{found.url} enabled (was: {was})",
            )
        ],
    )
    return found


def replay(
    session: Session,
    subscription_id: int,
    *,
    since: datetime | None,
    actor: str,
    now: datetime,
) -> dict[str, int]:
    """Queue again what a subscription gave up on (its dead letters) and, with `since`, every
    delivery made since then: each with its first `webhook-id`, so a receiver that had it
    already can tell."""
    found = subscription(session, subscription_id)
    destination = destination_of(subscription_id)
    dead = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.destination) == destination,
            col(OutboxMessage.status) == OutboxStatus.DEAD,
        )
        .values(status=OutboxStatus.PENDING, attempts=0, available_at=now, last_error=None)
    ).rowcount  # type: ignore[attr-defined]
    again = 0
    if since is not None:
        sent = session.exec(
            select(OutboxMessage)
            .where(
                col(OutboxMessage.destination) == destination,
                col(OutboxMessage.status) == OutboxStatus.SENT,
                col(OutboxMessage.sent_at) >= since,
            )
            .order_by(col(OutboxMessage.available_at), col(OutboxMessage.id))
        ).all()
        stamp = now.strftime("%Y%m%dT%H%M%S.%f")
        again = enqueue(
            session,
            [
                {
                    "channel": CHANNEL,
                    "destination": destination,
                    "idempotency_key": f"{m.idempotency_key}:replay:{stamp}"[:200],
                    "subject_type": m.subject_type,
                    "subject_id": m.subject_id,
                    "payload": m.payload,
                    "available_at": now,
                }
                for m in sent
            ],
        )
    record(
        session,
        [
            Change(
                actor,
                "webhook.replayed",
                "webhook_subscription",
                subscription_id,
                f"{found.url}: {dead} given up on and {again} delivered queued again",
            )
        ],
    )
    return {"dead": dead, "delivered": again}


def send_test(
    session: Session, subscription_id: int, *, actor: str, now: datetime
) -> dict[str, Any]:
    """Queue a `webhook.test` delivery to one subscription (whatever types it takes), to check
    a receiver's set-up; return its payload."""
    found = subscription(session, subscription_id)
    campaign = session.get(Campaign, found.campaign_id)
    event = Event(
        "webhook.test",
        key=f"test:{now.isoformat()}",
        subject=f"webhook_subscription:{subscription_id}",
        collection="",
        data={"subscription": subscription_id, "asked_by": actor},
    )
    message = delivery(subscription_id, campaign.slug if campaign else "", event, now)
    enqueue(session, [message])
    return dict(message["payload"])


def update_subscription(
    session: Session,
    subscription_id: int,
    *,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    actor: str,
    now: datetime,
) -> WebhookSubscription:
    """Change what a subscription posts and where, or turn it off and on again; audited."""
    from integrations.webhooks import check_url

    found = subscription(session, subscription_id)
    changes: dict[str, Any] = {}
    if url is not None and url != found.url:
        changes["url"] = [found.url, check_url(url)]
        found.url = changes["url"][1]
    if event_types is not None and list(event_types) != found.event_types:
        changes["event_types"] = [found.event_types, list(event_types)]
        found.event_types = list(event_types)
    if description is not None and description.strip() != found.description:
        changes["description"] = [found.description, description.strip()[:200]]
        found.description = changes["description"][1]
    if enabled is not None and enabled != (found.disabled_at is None):
        changes["enabled"] = [not enabled, enabled]
        if enabled:
            found.disabled_at = found.disabled_reason = found.failing_since = None
            found.retry_at, found.failures = None, 0
        else:
            found.disabled_at, found.disabled_reason = now, f"turned off by {actor}"
    subscriptions_changed(session)
    if changes:
        session.add(found)
        record(
            session,
            [
                Change(
                    actor,
                    "webhook.changed",
                    "webhook_subscription",
                    subscription_id,
                    f"{found.url}: {', '.join(changes)} changed",
                    changes,
                )
            ],
        )
    return found


def shown(found: WebhookSubscription, slug: str, counts: dict[str, int]) -> dict[str, Any]:
    """A subscription as the CLI's `--json` and the API show it (never its secret)."""
    return {
        "id": found.id,
        "campaign": slug,
        "url": found.url,
        "event_types": found.event_types,
        "description": found.description,
        "enabled": found.disabled_at is None,
        "disabled_reason": found.disabled_reason,
        "failing_since": iso(found.failing_since),
        "next_try_at": iso(found.retry_at) if found.failing_since else None,
        "last_error": found.last_error,
        "last_success_at": iso(found.last_success_at),
        "waiting": counts.get("pending", 0),
        "given_up": counts.get("dead", 0),
        "delivered": counts.get("sent", 0),
        "created_at": iso(found.created_at),
    }

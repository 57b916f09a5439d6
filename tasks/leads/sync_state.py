"""Where each destination's sync of leads stands, read from the outbox's plain rows
(`store.tables`): `rally leads status` then builds none of the outbox's, the contacts' or the
campaign's model classes."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, literal_column
from sqlalchemy import select as sa_select
from sqlmodel import Session

from store.tables import campaigns, outbox

CHANNEL = "lead"
SUBJECT = "contact"  # what every lead message is about: subject_id is the contact's id
PENDING, SENT, DEAD = "pending", "sent", "dead"  # OutboxStatus's, without its model class


def destination_key(campaign_id: int, name: str) -> str:
    """The outbox's name for one campaign's destination."""
    return f"{campaign_id}:{name}"


def destination_name(key: str) -> str:
    """The destination's own name, from the outbox's (`destination_key`)."""
    return key.partition(":")[2]


def held_there(
    session: Session, prefix: str = "", contact_ids: Sequence[int] | None = None
) -> list[tuple[int, str, dict[str, str]]]:
    """Each person's subscription status per channel as each destination last answered with
    it (`(contact id, destination key, {"email": "unsubscribed"})`), for the destinations whose
    key starts with `prefix` and, if given, these people only."""
    o = outbox.c
    latest = sa_select(func.max(o.id)).where(
        o.channel == CHANNEL,
        o.status == SENT,
        o.remote_state.is_not(None),
        o.destination.startswith(prefix),
    )
    if contact_ids is not None:
        latest = latest.where(
            o.subject_type == SUBJECT,
            o.subject_id.in_([str(i) for i in contact_ids]),
        )
    latest = latest.group_by(o.subject_id, o.destination)
    rows = session.execute(
        sa_select(o.subject_id, o.destination, o.remote_state).where(o.id.in_(latest))
    )
    return [(int(subject), destination, dict(state)) for subject, destination, state in rows]


def sync_status(session: Session) -> list[dict[str, Any]]:
    """Per campaign destination: messages waiting, retrying after a failure, sent, dead; and,
    where the destination answers with them, how many people it holds as subscribed,
    unsubscribed ... per channel."""
    o = outbox.c
    found = session.execute(sa_select(campaigns.c.id, campaigns.c.slug))
    slugs: dict[int, str] = {cid: slug for cid, slug in found}
    rows = session.execute(
        sa_select(o.destination, o.status, o.attempts > literal_column("0"), func.count())
        .where(o.channel == CHANNEL)
        .group_by(o.destination, o.status, o.attempts > literal_column("0"))
    )
    table: dict[str, dict[str, Any]] = {}
    for destination, status, tried, count in rows:
        campaign_id, _, name = destination.partition(":")  # destination_key's parts
        entry = table.setdefault(
            destination,
            {
                "campaign": slugs.get(int(campaign_id), campaign_id),
                "destination": name,
                "pending": 0,
                "failed": 0,
                "sent": 0,
                "dead": 0,
                "cancelled": 0,
                "subscriptions": {},
            },
        )
        kind = "failed" if status == PENDING and tried else str(status)
        entry[kind] = entry.get(kind, 0) + count
    for _, destination, state in held_there(session):
        counts = table[destination]["subscriptions"]
        for channel, held in state.items():
            counts.setdefault(channel, {})
            counts[channel][held] = counts[channel].get(held, 0) + 1
    return sorted(table.values(), key=lambda e: (e["campaign"], e["destination"]))


def dead_letters(
    session: Session, *, destination: str | None = None, campaign_id: int | None = None
) -> list[Row[Any]]:
    """Lead messages given up on: to a destination of that name, of one campaign, if given."""
    o = outbox.c
    query = sa_select(outbox).where(o.channel == CHANNEL, o.status == DEAD)
    if destination:
        query = query.where(o.destination.endswith(f":{destination}"))
    if campaign_id is not None:
        query = query.where(o.destination.startswith(f"{campaign_id}:"))
    return list(session.execute(query.order_by(o.id)))

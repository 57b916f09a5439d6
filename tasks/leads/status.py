"""A campaign's leads as staff read them: who they are, where each destination's sync stands
(and, where a destination says, whether it holds them as subscribed), the messages given up on,
and putting those back in the queue.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, literal_column, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from store.db import transaction
from store.models import (
    Campaign,
    Contact,
    EngagementEvent,
    FollowUp,
    OutboxMessage,
    OutboxStatus,
    RosterMember,
)
from tasks.leads.records import SUBJECT, load_people, syncable
from tasks.leads.sync_state import CHANNEL, dead_letters, destination_name, held_there


def campaign_contacts(
    session: Session, campaign_id: int, *, after: int | None = None, limit: int | None = None
) -> list[int]:
    """The people who reached this campaign: through its events or as its creators' source;
    by id, and with `after` and `limit` a page of them."""
    # Correlated EXISTS, not IN: a page of 50 then checks its 50-odd people through the
    # indexes instead of first collecting every contact id the campaign's events name.
    through_events = (
        sa_select(literal_column("1"))
        .where(
            col(EngagementEvent.contact_id) == col(Contact.id),
            col(EngagementEvent.campaign_id) == campaign_id,
        )
        .exists()
    )
    members = sa_select(col(RosterMember.id)).where(col(RosterMember.campaign_id) == campaign_id)
    query = sa_select(col(Contact.id)).where(
        syncable(),
        or_(
            through_events,
            col(Contact.first_member_id).in_(members),
            col(Contact.last_member_id).in_(members),
        ),
    )
    if after is not None:
        query = query.where(col(Contact.id) > after)
    return [i for (i,) in session.execute(query.order_by(col(Contact.id)).limit(limit))]


def list_leads(
    session: Session, campaign: Campaign, *, after: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Each lead with their consent, source and where each destination stands, by id; with
    `after` and `limit`, one page of them, read for that page alone."""
    assert campaign.id is not None
    ids = campaign_contacts(session, campaign.id, after=after, limit=limit)
    people = load_people(session, ids)
    rules: dict[int, list[str]] = {}
    # By person, and the campaign picked here: with the campaign in the query, SQLite reads
    # every follow-up of the campaign through its unique index to find this page's.
    for contact_id, rule_id, campaign_id in session.execute(
        sa_select(col(FollowUp.contact_id), col(FollowUp.rule_id), col(FollowUp.campaign_id))
        .where(col(FollowUp.contact_id).in_(ids))
        .distinct()
    ):
        if campaign_id == campaign.id:
            rules.setdefault(contact_id, []).append(rule_id)
    prefix = f"{campaign.id}:"
    sync: dict[int, dict[str, str]] = {}
    latest = (
        sa_select(
            col(OutboxMessage.subject_id),
            col(OutboxMessage.destination),
            func.max(col(OutboxMessage.id)),
        )
        .where(
            col(OutboxMessage.subject_type) == SUBJECT,  # the (type, id) index finds the page's
            col(OutboxMessage.subject_id).in_([str(i) for i in ids]),
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.destination).startswith(prefix),
        )
        .group_by(col(OutboxMessage.subject_id), col(OutboxMessage.destination))
    )
    last_ids = [row[2] for row in session.execute(latest)]
    for subject, destination, status in session.execute(
        sa_select(
            col(OutboxMessage.subject_id),
            col(OutboxMessage.destination),
            col(OutboxMessage.status),
        ).where(col(OutboxMessage.id).in_(last_ids))
    ):
        sync.setdefault(int(subject), {})[destination_name(destination)] = status
    there: dict[int, dict[str, dict[str, str]]] = {}
    for subject, destination, state in held_there(session, prefix, ids):
        there.setdefault(subject, {})[destination_name(destination)] = state
    leads = []
    for contact_id in ids:
        person = people[contact_id]
        c = person.contact
        leads.append(
            {
                "id": contact_id,
                "email": c.email,
                "phone": c.phone,
                "name": " ".join(filter(None, (c.given_name, c.family_name))) or None,
                "postal_code": c.postal_code,
                "first_source_code": c.first_source_code,
                "last_source_code": c.last_source_code,
                "creator": person.creator,
                "rules": sorted(rules.get(contact_id, [])),
                "tags": list(c.tags),
                "consent": person.consents,
                "sync": sync.get(contact_id, {}),
                "subscriptions": there.get(contact_id, {}),
                "first_seen": c.created_at,
            }
        )
    return leads


def retry_dead(
    engine: Engine, *, now: datetime, destination: str | None = None, campaign_id: int | None = None
) -> int:
    """Put dead lead messages back in the queue, their attempts counted afresh."""
    with transaction(engine) as session:
        return requeue_dead(session, now=now, destination=destination, campaign_id=campaign_id)


def requeue_dead(
    session: Session,
    *,
    now: datetime,
    destination: str | None = None,
    campaign_id: int | None = None,
) -> int:
    """`retry_dead` in the caller's transaction (which audits who asked for it)."""
    ids = [m.id for m in dead_letters(session, destination=destination, campaign_id=campaign_id)]
    if not ids:
        return 0
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(ids))
        .values(
            status=OutboxStatus.PENDING,
            attempts=0,
            available_at=now,
            locked_until=None,
            lease_id=None,
        )
    )
    return len(ids)

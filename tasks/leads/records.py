"""Leads queued for sync and read back as a destination receives them.

A sync message names the person, not their data: the drain reads the person as they are when it
sends, so the newest consent and tags always travel, and a forgotten person's data never sits in
the outbox. A change queues one message per destination, in the transaction of the change; a
message still waiting (not yet taken by a drain) is shared by later changes instead of adding
another.
"""

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import ARRAY, Integer, String, and_, any_, bindparam, func, literal_column, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from store.models import (
    ConsentStatus,
    Contact,
    ContactConsent,
    Creator,
    OutboxMessage,
    OutboxStatus,
    RosterMember,
)
from tasks.leads.sync_state import CHANNEL, SUBJECT, destination_key

if TYPE_CHECKING:  # `leads status` reads with this module; only a sync loads the connectors
    from config.campaign import Destination
    from integrations.crm import Lead

UPSERT, FORGET = "upsert", "forget"


def syncable() -> Any:
    """A contact a destination can take: not forgotten, with an email or a phone."""
    return and_(
        col(Contact.erased_at).is_(None),
        or_(col(Contact.email).is_not(None), col(Contact.phone).is_not(None)),
    )


def queue_sync(
    session: Session,
    campaign_id: int,
    destinations: "Sequence[Destination]",
    contact_ids: Iterable[int],
    *,
    now: datetime,
) -> int:
    """Queue these people for every enabled destination; return how many messages were added.

    A waiting message no drain has taken yet already covers a person (it will read them as they
    are when it goes); one a drain holds may carry what they were before this change, so a new
    one is added. On PostgreSQL the waiting rows are locked until this transaction ends, so a
    drain cannot take one in between and miss the change."""
    from tasks.outbox import enqueue

    ids = sorted(set(contact_ids))
    if not ids:
        return 0
    reachable = [
        i
        for (i,) in session.execute(
            sa_select(col(Contact.id)).where(col(Contact.id).in_(ids), syncable())
        )
    ]
    added = 0
    for destination in destinations:
        if not destination.enabled:
            continue
        key = destination_key(campaign_id, destination.name)
        query = sa_select(col(OutboxMessage.subject_id)).where(
            col(OutboxMessage.subject_type) == SUBJECT,
            col(OutboxMessage.subject_id).in_([str(i) for i in reachable]),
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.destination) == key,
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            or_(
                col(OutboxMessage.locked_until).is_(None),
                col(OutboxMessage.locked_until) < now,
            ),
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        waiting = {int(s) for (s,) in session.execute(query)}
        added += enqueue(
            session,
            [
                sync_message(key, contact_id, {"action": UPSERT}, now=now)
                for contact_id in reachable
                if contact_id not in waiting
            ],
        )
    return added


def sync_message(
    destination: str, contact_id: int, payload: dict[str, Any], *, now: datetime
) -> dict[str, Any]:
    return {
        "channel": CHANNEL,
        "destination": destination,
        "idempotency_key": f"lead:{destination}:{contact_id}:{uuid.uuid4().hex}",
        "subject_type": SUBJECT,
        "subject_id": str(contact_id),
        "payload": payload,
        "available_at": now,
        "created_at": now,
    }


def remote_id_at(session: Session, destination: str, contact_id: str) -> str | None:
    """The id `destination` gave this person, by the newest of their messages it answered with
    one (an upsert withdrawn on its way too: the remote took it all the same); None when none
    reached it."""
    found = session.execute(
        sa_select(col(OutboxMessage.remote_id))
        .where(
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.destination) == destination,
            col(OutboxMessage.subject_type) == SUBJECT,
            col(OutboxMessage.subject_id) == contact_id,
            col(OutboxMessage.remote_id).is_not(None),
        )
        .order_by(col(OutboxMessage.id).desc())
        .limit(1)
    )
    return found.scalar()


# --- building what a destination receives ---------------------------------------------------


class ContactFields(NamedTuple):
    """The columns of a contact that its leads are made of, read as plain rows: for a batch of
    a hundred, a fraction of what loading the contacts as models costs."""

    id: int
    email: str | None
    phone: str | None
    given_name: str | None
    family_name: str | None
    postal_code: str | None
    first_source_code: str | None
    last_source_code: str | None
    tags: list[str]
    created_at: datetime
    erased_at: datetime | None


@dataclass(frozen=True)
class LeadRecord:
    """A contact as the store has it, with what the campaign knows of their source."""

    contact: ContactFields
    consents: dict[str, str]
    creator: str | None
    segment: str | None


def load_people(session: Session, contact_ids: Iterable[int]) -> dict[int, LeadRecord]:
    """The people of `contact_ids` as leads are made of them, in two queries."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    dialect = session.get_bind().dialect.name
    people, consents_query = _people_queries(dialect)
    values = {"b_ids": ids if dialect == "postgresql" else json.dumps(ids)}
    consents: dict[int, dict[str, str]] = {}
    for contact_id, channel, status in session.execute(consents_query, values).all():
        consents.setdefault(contact_id, {})[channel] = status
    return {
        row[0]: LeadRecord(ContactFields._make(row[:-2]), consents.get(row[0], {}), *row[-2:])
        for row in session.execute(people, values).all()
    }


@cache
def _people_queries(dialect: str) -> tuple[Any, Any]:
    """The contacts with their source, and their consents (built once: for a batch of a
    hundred, building them costs about as much as running them). On PostgreSQL the ids go as
    one array, so each query's text is the same every time and is prepared once."""
    contacts = Contact.__table__  # type: ignore[attr-defined]
    members = RosterMember.__table__  # type: ignore[attr-defined]
    creators = Creator.__table__  # type: ignore[attr-defined]
    consents = ContactConsent.__table__  # type: ignore[attr-defined]

    def among(column: Any) -> Any:
        if dialect == "postgresql":
            return column == any_(bindparam("b_ids", type_=ARRAY(Integer)))
        # SQLite's counterpart of an array: the ids as one JSON text, so that the statement is
        # the same for every batch (an expanding IN is rendered anew for each).
        ids = func.json_each(bindparam("b_ids", type_=String))
        return column.in_(sa_select(literal_column("value")).select_from(ids))

    people = (
        sa_select(
            *(contacts.c[name] for name in ContactFields._fields),
            creators.c.handle,
            members.c.segment,
        )
        .select_from(
            contacts.outerjoin(members, members.c.id == contacts.c.last_member_id).outerjoin(
                creators, creators.c.id == members.c.creator_id
            )
        )
        .where(among(contacts.c.id))
    )
    said = sa_select(consents.c.contact_id, consents.c.channel, consents.c.status).where(
        among(consents.c.contact_id)
    )
    return people, said


def consent_of(status: str | None) -> bool | None:
    """A consent as a lead carries it: granted True, revoked False, none on record None."""
    if status == ConsentStatus.GRANTED:
        return True
    if status == ConsentStatus.REVOKED:
        return False
    return None


def lead_for(record: LeadRecord, destination: "Destination", campaign: str, sync_id: str) -> "Lead":
    """What `destination` receives for this person: mapped fields, tags and consent."""
    from integrations.crm import Lead

    c = record.contact
    tags = [*destination.tags, *c.tags]
    if destination.tag_by:
        derived = {
            "source": c.last_source_code,
            "segment": record.segment,
            "creator": record.creator,
        }
        tags += [value for kind in destination.tag_by if (value := derived.get(kind))]
    tags = list(dict.fromkeys(tags))  # each once, in order
    custom_fields: dict[str, Any] = {}
    if destination.mapping:
        fields: dict[str, Any] = {
            "email": c.email,
            "phone": c.phone,
            "given_name": c.given_name,
            "family_name": c.family_name,
            "postal_code": c.postal_code,
            "source_code": c.last_source_code,
            "first_source_code": c.first_source_code,
            "creator": record.creator,
            "segment": record.segment,
            "campaign": campaign,
            "tags": ";".join(tags),
            "first_seen": c.created_at.isoformat() if c.created_at else None,
        }
        custom_fields = {
            remote: fields[name]
            for name, remote in destination.mapping.items()
            if fields.get(name) is not None
        }
    utm = {
        "utm_source": "tiktok",
        "utm_medium": "creator",
        "utm_campaign": campaign,
        "utm_content": c.last_source_code or "",
    }
    return Lead(
        key=f"rally-{c.id}",
        contact_id=c.id,
        campaign=campaign,
        sync_id=sync_id,
        email=c.email,
        phone=c.phone,
        given_name=c.given_name,
        family_name=c.family_name,
        postal_code=c.postal_code,
        tags=tuple(tags),
        email_consent=consent_of(record.consents.get("email")),
        sms_consent=consent_of(record.consents.get("sms")),
        source_code=c.last_source_code,
        first_source_code=c.first_source_code,
        creator=record.creator,
        utm={k: v for k, v in utm.items() if v},
        custom_fields=custom_fields,
    )

"""Leads queued for sync and read back as a destination receives them.

A sync message names the person, not their data: the drain reads the person as they are when it
sends, so the newest consent and tags always travel, and a forgotten person's data never sits in
the outbox. A change queues one message per destination, in the transaction of the change; a
message still waiting (not yet taken by a drain) is shared by later changes instead of adding
another.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from config.campaign import Destination
from integrations.crm import Lead
from store.models import (
    ConsentStatus,
    Contact,
    ContactConsent,
    Creator,
    OutboxMessage,
    OutboxStatus,
    RosterMember,
)
from tasks.outbox import enqueue

CHANNEL = "lead"
UPSERT, FORGET = "upsert", "forget"


def destination_key(campaign_id: int, name: str) -> str:
    """The outbox's name for one campaign's destination."""
    return f"{campaign_id}:{name}"


def destination_name(key: str) -> str:
    """The destination's own name, from the outbox's (`destination_key`)."""
    return key.partition(":")[2]


def syncable() -> Any:
    """A contact a destination can take: not forgotten, with an email or a phone."""
    return and_(
        col(Contact.erased_at).is_(None),
        or_(col(Contact.email).is_not(None), col(Contact.phone).is_not(None)),
    )


def queue_sync(
    session: Session,
    campaign_id: int,
    destinations: Sequence[Destination],
    contact_ids: Iterable[int],
    *,
    now: datetime,
) -> int:
    """Queue these people for every enabled destination; return how many messages were added.

    A waiting message no drain has taken yet already covers a person (it will read them as they
    are when it goes); one a drain holds may carry what they were before this change, so a new
    one is added. On PostgreSQL the waiting rows are locked until this transaction ends, so a
    drain cannot take one in between and miss the change."""
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
            col(OutboxMessage.subject_type) == "contact",
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
        "subject_type": "contact",
        "subject_id": str(contact_id),
        "payload": payload,
        "available_at": now,
        "created_at": now,
    }


# --- building what a destination receives ---------------------------------------------------


@dataclass(frozen=True)
class LeadRecord:
    """A contact as the store has it, with what the campaign knows of their source."""

    contact: Contact
    consents: dict[str, str]
    creator: str | None
    segment: str | None


def load_people(session: Session, contact_ids: Iterable[int]) -> dict[int, LeadRecord]:
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    contacts = list(session.exec(select(Contact).where(col(Contact.id).in_(ids))))
    consents: dict[int, dict[str, str]] = {}
    for contact_id, channel, status in session.execute(
        sa_select(
            col(ContactConsent.contact_id), col(ContactConsent.channel), col(ContactConsent.status)
        ).where(col(ContactConsent.contact_id).in_(ids))
    ):
        consents.setdefault(contact_id, {})[channel] = status
    member_ids = {c.last_member_id for c in contacts if c.last_member_id}
    members = {
        member_id: (handle, segment)
        for member_id, handle, segment in session.execute(
            sa_select(col(RosterMember.id), col(Creator.handle), col(RosterMember.segment))
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(col(RosterMember.id).in_(member_ids))
        )
    }
    return {
        c.id: LeadRecord(
            c,
            consents.get(c.id, {}),
            *members.get(c.last_member_id or 0, (None, None)),
        )
        for c in contacts
        if c.id is not None
    }


def consent_of(status: str | None) -> bool | None:
    """A consent as a lead carries it: granted True, revoked False, none on record None."""
    if status == ConsentStatus.GRANTED:
        return True
    if status == ConsentStatus.REVOKED:
        return False
    return None


def lead_for(record: LeadRecord, destination: Destination, campaign: str, sync_id: str) -> Lead:
    """What `destination` receives for this person: mapped fields, tags and consent."""
    c = record.contact
    tags = list(destination.tags) + list(c.tags)
    derived = {"source": c.last_source_code, "segment": record.segment, "creator": record.creator}
    tags += [value for kind in destination.tag_by if (value := derived.get(kind))]
    tags = list(dict.fromkeys(tags))  # each once, in order
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
    utm = {
        "utm_source": "tiktok",
        "utm_medium": "creator",
        "utm_campaign": campaign,
        "utm_content": c.last_source_code or "",
    }
    return Lead(
        key=f"rally-{c.id}",
        contact_id=c.id or 0,
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
        custom_fields={
            remote: fields[name]
            for name, remote in destination.mapping.items()
            if fields.get(name) is not None
        },
    )

"""Leads: the contacts a campaign gathered (signups, and engaged people the rules tagged or who
changed their consent), queued for sync to the campaign's destinations, listed, forgotten.

A sync message names the person, not their data: the drain reads the person as they are when it
sends, so the newest consent and tags always travel, and a forgotten person's data never sits in
the outbox. A change queues one message per destination, in the transaction of the change; a
message still waiting (not yet taken by a drain) is shared by later changes instead of adding
another.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, literal_column, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from config.campaign import Destination
from config.errors import RallyError
from integrations.crm import Lead
from store.audit import Change, record
from store.db import transaction
from store.models import (
    Campaign,
    ConsentStatus,
    Contact,
    ContactConsent,
    Creator,
    EngagementEvent,
    FollowUp,
    OutboxMessage,
    OutboxStatus,
    RosterMember,
)
from tasks.campaigns import campaign_spec
from tasks.contacts import ContactError, normalize_email, normalize_phone
from tasks.outbox import enqueue

CHANNEL = "lead"
UPSERT, FORGET = "upsert", "forget"


def destination_key(campaign_id: int, name: str) -> str:
    """The outbox's name for one campaign's destination."""
    return f"{campaign_id}:{name}"


def destination_name(key: str) -> str:
    """The destination's own name, from the outbox's (`destination_key`)."""
    return key.partition(":")[2]


def _syncable() -> Any:
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
            sa_select(col(Contact.id)).where(col(Contact.id).in_(ids), _syncable())
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


def _consent(status: str | None) -> bool | None:
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
        email_consent=_consent(record.consents.get("email")),
        sms_consent=_consent(record.consents.get("sms")),
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


# --- reading --------------------------------------------------------------------------------


def campaign_contacts(session: Session, campaign_id: int) -> list[int]:
    """The people who reached this campaign: through its events or as its creators' source."""
    through_events = sa_select(col(EngagementEvent.contact_id)).where(
        col(EngagementEvent.campaign_id) == campaign_id,
        col(EngagementEvent.contact_id).is_not(None),
    )
    members = sa_select(col(RosterMember.id)).where(col(RosterMember.campaign_id) == campaign_id)
    query = sa_select(col(Contact.id)).where(
        _syncable(),
        or_(
            col(Contact.id).in_(through_events),
            col(Contact.first_member_id).in_(members),
            col(Contact.last_member_id).in_(members),
        ),
    )
    return [i for (i,) in session.execute(query.order_by(col(Contact.id)))]


def list_leads(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """Each lead with their consent, source and where each destination stands."""
    assert campaign.id is not None
    ids = campaign_contacts(session, campaign.id)
    people = load_people(session, ids)
    rules: dict[int, list[str]] = {}
    for contact_id, rule_id in session.execute(
        sa_select(col(FollowUp.contact_id), col(FollowUp.rule_id))
        .where(col(FollowUp.campaign_id) == campaign.id, col(FollowUp.contact_id).in_(ids))
        .distinct()
    ):
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
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.destination).startswith(prefix),
            col(OutboxMessage.subject_id).in_([str(i) for i in ids]),
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
                "first_seen": c.created_at,
            }
        )
    return leads


def sync_status(session: Session) -> list[dict[str, Any]]:
    """Per campaign destination: messages waiting, retrying after a failure, sent, dead."""
    campaigns = session.execute(sa_select(col(Campaign.id), col(Campaign.slug)))
    slugs: dict[int, str] = {cid: slug for cid, slug in campaigns}
    rows = session.execute(
        sa_select(
            col(OutboxMessage.destination),
            col(OutboxMessage.status),
            col(OutboxMessage.attempts) > literal_column("0"),
            func.count(),
        )
        .where(col(OutboxMessage.channel) == CHANNEL)
        .group_by(
            col(OutboxMessage.destination),
            col(OutboxMessage.status),
            col(OutboxMessage.attempts) > literal_column("0"),
        )
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
            },
        )
        kind = "failed" if status == OutboxStatus.PENDING and tried else str(status)
        entry[kind] = entry.get(kind, 0) + count
    return sorted(table.values(), key=lambda e: (e["campaign"], e["destination"]))


def dead_letters(session: Session, *, destination: str | None = None) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(
        OutboxMessage.channel == CHANNEL, OutboxMessage.status == OutboxStatus.DEAD
    )
    if destination:
        query = query.where(col(OutboxMessage.destination).endswith(f":{destination}"))
    return list(session.exec(query.order_by(col(OutboxMessage.id))))


def retry_dead(engine: Engine, *, now: datetime, destination: str | None = None) -> int:
    """Put dead lead messages back in the queue, their attempts counted afresh."""
    with transaction(engine) as session:
        ids = [m.id for m in dead_letters(session, destination=destination)]
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
            )
        )
        return len(ids)


# --- forgetting -----------------------------------------------------------------------------


@dataclass
class Forgotten:
    contact_id: int
    deletions: list[str]  # destinations asked to delete the person


def find_contact(session: Session, who: str) -> Contact:
    """The contact with this email or phone; a clear error when there is none."""
    try:
        email = normalize_email(who) if "@" in who else None
        phone = None if email else normalize_phone(who)
    except ContactError as exc:
        raise RallyError(f"{who!r}: {exc}") from None
    clause = (
        col(Contact.email_normalized) == email if email else col(Contact.phone_normalized) == phone
    )
    contact = session.exec(select(Contact).where(clause)).first()
    if contact is None:
        raise RallyError(f"no lead with {'email' if email else 'phone'} {who!r}")
    return contact


def forget(engine: Engine, who: str, *, actor: str, now: datetime) -> Forgotten:
    """Erase a person's data here, keep a tombstone, and queue their deletion at every
    destination that holds them (where the remote cannot delete, the message says so)."""
    with transaction(engine) as session:
        contact = find_contact(session, who)
        assert contact.id is not None
        deletions = _queue_deletions(session, contact.id, now=now)
        erase(session, [contact.id], now=now)
        record(
            session,
            [
                Change(
                    actor,
                    "lead.forgotten",
                    "contact",
                    contact.id,
                    f"forgot contact {contact.id}; deletion asked of "
                    + (", ".join(deletions) or "no destination"),
                    {"deletions": deletions},
                )
            ],
        )
    return Forgotten(contact.id, deletions)


def _queue_deletions(session: Session, contact_id: int, *, now: datetime) -> list[str]:
    """A deletion for each destination the person reached (by the remote id it gave us)."""
    sent = session.execute(
        sa_select(col(OutboxMessage.destination), col(OutboxMessage.remote_id))
        .where(
            col(OutboxMessage.subject_type) == "contact",
            col(OutboxMessage.subject_id) == str(contact_id),
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.status) == OutboxStatus.SENT,
            col(OutboxMessage.remote_id).is_not(None),
        )
        .order_by(col(OutboxMessage.id))
    )
    remote = {destination: remote_id for destination, remote_id in sent}
    enqueue(
        session,
        [
            sync_message(destination, contact_id, {"action": FORGET, "remote_id": rid}, now=now)
            for destination, rid in remote.items()
        ],
    )
    return sorted(remote)


def erase(session: Session, contact_ids: Sequence[int], *, now: datetime) -> None:
    """Remove personal data of these people: the contact keeps only its id and when it was
    erased; their events lose text and payload; messages still waiting to reach them are
    withdrawn and the contents of their messages are blanked."""
    if not contact_ids:
        return
    ids = list(contact_ids)
    session.execute(
        update(Contact)
        .where(col(Contact.id).in_(ids))
        .values(
            email=None,
            email_normalized=None,
            phone=None,
            phone_normalized=None,
            given_name=None,
            family_name=None,
            postal_code=None,
            platform=None,
            handle=None,
            timezone=None,
            tags=[],
            erased_at=now,
            updated_at=now,
        )
    )
    session.execute(
        update(EngagementEvent)
        .where(col(EngagementEvent.contact_id).in_(ids))
        .values(actor=None, text=None, payload={})
    )
    followup_messages = sa_select(col(FollowUp.outbox_id)).where(
        col(FollowUp.contact_id).in_(ids), col(FollowUp.outbox_id).is_not(None)
    )
    theirs = or_(
        col(OutboxMessage.id).in_(followup_messages),
        and_(
            col(OutboxMessage.subject_type).in_(["contact", "consent"]),
            col(OutboxMessage.subject_id).in_([str(i) for i in ids]),
            col(OutboxMessage.channel) != CHANNEL,
        ),
        and_(
            col(OutboxMessage.channel) == CHANNEL,
            col(OutboxMessage.subject_id).in_([str(i) for i in ids]),
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            col(OutboxMessage.payload)["action"].as_string() == UPSERT,
        ),
    )
    session.execute(
        update(OutboxMessage)
        .where(theirs, col(OutboxMessage.status) == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED, last_error="the person was forgotten")
    )
    session.execute(
        update(OutboxMessage)
        .where(theirs, col(OutboxMessage.channel) != CHANNEL)
        .values(payload={"erased": True})
    )


def purge_expired(engine: Engine, *, now: datetime) -> int:
    """Erase the people whose every campaign ended more than its `retention_days` ago; return
    how many. Campaigns without a retention setting keep their people."""
    with transaction(engine) as session:
        campaigns = list(session.exec(select(Campaign)))
        expired, kept = [], []
        for campaign in campaigns:
            retention = campaign_spec(campaign).retention_days
            ends = datetime.combine(campaign.start_date, datetime.min.time(), now.tzinfo)
            ends += timedelta(weeks=campaign.weeks)
            if retention is not None and now >= ends + timedelta(days=retention):
                expired.append(campaign.id)
            else:
                kept.append(campaign.id)
        if not expired:
            return 0
        people = {
            cid: set(campaign_contacts(session, cid)) for cid in expired + kept if cid is not None
        }
        gone = set().union(*(people[c] for c in expired if c is not None))
        gone -= set().union(*(people[c] for c in kept if c is not None))
        if gone:
            erase(session, sorted(gone), now=now)
            record(
                session,
                [
                    Change(
                        "rally",
                        "lead.purged",
                        "contact",
                        "retention",
                        f"purged {len(gone)} lead(s) past their campaigns' retention",
                        {"contacts": sorted(gone)},
                    )
                ],
            )
        return len(gone)

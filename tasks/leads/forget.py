"""Forgetting people: a person's data erased here on request (and deletions queued at the
destinations that know them), and every lead of a campaign erased once its retention ends.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.audit import Change, record
from store.db import transaction
from store.models import (
    Campaign,
    ConsentRecord,
    ConsentRequest,
    Contact,
    EngagementEvent,
    FollowUp,
    FollowUpStatus,
    OutboxMessage,
    OutboxStatus,
)
from tasks.campaigns.campaign import campaign_spec
from tasks.leads.contacts import ContactError, normalize_email, normalize_phone
from tasks.leads.records import CHANNEL, FORGET, SUBJECT, UPSERT, sync_message
from tasks.leads.status import campaign_contacts
from tasks.outbox import enqueue, held_now


@dataclass
class Forgotten:
    contact_id: int
    deletions: list[str]  # destinations asked to delete the person


class NoSuchLead(RallyError):
    """Nobody here has the email or phone given."""


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
        raise NoSuchLead(f"no lead with {'email' if email else 'phone'} {who!r}")
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
    """A deletion for each destination the person reached: one that gave them an id, or one an
    upsert of theirs is on its way to right now. The deletion waits for that upsert's answer
    (a drain never sends one person's messages at once) and goes by the newest id the person
    has there when it is sent. On PostgreSQL their messages are locked first, so a drain cannot
    take one in between unseen."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    query = sa_select(
        table.c.destination, or_(table.c.remote_id.is_not(None), held_now(table, now))
    ).where(
        table.c.subject_type == SUBJECT,
        table.c.subject_id == str(contact_id),
        table.c.channel == CHANNEL,
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    reached = sorted({destination for destination, there in session.execute(query) if there})
    enqueue(
        session,
        [
            sync_message(destination, contact_id, {"action": FORGET}, now=now)
            for destination in reached
        ],
    )
    return reached


def erase(session: Session, contact_ids: Sequence[int], *, now: datetime) -> None:
    """Remove personal data of these people: the contact keeps only its id and when it was
    erased; their events lose text and payload, those still waiting for the rules too (which
    would otherwise make the person again and answer them); their requests to confirm a consent
    go, and their consent records where it came from; messages still waiting to reach them are
    withdrawn (their follow-ups with them) and the contents of their messages are blanked."""
    if not contact_ids:
        return
    ids = list(contact_ids)
    waiting = _waiting_events_naming(session, ids)
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
        .where(or_(col(EngagementEvent.contact_id).in_(ids), col(EngagementEvent.id).in_(waiting)))
        .values(actor=None, text=None, payload={})
    )
    session.execute(delete(ConsentRequest).where(col(ConsentRequest.contact_id).in_(ids)))
    # Their consent records stay (when and how consent was given or withdrawn), without where
    # it came from or the words they wrote themselves; the page's own words are kept.
    records = col(ConsentRecord.contact_id).in_(ids)
    session.execute(update(ConsentRecord).where(records).values(origin=None))
    session.execute(
        update(ConsentRecord)
        .where(
            records,
            col(ConsentRecord.source).not_like("join:%"),
            col(ConsentRecord.source) != "email link",
        )
        .values(wording=None)
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
    session.execute(
        update(FollowUp)
        .where(
            col(FollowUp.contact_id).in_(ids),
            col(FollowUp.status).in_([FollowUpStatus.SCHEDULED, FollowUpStatus.QUEUED]),
        )
        .values(status=FollowUpStatus.CANCELLED, reason="the person was forgotten")
    )


def _waiting_events_naming(session: Session, contact_ids: list[int]) -> list[int]:
    """The events not yet through the rules that name one of these people: by their handle,
    or by the email or phone of a contact the event carries (read as the rules would read
    them). Such an event has no contact yet, so only what it names can tell."""
    people = session.execute(
        sa_select(
            col(Contact.handle), col(Contact.email_normalized), col(Contact.phone_normalized)
        ).where(col(Contact.id).in_(contact_ids))
    ).all()
    handles = {h.lower() for h, _, _ in people if h}
    addresses = {a for _, e, p in people for a in (e, p) if a}
    found = []
    events = session.execute(
        sa_select(col(EngagementEvent.id), col(EngagementEvent.actor), col(EngagementEvent.payload))
        .where(col(EngagementEvent.processed_at).is_(None))
        .execution_options(yield_per=1000)
    )
    for id_, actor, payload in events:
        contact = payload.get("contact") if isinstance(payload, dict) else None
        if (actor or "").lower() in handles or _names(contact, addresses):
            found.append(id_)
    return found


def _names(contact: object, addresses: set[str]) -> bool:
    """Whether an event's contact has one of these normalized emails or phones."""
    if not isinstance(contact, dict) or not addresses:
        return False
    for value, normalize in (
        (contact.get("email"), normalize_email),
        (contact.get("phone"), normalize_phone),
    ):
        try:
            if isinstance(value, str) and normalize(value) in addresses:
                return True
        except ContactError:
            pass
    return False


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

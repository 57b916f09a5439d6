"""A person opted out of a channel on their word given elsewhere (a CRM's unsubscribe, a
request by phone), recorded by staff or an API client: their consent there is revoked with
its record, what still waits to go to them there is withdrawn, the campaign's destinations and
webhooks (`consent.changed`) hear of it, and the audit log names who recorded it. The person's
own STOP in a reply or text does the same through the rules (`tasks.engagement.batch`)."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from store.audit import Change, record
from store.models import (
    Campaign,
    ConsentStatus,
    Contact,
    FollowUp,
    FollowUpStatus,
    OutboxMessage,
    OutboxStatus,
)
from tasks.campaigns.campaign import campaign_spec
from tasks.leads.contacts import consent_changed, set_consent
from tasks.leads.records import queue_sync
from tasks.outbox import cancel
from tasks.webhooks.events import emit


@dataclass(frozen=True)
class OptedOut:
    contact_id: int
    channel: str
    changed: bool  # False when they were opted out of it already
    withdrawn: int  # follow-ups withdrawn that had not gone yet


def withdraw_queued(session: Session, contact_id: int, channel: str, *, now: datetime) -> int:
    """Cancel the stored follow-ups still waiting to go to this person on this channel (those a
    drain is sending this moment go); how many were withdrawn."""
    rows = session.exec(
        select(FollowUp.id, FollowUp.outbox_id).where(
            FollowUp.contact_id == contact_id,
            FollowUp.channel == channel,
            FollowUp.status == FollowUpStatus.QUEUED,
        )
    ).all()
    if not rows:
        return 0
    cancel(session, [o for _, o in rows if o], f"opted out of {channel}")
    result = session.execute(
        update(FollowUp)
        .where(col(FollowUp.id).in_([i for i, _ in rows]))
        .where(
            col(FollowUp.outbox_id).in_(
                select(OutboxMessage.id).where(OutboxMessage.status == OutboxStatus.CANCELLED)
            )
        )
        .values(status=FollowUpStatus.CANCELLED, reason=f"opted out of {channel}", updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def opt_out(
    session: Session,
    campaign: Campaign,
    contact_id: int,
    channel: str,
    *,
    actor: str,
    now: datetime,
    wording: str | None = None,
) -> OptedOut:
    """Revoke the person's consent on `channel` as `actor` recorded it (`wording`: what they
    said, if known), in the caller's transaction."""
    changed = set_consent(
        session,
        contact_id,
        channel,
        ConsentStatus.REVOKED,
        source=actor,
        now=now,
        wording=wording,
        origin=actor,
    )
    withdrawn = withdraw_queued(session, contact_id, channel, now=now) if changed else 0
    if changed:
        assert campaign.id is not None
        destinations = campaign_spec(campaign).destinations
        queue_sync(session, campaign.id, destinations, [contact_id], now=now)
        person = session.get(Contact, contact_id)
        said = consent_changed(
            contact_id, channel, ConsentStatus.REVOKED, source=actor, now=now, person=person
        )
        emit(session, campaign.id, [said], at=now)
        record(
            session,
            [
                Change(
                    actor,
                    "consent.revoked",
                    "contact",
                    contact_id,
                    f"contact {contact_id} opted out of {channel}"
                    + (f"; {withdrawn} follow-up(s) withdrawn" if withdrawn else ""),
                    {"channel": channel, "withdrawn": withdrawn, "campaign": campaign.slug},
                )
            ],
        )
    return OptedOut(contact_id, channel, changed, withdrawn)

"""Double opt-in: the consent a person asks for on the signup page waits, pending, until they
confirm it from the address it is for, and nothing but the request to confirm goes there before.

- An email address gets one email with a link to `/join/<slug>/confirm/<token>`: single use
  and expiring, only a hash of its secret kept (as with approvers' sign-in links), and scrubbed
  from the outbox once sent. The link's page confirms with a button, so a mail scanner that
  fetches the link confirms nothing.
- A phone gets one text asking for YES; the person's YES (or START) confirms
  (`tasks.engagement.batch`).
- A repeat signup within `ASK_AGAIN_AFTER` asks nothing again.

Confirming grants the consent (unless the person opted out meanwhile), syncs the lead again for
each campaign that asked, and puts the events whose follow-ups were withheld for want of it
back before the rules, which decide them again (a welcome email then goes).
"""

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from store.models import (
    Campaign,
    ConsentRequest,
    ConsentStatus,
    Contact,
    EngagementEvent,
    FollowUp,
    FollowUpStatus,
)
from tasks.campaigns.campaign import campaign_spec
from tasks.drain import Handler
from tasks.engagement.rules import greeting
from tasks.leads.contacts import consent_changed, consents, set_consent
from tasks.leads.records import queue_sync
from tasks.outbox import Claimed, enqueue, scrub_links
from tasks.webhooks.events import emit

LINK_LIFETIME = timedelta(days=7)
ASK_AGAIN_AFTER = timedelta(days=1)
MAX_TOKEN = 100  # a token from a link is 43 characters; anything much longer is not one
LINK = re.compile(r"\S+/join/\S+/confirm/\S+")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def disclosure(spec: CampaignSpec) -> str:
    """What every text about the texting program says (the carriers' required words)."""
    frequency = spec.signup.message_frequency.rstrip(".")
    return f"{frequency}. Msg & data rates may apply. Reply HELP for help, STOP to cancel."


def ask_to_confirm(
    session: Session,
    contact_id: int,
    campaign: Campaign,
    wanted: Mapping[str, str | None],
    *,
    public_url: str,
    now: datetime,
) -> list[str]:
    """Ask the person to confirm each channel they want (channel -> the address the signup
    gave) whose consent is pending, and only at that very address: one email with a link, one
    text asking for YES, each queued with the signup; none when they were asked within
    `ASK_AGAIN_AFTER`. The channels asked."""
    contact = session.get(Contact, contact_id)
    assert contact is not None and campaign.id is not None
    status = consents(session, [contact_id])
    on_record = {"email": contact.email_normalized, "sms": contact.phone_normalized}
    pending = {
        channel
        for channel, address in wanted.items()
        if address
        and address == on_record.get(channel)
        and status.get((contact_id, channel)) == ConsentStatus.PENDING
    }
    if not pending:
        return []
    asked_lately = set(
        session.exec(
            select(ConsentRequest.channel).where(
                ConsentRequest.contact_id == contact_id,
                col(ConsentRequest.created_at) > now - ASK_AGAIN_AFTER,
            )
        )
    )
    spec = campaign_spec(campaign)
    asked = []
    for channel in sorted(pending - asked_lately):
        secret = secrets.token_urlsafe(32) if channel == "email" else None
        request = ConsentRequest(
            contact_id=contact_id,
            campaign_id=campaign.id,
            channel=channel,
            secret_hash=_hash(secret) if secret else None,
            created_at=now,
            expires_at=now + LINK_LIFETIME,
        )
        session.add(request)
        session.flush()
        if secret:
            link = f"{public_url}/join/{spec.slug}/confirm/{secret}"
            payload = {
                "to": contact.email,
                "to_name": contact.given_name or "",
                "subject": f"Confirm your email for {spec.name}",
                "text": email_text(spec, greeting(contact.given_name, None), link),
            }
        else:
            payload = {"to": contact.phone, "text": f"{spec.sms_program}: {sms_text(spec)}"}
        enqueue(
            session,
            [
                {
                    "channel": channel,
                    "destination": "public",
                    "idempotency_key": f"confirm:{request.id}",
                    "subject_type": "consent",
                    "subject_id": str(contact_id),
                    "payload": payload,
                    "available_at": now,
                }
            ],
        )
        asked.append(channel)
    return asked


def email_text(spec: CampaignSpec, hello: str, link: str) -> str:
    days = LINK_LIFETIME.days
    text = (
        f"Hi {hello},\n\n"
        f"Thanks for signing up with {spec.name}. To get our emails about "
        f"{spec.signup.email_about}, confirm your address here:\n\n{link}\n\n"
        f"The link works for {days} days. If you did not sign up, ignore this email: "
        "we will not email you.\n"
    )
    if spec.committee:
        text += f"\n{spec.committee.paid_for_by}\n"
    return text


def sms_text(spec: CampaignSpec) -> str:
    return f"Reply YES to get our texts. {disclosure(spec)}"


def help_text(spec: CampaignSpec) -> str:
    """The answer to HELP: who is texting, how often, and where to find help."""
    where = spec.signup.website or spec.signup.privacy_url
    frequency = spec.signup.message_frequency.rstrip(".")
    help = f" For help, visit {where}." if where else ""
    return (
        f"{spec.sms_program}:{help} {frequency}. Msg & data rates may apply. Reply STOP to cancel."
    )


def last_asked_by(session: Session, contact_id: int) -> CampaignSpec | None:
    """The campaign that last asked the person to confirm a consent, if any."""
    campaign = session.exec(
        select(Campaign)
        .join(ConsentRequest, col(ConsentRequest.campaign_id) == col(Campaign.id))
        .where(ConsentRequest.contact_id == contact_id)
        .order_by(col(ConsentRequest.id).desc())
    ).first()
    return campaign_spec(campaign) if campaign else None


def subscribed_text(spec: CampaignSpec) -> str:
    """The text that answers a YES: the opt-in confirmation the carriers ask for."""
    return f"{spec.sms_program}: You're subscribed. {disclosure(spec)}"


def confirm(
    session: Session,
    contact_id: int,
    channel: str,
    *,
    source: str,
    now: datetime,
    wording: str | None = None,
    origin: str | None = None,
) -> CampaignSpec | None:
    """The person confirmed their pending consent on `channel`: it is granted, their requests
    to confirm it are done, their lead is queued again for each campaign that asked, and the
    events whose follow-ups were withheld until then wait for the rules again. The spec of the
    campaign that asked last, or None when the consent was not pending (nothing changes)."""
    if session.get_bind().dialect.name == "postgresql":
        # Wait for a rules batch deciding for this person (it holds their row) to commit, so
        # the events it withheld for want of this consent are seen and put back.
        session.execute(
            sa_select(col(Contact.id)).where(col(Contact.id) == contact_id).with_for_update()
        ).all()
    if consents(session, [contact_id]).get((contact_id, channel)) != ConsentStatus.PENDING:
        return None
    set_consent(
        session,
        contact_id,
        channel,
        ConsentStatus.GRANTED,
        source=source,
        now=now,
        wording=wording,
        origin=origin,
    )
    requests = session.exec(
        select(ConsentRequest)
        .where(ConsentRequest.contact_id == contact_id, ConsentRequest.channel == channel)
        .order_by(col(ConsentRequest.id).desc())
    ).all()
    for request in requests:
        request.confirmed_at = request.confirmed_at or now
        session.add(request)
    campaigns = {
        c.id: c
        for c in session.exec(
            select(Campaign).where(col(Campaign.id).in_({r.campaign_id for r in requests}))
        )
    }
    person = session.get(Contact, contact_id)
    said = consent_changed(
        contact_id, channel, ConsentStatus.GRANTED, source=source, now=now, person=person
    )
    for campaign_id, campaign in campaigns.items():
        if campaign_id is not None:
            spec = campaign_spec(campaign)
            queue_sync(session, campaign_id, spec.destinations, [contact_id], now=now)
            emit(session, campaign_id, [said], at=now)
    withheld = sa_select(col(FollowUp.event_id)).where(
        col(FollowUp.contact_id) == contact_id,
        col(FollowUp.channel) == channel,
        col(FollowUp.status) == FollowUpStatus.WITHHELD,
        col(FollowUp.reason).startswith(f"unconfirmed {channel}"),
    )
    session.execute(  # one still waiting is decided with the consent as it is by then
        update(EngagementEvent)
        .where(
            col(EngagementEvent.id).in_(withheld), col(EngagementEvent.processed_at).is_not(None)
        )
        .values(processed_at=None)
    )
    last = campaigns.get(requests[0].campaign_id) if requests else None
    return campaign_spec(last) if last else None


@dataclass(frozen=True)
class LinkCheck:
    """What a confirmation link is: `ready` to confirm, `used`, `expired` or `unknown` (never
    sent, or for another campaign)."""

    state: str
    request: ConsentRequest | None = None


def check_link(session: Session, slug: str, token: str, *, now: datetime) -> LinkCheck:
    """What the confirmation link `/join/<slug>/confirm/<token>` is."""
    if not token or len(token) > MAX_TOKEN:
        return LinkCheck("unknown")
    request = session.exec(
        select(ConsentRequest).where(ConsentRequest.secret_hash == _hash(token))
    ).first()
    campaign = session.get(Campaign, request.campaign_id) if request else None
    if request is None or campaign is None or campaign.slug != slug:
        return LinkCheck("unknown")
    if request.confirmed_at is not None:
        return LinkCheck("used", request)
    if request.expires_at <= now:
        return LinkCheck("expired", request)
    return LinkCheck("ready", request)


def confirm_link(
    session: Session, slug: str, token: str, *, now: datetime, origin: str | None = None
) -> str:
    """Use a confirmation link once: `confirmed`, `opted out` (the person unsubscribed since:
    the link changes nothing), or what `check_link` says of a link that cannot be used."""
    found = check_link(session, slug, token, now=now)
    if found.state != "ready" or found.request is None:
        return found.state
    request = found.request
    confirm(
        session,
        request.contact_id,
        "email",
        source="email link",
        now=now,
        wording="Pressed Confirm on the page the emailed link opened.",
        origin=origin,
    )
    if request.confirmed_at is None:  # not pending any more: the link is spent all the same
        request.confirmed_at = now
        session.add(request)
    status = consents(session, [request.contact_id]).get((request.contact_id, "email"))
    return "confirmed" if status == ConsentStatus.GRANTED else "opted out"


def forget_confirmation_links(session: Session, messages: list[Claimed], _at: datetime) -> None:
    """Confirmation emails sent: the links they held are scrubbed, so the store keeps no usable
    copy."""
    scrub_links(session, messages, LINK, "[confirmation link sent]")


CONSENT_EMAIL = Handler(sent=forget_confirmation_links)

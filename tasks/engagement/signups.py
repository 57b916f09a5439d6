"""Signups: people who give a campaign a way to reach them, on its `/join/<slug>` page or in
an event that carries a signup form's contact (from a file, another form, the simulator).

Every signup becomes a lead the same way, `record_signups`: its contact found or created with
the consents it grants (never undoing a STOP) and its touch (source code, creator), and the
lead queued for sync to each destination of its campaign, all in the caller's transaction.

The signup page is open to anyone, so what it is sent proves nothing: the consents it asks for
are pending until the person confirms them (`tasks.engagement.confirm`), and it takes a few
signups per network address and per email or phone only (`SignupLimits`), counted in the store
so that every process serving the page counts together.
"""

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from store.models import Campaign, Contact, RosterMember
from tasks.campaigns.campaign import campaign_spec
from tasks.engagement.confirm import ask_to_confirm
from tasks.engagement.events import new_event, store_events
from tasks.leads.contacts import (
    CONSENT_ORIGIN,
    CONSENT_WORDING,
    ContactError,
    Signup,
    consent_changed,
    lead_created,
    record_contacts,
)
from tasks.leads.records import queue_sync
from tasks.rate_limits import admit, forget_idle
from tasks.webhooks.events import Event, emit

CLIENT_WINDOW = 10 * 60.0  # seconds: `limits.per_client` signups from one network address
ADDRESS_WINDOW = 24 * 3600.0  # seconds: `limits.per_address` signups for one email or phone


@dataclass(frozen=True)
class CampaignSignup:
    """One signup: its campaign, the form's values (`name`, `email`, `phone`, `zip`, `consent`
    per channel), the source code given, where it came from, and the creator it credits."""

    campaign_id: int | None
    values: Mapping[str, Any]
    source_code: str | None
    source: str  # `join:<slug>` for the signup page, `<source>:<external id>` for an event
    member_id: int | None = None
    platform: str | None = None  # with `handle`: the social account the signup came from
    handle: str | None = None
    confirmed: bool = True  # False: the consents it grants wait for the person to confirm


def record_signups(
    session: Session, signups: Sequence[CampaignSignup], *, now: datetime
) -> list[int | ContactError | None]:
    """For each signup in order: its contact's id, None when it gives no way to reach the
    person, or the `ContactError` of a bad email or phone (see `record_people`). Each lead
    found is queued for sync to every enabled destination of its campaign."""
    people = [
        Signup(
            {**signup.values, "source_code": signup.source_code},
            source=signup.source,
            member_id=signup.member_id,
            platform=signup.platform,
            handle=signup.handle,
            confirmed=signup.confirmed,
        )
        for signup in signups
    ]
    recorded = record_contacts(session, people, now=now)
    leads: dict[int, set[int]] = {}
    events: dict[int, dict[str, Event]] = {}  # campaign -> its webhook events, by key
    for signup, contact in zip(signups, recorded.contacts, strict=True):
        if isinstance(contact, Contact) and contact.id and signup.campaign_id:
            leads.setdefault(signup.campaign_id, set()).add(contact.id)
            if contact.email or contact.phone:  # a lead: someone a destination can take
                made = lead_created(contact, source_code=signup.source_code, now=now)
                events.setdefault(signup.campaign_id, {})[made.key] = made
    for place, channel, status in recorded.granted:
        signup, contact = signups[place], recorded.contacts[place]
        if isinstance(contact, Contact) and contact.id and signup.campaign_id:
            source = signup.source
            given = consent_changed(
                contact.id, channel, status, source=source, now=now, person=contact
            )
            events.setdefault(signup.campaign_id, {})[given.key] = given
    _queue_leads(session, leads, now=now)
    for campaign_id, said in events.items():  # one query a campaign, however many signups
        emit(session, campaign_id, list(said.values()), at=now)
    return [c.id if isinstance(c, Contact) else c for c in recorded.contacts]


def _queue_leads(session: Session, leads: Mapping[int, set[int]], *, now: datetime) -> None:
    """Queue each campaign's new or changed leads for its destinations."""
    if not leads:
        return
    for campaign in session.exec(select(Campaign).where(col(Campaign.id).in_(list(leads)))):
        if campaign.id is not None:
            destinations = campaign_spec(campaign).destinations
            queue_sync(session, campaign.id, destinations, leads[campaign.id], now=now)


def signup_page_campaign(session: Session, slug: str) -> CampaignSpec | None:
    """The campaign whose signup page is `/join/<slug>`; None when there is no such campaign."""
    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
    return campaign_spec(campaign) if campaign else None


@dataclass(frozen=True)
class TooMany:
    """A signup the page refused: too many from one network address (`client`) or for one
    email or phone (`address`); one may be tried again after `retry_after` seconds."""

    what: str
    retry_after: float


def _account(value: str) -> str:
    """How a network address, email or phone is kept in the rate windows: hashed."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def count_signup(
    session: Session, slug: str, client: str, addresses: Sequence[str | None]
) -> TooMany | None:
    """Count a signup on `/join/<slug>` from `client` for these emails and phones against the
    page's limits, in a short transaction of its own (its rows are locked until it ends, so
    every process serving the page counts together); None when it is within them. Every try
    counts, whether or not its signup is then recorded."""
    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).one()
    limits = campaign_spec(campaign).signup.limits
    forget_idle(session, "signup client")
    forget_idle(session, "signup address")
    account = _account(client)
    wait = admit(
        session, "signup client", account, requests=limits.per_client, window=CLIENT_WINDOW
    )
    if wait:
        return TooMany("client", wait)
    for address in sorted({a for a in addresses if a}):
        wait = admit(
            session,
            "signup address",
            _account(address),
            requests=limits.per_address,
            window=ADDRESS_WINDOW,
        )
        if wait:
            return TooMany("address", wait)
    return None


def sign_up(
    session: Session,
    slug: str,
    values: Mapping[str, Any],
    code: str,
    *,
    client: str,
    public_url: str,
    now: datetime,
) -> None:
    """A signup on the campaign's `/join/<slug>` page from `client` (its network address),
    counted already (`count_signup`), crediting the creator whose source code it gives: its
    lead (`record_signups`) with the consents it asks for pending, the requests to confirm
    them, and its signup event, which the rules then follow up. A bad email or phone raises
    `ContactError`.

    It need not take turns with other changes (`store.db.transaction`): the rows it adds are
    its person's, whom `record_signups` locks, so the page never waits behind a drain or an
    import."""
    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).one()
    spec = campaign_spec(campaign)
    code = code.strip().upper()[:32]
    member_id = _member_with_source_code(session, campaign.id, code) if code else None
    said = consent_wording(spec)
    recorded = {
        **values,
        CONSENT_WORDING: {"email": said["email"], "sms": said["sms"]},
        CONSENT_ORIGIN: client,
    }
    signup = CampaignSignup(
        campaign.id, recorded, code or None, f"join:{slug}", member_id, confirmed=False
    )
    (contact_id,) = record_signups(session, [signup], now=now)
    if isinstance(contact_id, ContactError):
        raise contact_id
    if contact_id is None:
        return
    consent = values.get("consent") or {}
    wanted = {
        "email": values.get("email") if consent.get("email") else None,
        "sms": values.get("phone") if consent.get("sms") else None,
    }
    ask_to_confirm(session, contact_id, campaign, wanted, public_url=public_url, now=now)
    contact = {**values, "source_code": code or None, "confirmed": False}
    event = new_event(
        source="web",
        external_id=uuid.uuid4().hex,
        type="signup",
        occurred_at=now,
        received_at=now,
        campaign_id=campaign.id,
        member_id=member_id,
        contact_id=contact_id,
        payload={"form": f"/join/{slug}", "contact": contact},
    )
    store_events(session, [event])


def consent_wording(spec: CampaignSpec) -> dict[str, str]:
    """What the signup page's consent boxes say, word for word: the page shows these and each
    consent record keeps them. `*_label` and `*_terms` are the parts the page sets apart;
    `email` and `sms` the whole of each (with the privacy policy's address)."""
    signup = spec.signup
    words = {
        "email_label": f"Email me about {signup.email_about}.",
        "email_terms": "We'll email you a link to confirm first. Unsubscribe any time.",
        "sms_label": f"Text me from {spec.sms_program}.",
        "sms_terms": (
            f"By checking this box, you agree to receive recurring automated text messages "
            f"from {spec.sms_program} at the number you gave; we'll text you to confirm "
            f"first. Consent is not a condition of signing up. "
            f"{signup.message_frequency.rstrip('.')}. Msg & data rates may apply. Reply HELP "
            "for help, STOP to cancel."
        ),
    }
    privacy = f" Privacy policy: {signup.privacy_url}" if signup.privacy_url else ""
    words["email"] = f"{words['email_label']} {words['email_terms']}"
    words["sms"] = f"{words['sms_label']} {words['sms_terms']}{privacy}"
    return words


def _member_with_source_code(session: Session, campaign_id: int | None, code: str) -> int | None:
    """The roster member of the campaign whose promo code this is, if any."""
    return session.exec(
        select(RosterMember.id).where(
            RosterMember.campaign_id == campaign_id, RosterMember.source_code == code
        )
    ).first()

"""Syncing leads: each campaign destination's queued messages, drained in the destination's
batch size, within its rate limit, through its connector.

The connector for a destination comes from its type's entry in `integrations.destinations`, its
settings (credentials and API URLs, from the environment) and the campaign file (batch size,
rate, options). A remote account's rate limit is shared through the store by every process
syncing to it (`tasks.rate_limits`), so workers on many machines stay within it together; a
process keeps its side of each limit between passes. A destination's batches go several at
once (`in_flight`), since a remote's answers take longer than Rally's own work on a batch.
"""

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
from pydantic import ValidationError
from sqlalchemy import Engine, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from tenacity.wait import wait_base

from config.campaign import CampaignSpec, Destination
from config.errors import RallyError
from config.settings import Settings
from integrations.crm import Connector, ConnectorSettings, Lead, RateLimit
from integrations.destinations import DESTINATIONS, DestinationType, Wiring
from integrations.errors import (
    IntegrationError,
    PermanentError,
    TransientError,
    UnavailableError,
)
from integrations.http import client_or_own
from integrations.lead_files import consent_status
from store.audit import Change, record
from store.db import transaction
from store.models import Campaign, OutboxMessage, OutboxStatus
from tasks import progress
from tasks.drain import Answer, Delivered, DrainReport, Handler, Sender, drain
from tasks.leads.contacts import consents
from tasks.leads.records import (
    CHANNEL,
    FORGET,
    consent_of,
    destination_key,
    lead_for,
    load_people,
    remote_id_at,
)
from tasks.outbox import Claimed
from tasks.rate_limits import SharedRateLimit
from tasks.webhooks.events import Event, emit, iso, listening

R = TypeVar("R", bound=tuple[int, float] | None)
_limits: dict[tuple[str, str, str], RateLimit] = {}  # (store, type, account) -> its limit
_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class NotConfigured(RallyError):
    """A destination lacks a credential or option it needs."""


def rate_limit(
    account: str, destination: Destination, default: tuple[int, float], engine: Engine | None
) -> RateLimit:
    """The limit of one remote account (from the campaign file, else the API's documented one),
    shared through `engine`'s store (this process's own without one) and kept for the life of
    the process. Credentials are per system, not per campaign, so every campaign's destination
    of one type shares the account's one budget."""
    rate = rate_of(destination, default)
    if engine is None:
        return RateLimit(*rate)
    key = (str(engine.url), destination.type, account)
    limit = _limits.get(key)
    if limit is None or (limit.requests, limit.per) != rate:
        limit = _limits[key] = SharedRateLimit(engine, destination.type, account, *rate)
    return limit


LATENCY = 1.0  # seconds: a slow answer from an API across the internet, for `in_flight`
MOST_IN_FLIGHT = 10


def rate_of(destination: Destination, default: R) -> tuple[int, float] | R:
    """The destination's rate from its campaign file, else `default` (its API's own)."""
    if destination.rate is not None:
        return (destination.rate.requests, destination.rate.per_seconds)
    return default


def in_flight(destination: Destination, rate: tuple[int, float] | None) -> int:
    """How many calls to a destination go at once: as its campaign file says, else as many as
    keep its rate limit busy while each answer takes `LATENCY` (HubSpot's 100 per 10 s: 10;
    Action Network's 4 a second: 4), at most `MOST_IN_FLIGHT`; one for a file."""
    if destination.in_flight is not None:
        return destination.in_flight
    rate = rate_of(destination, rate)
    if rate is None:
        return 1
    requests, per = rate
    return max(1, min(MOST_IN_FLIGHT, math.ceil(requests / per * LATENCY)))


def release_limits(engine: Engine) -> None:
    """Give back the slots this process holds on `engine`'s store that it did not spend, so
    other processes need not wait for them to expire."""
    for (store, _, _), limit in list(_limits.items()):
        if store == str(engine.url):
            limit.release()


def connector_for(
    destination: Destination,
    campaign: Campaign,
    settings: Settings,
    client: httpx.Client,
    *,
    engine: Engine | None = None,
) -> Connector:
    """The connector for one of a campaign's destinations, within the account's rate limit
    shared through `engine`'s store; `NotConfigured` names what is missing."""
    kind = DESTINATIONS.get(destination.type)
    if kind is None:
        raise NotConfigured(f"destination {destination.name}: unknown type {destination.type!r}")
    options = dict(destination.options)
    if destination.batch_size:
        options["batch_size"] = destination.batch_size
    account = _account(kind, destination)
    credentials = _credentials(kind, destination, settings)
    wiring = Wiring(
        name=destination.name,
        options=options,
        client=client,
        limit=rate_limit(account, destination, kind.rate, engine) if kind.rate else None,
        exports=settings.exports / campaign.slug,
    )
    try:
        return kind.connect(wiring, credentials)
    except ValueError as exc:  # a connector refusing its options
        raise NotConfigured(f"destination {destination.name}: {exc}") from None


def _account(kind: DestinationType, destination: Destination) -> str:
    """Which remote account the destination reaches, when its options say ("" when the type
    has one account for all)."""
    if kind.account_option is None:
        return ""
    account = destination.options.get(kind.account_option)
    if not account:
        raise NotConfigured(
            f"destination {destination.name}: options.{kind.account_option} is not set"
        )
    return str(account)


def _credentials(
    kind: DestinationType, destination: Destination, settings: Settings
) -> ConnectorSettings:
    """The settings of the destination's type, every required one set."""
    try:
        credentials = settings.section(kind.settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = kind.settings.variable(str(error["loc"][0]))
        raise NotConfigured(f"destination {destination.name}: {variable}: {error['msg']}") from None
    missing = credentials.missing()
    if missing:
        raise NotConfigured(f"destination {destination.name}: set {missing[0]} to sync leads to it")
    return credentials


def deliverer(
    engine: Engine, connector: Connector, destination: Destination, campaign: str
) -> Callable[[list[Claimed]], Mapping[int, Answer]]:
    """Reads the people of a claimed batch as they are now and hands them to the connector;
    two messages for one person in a batch send them once. A person's subscription status at
    the remote, when it answers with one, goes with the remote id (`Delivered`). Erasures go
    first: a remote that stops the pass (its login refused, say) does so before any upsert has
    gone, so no answer an upsert brought back is dropped with the batch (an erasure asked
    again is harmless: a remote finds the person already gone)."""

    def deliver(rows: list[Claimed]) -> dict[int, Answer]:
        upserts = [r for r in rows if r.payload.get("action") != FORGET]
        erasures = [r for r in rows if r.payload.get("action") == FORGET]
        with transaction(engine, write=False) as session:
            people = load_people(session, {int(r.subject_id) for r in upserts})
            known = {r.id: remote_id_at(session, r.destination, r.subject_id) for r in erasures}
        results = {row.id or 0: erase_there(row, known[row.id]) for row in erasures}
        leads: dict[int, Lead] = {}
        for row in upserts:
            person = people.get(int(row.subject_id))
            if person is None or person.contact.erased_at is not None:
                results[row.id or 0] = PermanentError("the person was forgotten")
            elif not (person.contact.email or person.contact.phone):
                results[row.id or 0] = PermanentError("no email or phone to sync")
            elif person.contact.id not in leads:
                leads[person.contact.id] = lead_for(
                    person, destination, campaign, row.idempotency_key
                )
        if leads:
            outcomes = {o.key: o for o in connector.upsert(list(leads.values()))}
            for row in upserts:
                lead = leads.get(int(row.subject_id))
                if lead is None or row.id in results:
                    continue
                outcome = outcomes.get(lead.key)
                if outcome is None:
                    results[row.id or 0] = TransientError(f"{destination.name}: no answer")
                elif outcome.error is not None or not outcome.subscriptions:
                    results[row.id or 0] = outcome.error or outcome.remote_id
                else:
                    results[row.id or 0] = Delivered(outcome.remote_id, outcome.subscriptions)
        return results

    def erase_there(row: Claimed, remote_id: str | None) -> Answer:
        """Delete the person at the remote by the newest id it gave them. With none, an upsert
        of theirs was on its way when they were forgotten and brought no id back: refused, or
        its answer lost, so the remote may hold them; staff are told, not left believing
        they are gone."""
        if remote_id is None:
            return PermanentError(
                f"{destination.name} gave contact {row.subject_id} no id: the upsert on its "
                "way when they were forgotten brought none back; if it took them, delete "
                f"them in {destination.name} by hand"
            )
        try:
            connector.forget(remote_id)
        except UnavailableError:
            raise
        except IntegrationError as exc:
            return exc
        return remote_id

    return deliver


def subscriptions_noted(destination: Destination, campaign_id: int) -> Handler:
    """What a destination's answers mean beyond the sync: each lead it took is `lead.synced`
    to the campaign's webhooks (the batch's events together); where the remote holds a
    person's subscription as other than Rally sent it (Rally's consent, granted as subscribed,
    revoked as unsubscribed; none sends nothing), an audit entry says so. The remote's status
    is what the sync record keeps (`remote_state`), so Rally never shows someone as subscribed
    there who is not."""

    def sent(session: Session, rows: list[Claimed], at: datetime) -> None:
        if listening(session, campaign_id, "lead.synced"):
            synced = [
                synced_event(row, destination, at)
                for row in rows
                if row.payload.get("action") != FORGET
            ]
            emit(session, campaign_id, synced, at=at)
        there = {int(r.subject_id): r.remote_state for r in rows if r.remote_state}
        if not there:
            return
        on_record = consents(session, there)
        record(
            session,
            [
                change
                for contact_id, state in sorted(there.items())
                for channel, status in sorted(state.items())
                if (change := _differs(destination, contact_id, channel, status, on_record))
            ],
        )

    return Handler(sent=sent, take_turns=False)


def synced_event(row: Claimed, destination: Destination, at: datetime) -> Event:
    """`lead.synced`: the person of a sync message is at the destination now."""
    data = {"lead": int(row.subject_id), "destination": destination.name}
    data |= {"type": destination.type, "remote_id": row.remote_id, "at": iso(at)}
    key = f"lead:{row.subject_id}:synced:{row.id}"
    return Event("lead.synced", key, f"lead:{row.subject_id}", "leads", data)


def _differs(
    destination: Destination,
    contact_id: int,
    channel: str,
    status: str,
    consents: Mapping[tuple[int, str], str],
) -> Change | None:
    """The audit entry for a status there other than the one Rally sent, if it is."""
    sent_as = consent_status(consent_of(consents.get((contact_id, channel))))
    if not sent_as or status == sent_as:
        return None
    summary = (
        f"contact {contact_id}: {destination.name} ({destination.type}) holds their {channel} "
        f"as {status}, not {sent_as} as Rally sent it; Rally records {status} there"
    )
    details = {
        "destination": destination.name,
        "channel": channel,
        "sent": sent_as,
        "there": status,
    }
    return Change("rally", "lead.subscription_differs", "contact", contact_id, summary, details)


def waiting(engine: Engine, key: str, now: datetime) -> int:
    """How many of a destination's messages are due now."""
    with transaction(engine, write=False) as session:
        return int(
            session.execute(
                sa_select(func.count()).where(
                    col(OutboxMessage.channel) == CHANNEL,
                    col(OutboxMessage.destination) == key,
                    col(OutboxMessage.status) == OutboxStatus.PENDING,
                    col(OutboxMessage.available_at) <= now,
                )
            ).scalar_one()
        )


def sync_leads(
    engine: Engine,
    settings: Settings,
    *,
    now: Callable[[], datetime],
    campaign: str | None = None,
    destination: str | None = None,
    client: httpx.Client | None = None,
    limit: int | None = None,
    wait: wait_base | None = None,
) -> dict[str, DrainReport]:
    """Drain every enabled destination (of one campaign, or one destination by name), as
    `"<campaign>/<destination>"` -> what happened. A destination that is not configured is
    reported and its leads wait; the others go on."""
    rows = campaigns(engine, campaign)
    reports: dict[str, DrainReport] = {}
    named = False  # whether any campaign has the destination asked for
    with client_or_own(client, timeout=_TIMEOUT) as http:
        try:
            for row in rows:
                for dest in CampaignSpec.model_validate(row.spec).destinations:
                    named = named or dest.name == destination
                    if not dest.enabled or (destination and dest.name != destination):
                        continue
                    report = _sync_destination(
                        engine, settings, row, dest, http, now=now, limit=limit, wait=wait
                    )
                    if report is not None:
                        reports[f"{row.slug}/{dest.name}"] = report
                    release_limits(engine)  # its last calls' answers, before the next one's
        finally:
            release_limits(engine)
    if destination and not named:
        raise RallyError(f"no destination {destination!r} in any campaign")
    return reports


def campaigns(engine: Engine, slug: str | None) -> list[Campaign]:
    """Every campaign, or the one named (which must exist)."""
    with transaction(engine, write=False) as session:
        query = select(Campaign).order_by(col(Campaign.slug))
        if slug:
            query = query.where(Campaign.slug == slug)
        campaigns = list(session.exec(query))
    if slug and not campaigns:
        raise RallyError(f"no campaign {slug!r}; `rally campaign list` shows them")
    return campaigns


def _sync_destination(
    engine: Engine,
    settings: Settings,
    campaign: Campaign,
    destination: Destination,
    client: httpx.Client,
    *,
    now: Callable[[], datetime],
    limit: int | None,
    wait: wait_base | None,
) -> DrainReport | None:
    """Drain one destination of a campaign. One that is not configured is reported only when
    leads wait for it (None otherwise)."""
    label = f"{campaign.slug}/{destination.name}"
    key = destination_key(campaign.id or 0, destination.name)
    try:
        connector = connector_for(destination, campaign, settings, client, engine=engine)
    except NotConfigured as exc:
        if waiting(engine, key, now()):
            return DrainReport(errors=[str(exc)], stopped=str(exc))
        return None
    total = waiting(engine, key, now())

    def tell(report: DrainReport) -> None:
        done = report.sent + report.dead + report.retrying
        progress.report(f"leads to {label}", min(done, total), total)

    return drain(
        engine,
        channel=CHANNEL,
        destination=key,
        sender=Sender(deliverer(engine, connector, destination, campaign.slug)),
        handler=subscriptions_noted(destination, campaign.id or 0),
        batch=connector.batch_size,
        lanes=in_flight(destination, DESTINATIONS[destination.type].rate),
        now=now,
        limit=limit,
        lease=timedelta(seconds=settings.outbox_lease_seconds),
        wait=wait,
        progress=tell,
    )

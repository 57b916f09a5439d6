"""Syncing leads: each campaign destination's queued messages, drained in the destination's
batch size, within its rate limit, through its connector.

The connector for a destination comes from its type, the settings (credentials and API URLs,
from the environment) and the campaign file (batch size, rate, options). A process keeps one
rate limit per remote account, so successive passes of `rally serve` share one budget.
"""

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any

import httpx
from sqlalchemy import Engine, func
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from tenacity.wait import wait_base

from config.campaign import CampaignSpec, Destination
from config.errors import RallyError
from config.settings import Settings
from integrations.crm import Connector, Lead, RateLimit
from integrations.errors import (
    IntegrationError,
    PermanentError,
    TransientError,
    UnavailableError,
)
from integrations.lead_files import FileExport
from store.db import transaction
from store.models import Campaign, OutboxMessage, OutboxStatus
from tasks import progress
from tasks.leads.records import CHANNEL, FORGET, destination_key, lead_for, load_people
from tasks.outbox import DrainReport, drain_batches

_limits: dict[tuple[str, str], RateLimit] = {}  # (type, account) -> its limit


class NotConfigured(RallyError):
    """A destination lacks a credential or option it needs."""


def rate_limit(account: str, destination: Destination, default: tuple[int, float]) -> RateLimit:
    """The limit of one remote account (from the campaign file, else the API's documented one),
    kept for the life of the process. Credentials are per system, not per campaign, so every
    campaign's destination of one type shares the account's one budget."""
    rate = default
    if destination.rate is not None:
        rate = (destination.rate.requests, destination.rate.per_seconds)
    limit = _limits.get((destination.type, account))
    if limit is None or (limit.requests, limit.per) != rate:
        limit = _limits[(destination.type, account)] = RateLimit(*rate)
    return limit


def _secret(value: Any, variable: str, destination: Destination) -> str:
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value or "")
    if not text:
        raise NotConfigured(f"destination {destination.name}: set {variable} to sync leads to it")
    return str(text)


def connector_for(
    destination: Destination,
    campaign: Campaign,
    settings: Settings,
    client: httpx.Client,
) -> Connector:
    """The connector for one of a campaign's destinations; `NotConfigured` names what is
    missing."""
    kind = destination.type
    if kind in ("csv", "jsonl"):
        path = settings.exports / campaign.slug / f"{destination.name}.{kind}"
        return FileExport(
            path, name=destination.name, format=kind, batch_size=destination.batch_size or 0
        )
    module = import_module(f"integrations.{kind.replace('webhook', 'lead_webhook')}")
    options = dict(destination.options)
    account = str(options.get("url", "")) if kind == "webhook" else ""
    limit = rate_limit(account, destination, module.RATE)
    if destination.batch_size:
        options["batch_size"] = destination.batch_size
    common: dict[str, Any] = {"name": destination.name, "limit": limit, "options": options}
    if kind == "webhook":
        url = options.get("url")
        if not url:
            raise NotConfigured(f"destination {destination.name}: options.url is not set")
        secret = _secret(settings.lead_webhook_secret, "RALLY_LEAD_WEBHOOK_SECRET", destination)
        return module.LeadWebhook(
            client,
            name=destination.name,
            url=str(url),
            secret=secret,
            limit=limit,
            batch_size=destination.batch_size or 0,
        )
    try:
        if kind == "hubspot":
            token = _secret(settings.hubspot_token, "RALLY_HUBSPOT_TOKEN", destination)
            return module.HubSpot(client, api_url=settings.hubspot_api_url, token=token, **common)
        if kind == "action_network":
            token = _secret(
                settings.action_network_token, "RALLY_ACTION_NETWORK_TOKEN", destination
            )
            return module.ActionNetwork(
                client, api_url=settings.action_network_api_url, token=token, **common
            )
        if kind == "mobilize":
            token = _secret(settings.mobilize_token, "RALLY_MOBILIZE_TOKEN", destination)
            return module.Mobilize(client, api_url=settings.mobilize_api_url, token=token, **common)
        if kind == "nationbuilder":
            url = _secret(
                settings.nationbuilder_api_url, "RALLY_NATIONBUILDER_API_URL", destination
            )
            token = _secret(settings.nationbuilder_token, "RALLY_NATIONBUILDER_TOKEN", destination)
            return module.NationBuilder(client, api_url=url, token=token, **common)
        if kind == "ngpvan":
            app = _secret(settings.ngpvan_app_name, "RALLY_NGPVAN_APP_NAME", destination)
            api_key = _secret(settings.ngpvan_api_key, "RALLY_NGPVAN_API_KEY", destination)
            return module.NgpVan(
                client,
                api_url=settings.ngpvan_api_url,
                app_name=app,
                api_key=api_key,
                mode=settings.ngpvan_mode,
                **common,
            )
    except ValueError as exc:  # a connector refusing its options
        raise NotConfigured(f"destination {destination.name}: {exc}") from None
    raise NotConfigured(f"destination {destination.name}: unknown type {kind!r}")


def deliverer(
    engine: Engine, connector: Connector, destination: Destination, campaign: str
) -> Callable[[list[OutboxMessage]], Mapping[int, str | IntegrationError | None]]:
    """Reads the people of a claimed batch as they are now and hands them to the connector;
    two messages for one person in a batch send them once."""

    def deliver(rows: list[OutboxMessage]) -> dict[int, str | IntegrationError | None]:
        results: dict[int, str | IntegrationError | None] = {}
        upserts = [r for r in rows if r.payload.get("action") != FORGET]
        with transaction(engine, write=False) as session:
            people = load_people(session, {int(r.subject_id) for r in upserts})
        leads: dict[int, Lead] = {}
        for row in upserts:
            person = people.get(int(row.subject_id))
            if person is None or person.contact.erased_at is not None:
                results[row.id or 0] = PermanentError("the person was forgotten")
            elif not (person.contact.email or person.contact.phone):
                results[row.id or 0] = PermanentError("no email or phone to sync")
            elif person.contact.id not in leads:
                leads[person.contact.id or 0] = lead_for(
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
                else:
                    results[row.id or 0] = outcome.error or outcome.remote_id
        for row in rows:
            if row.payload.get("action") == FORGET:
                try:
                    connector.forget(str(row.payload.get("remote_id")))
                    results[row.id or 0] = row.payload.get("remote_id")
                except UnavailableError:
                    raise
                except IntegrationError as exc:
                    results[row.id or 0] = exc
        return results

    return deliver


def waiting(engine: Engine, key: str, now: datetime) -> int:
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
    with transaction(engine, write=False) as session:
        query = select(Campaign).order_by(col(Campaign.slug))
        if campaign:
            query = query.where(Campaign.slug == campaign)
        campaigns = list(session.exec(query))
    if campaign and not campaigns:
        raise RallyError(f"no campaign {campaign!r}; `rally campaign list` shows them")
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0))
    reports: dict[str, DrainReport] = {}
    named = False  # whether any campaign has the destination asked for
    lease = timedelta(seconds=settings.outbox_lease_seconds)
    try:
        for row in campaigns:
            spec = CampaignSpec.model_validate(row.spec)
            for dest in spec.destinations:
                named = named or dest.name == destination
                if not dest.enabled or (destination and dest.name != destination):
                    continue
                label = f"{row.slug}/{dest.name}"
                key = destination_key(row.id or 0, dest.name)
                try:
                    connector = connector_for(dest, row, settings, http)
                except NotConfigured as exc:
                    if waiting(engine, key, now()):
                        reports[label] = DrainReport(errors=[str(exc)], stopped=str(exc))
                    continue
                total = waiting(engine, key, now())

                def tell(report: DrainReport, label: str = label, total: int = total) -> None:
                    done = report.sent + report.dead + report.retrying
                    progress.report(f"leads to {label}", min(done, total), total)

                reports[label] = drain_batches(
                    engine,
                    channel=CHANNEL,
                    destination=key,
                    deliver=deliverer(engine, connector, dest, row.slug),
                    batch=connector.batch_size,
                    now=now,
                    limit=limit,
                    lease=lease,
                    wait=wait,
                    progress=tell,
                )
    finally:
        if own:
            http.close()
    if destination and not named:
        raise RallyError(f"no destination {destination!r} in any campaign")
    return reports

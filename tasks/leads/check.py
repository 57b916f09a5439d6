"""Checking a campaign's destinations before leads go to them: each one's settings, its
credentials (one read through its connector that changes nothing) and whatever the remote must
already hold (HubSpot's contact properties), creating what is missing when asked. A destination
that fails its check is named with the reason; the others are still checked."""

from dataclasses import dataclass, field

import httpx
from sqlalchemy import Engine

from config.campaign import CampaignSpec
from config.settings import Settings
from integrations.errors import IntegrationError
from integrations.http import client_or_own
from tasks.leads.sync import NotConfigured, campaigns, connector_for, release_limits

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@dataclass
class DestinationCheck:
    """What the check of one destination found (see `integrations.crm.Readiness`); a disabled
    destination is not checked."""

    destination: str
    type: str
    enabled: bool = True
    verified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not (self.missing or self.problems)


def check_destinations(
    engine: Engine,
    settings: Settings,
    slug: str,
    *,
    create_missing: bool = False,
    client: httpx.Client | None = None,
) -> list[DestinationCheck]:
    """Check each of the campaign's destinations, in the campaign file's order, within each
    account's shared rate limit."""
    [campaign] = campaigns(engine, slug)
    found = []
    with client_or_own(client, timeout=_TIMEOUT) as http:
        try:
            for destination in CampaignSpec.model_validate(campaign.spec).destinations:
                checked = DestinationCheck(destination.name, destination.type)
                found.append(checked)
                if not destination.enabled:
                    checked.enabled = False
                    continue
                try:
                    connector = connector_for(destination, campaign, settings, http, engine=engine)
                    readiness = connector.check(
                        create_missing=create_missing,
                        fields=sorted(set(destination.mapping.values())),
                    )
                except (NotConfigured, IntegrationError) as exc:
                    checked.problems.append(str(exc))
                    continue
                checked.verified = list(readiness.verified)
                checked.missing = list(readiness.missing)
                checked.created = list(readiness.created)
                checked.problems = list(readiness.problems)
        finally:
            release_limits(engine)
    return found

"""Every type of lead destination a campaign can name, and how its connector is built: one
entry per type, giving the connector, the settings it reads (a `ConnectorSettings` whose
fields are the constructor's keyword arguments: which are secret, which required, and under
which `RALLY_*` variable), and the API's documented rate limit.

An API's connector is built as `Connector(client, name=..., limit=..., options=...,
**settings.arguments())`; a file export writes under the campaign's export folder.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from integrations import action_network, hubspot, lead_webhook, mobilize, nationbuilder, ngpvan
from integrations.action_network import ActionNetwork, ActionNetworkSettings
from integrations.crm import Connector, ConnectorSettings, RateLimit
from integrations.hubspot import HubSpot, HubSpotSettings
from integrations.lead_files import FileExport
from integrations.lead_webhook import LeadWebhook, LeadWebhookSettings
from integrations.mobilize import Mobilize, MobilizeSettings
from integrations.nationbuilder import NationBuilder, NationBuilderSettings
from integrations.ngpvan import NgpVan, NgpVanSettings


@dataclass(frozen=True)
class Wiring:
    """What a connector is given for one destination of one campaign."""

    name: str
    options: Mapping[str, Any]
    client: httpx.Client
    limit: RateLimit | None
    exports: Path  # the campaign's folder for file exports


class DestinationType(Protocol):
    """How one type of destination is built. `account_option` names the option that tells
    one remote account from another when it is per destination (a webhook's URL); otherwise
    every destination of the type shares one account, and one rate limit."""

    @property
    def settings(self) -> type[ConnectorSettings]: ...

    @property
    def rate(self) -> tuple[int, float] | None: ...

    @property
    def account_option(self) -> str | None: ...

    @property
    def needs(self) -> tuple[str, ...]:
        """The options a destination of this type must give (checked when a campaign is
        applied, so a missing one is named before any lead waits for it)."""
        ...

    def connect(self, wiring: Wiring, settings: ConnectorSettings) -> Connector:
        """The connector; a `ValueError` says what the destination's options lack."""
        ...


@dataclass(frozen=True)
class Api:
    """A remote API reached over HTTP, within `rate` (requests, per seconds)."""

    connector: Callable[..., Connector]
    settings: type[ConnectorSettings]
    rate: tuple[int, float]
    account_option: str | None = None
    needs: tuple[str, ...] = ()

    def connect(self, wiring: Wiring, settings: ConnectorSettings) -> Connector:
        """The connector with its settings as keyword arguments."""
        return self.connector(
            wiring.client,
            name=wiring.name,
            limit=wiring.limit,
            options=wiring.options,
            **settings.arguments(),
        )


@dataclass(frozen=True)
class Export:
    """A file per destination in the campaign's export folder; nothing to configure."""

    format: Literal["csv", "jsonl"]
    settings: type[ConnectorSettings] = ConnectorSettings
    rate: None = None
    account_option: None = None
    needs: tuple[str, ...] = ()

    def connect(self, wiring: Wiring, settings: ConnectorSettings) -> Connector:
        """The export to `<exports>/<name>.<format>`."""
        path = wiring.exports / f"{wiring.name}.{self.format}"
        return FileExport(path, name=wiring.name, format=self.format, options=wiring.options)


DESTINATIONS: Mapping[str, DestinationType] = {
    "csv": Export("csv"),
    "jsonl": Export("jsonl"),
    "webhook": Api(
        LeadWebhook, LeadWebhookSettings, lead_webhook.RATE, account_option="url", needs=("url",)
    ),
    "action_network": Api(ActionNetwork, ActionNetworkSettings, action_network.RATE),
    "hubspot": Api(HubSpot, HubSpotSettings, hubspot.RATE),
    "mobilize": Api(
        Mobilize,
        MobilizeSettings,
        mobilize.RATE,
        needs=("organization_id", "event_id", "timeslot_ids"),
    ),
    "nationbuilder": Api(NationBuilder, NationBuilderSettings, nationbuilder.RATE),
    "ngpvan": Api(NgpVan, NgpVanSettings, ngpvan.RATE),
}

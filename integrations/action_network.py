"""Leads into an Action Network group through its OSDI API v2 (HAL+JSON): one `POST
{api_url}/api/v2/people/` per person (the person signup helper), with the group's API key in
the `OSDI-API-Token` header. Action Network matches the person it already has by email, then by
phone, and updates them, or else creates them; either way it answers 200 with the person, whose
`action_network:` identifier is the remote id.

What is sent under `person`: `given_name`, `family_name`, the email in `email_addresses`, the
phone in `phone_numbers` as a `Mobile` number, the postal code in `postal_addresses` (country
US) and the custom fields as `custom_fields`; the tags go beside it as `add_tags`. A consent is
sent as the email's or the phone's `status` only when Rally has one on record: granted as
`subscribed`, revoked as `unsubscribed`. With none, a person Action Network already has keeps
their status, and a new one gets its defaults: subscribed to email, not to texts. Fields Rally
does not have are left out. Tags must already exist in the group: Action Network silently
ignores a tag it does not have.

Action Network answers with the person as it holds them, their statuses included: each
outcome carries them (`subscriptions`), so Rally records what Action Network holds, which
differs from what was sent when it keeps an earlier status (a person sent without one keeps
theirs: unsubscribed, bouncing, a spam complaint ...).

Action Network allows 4 requests a second per key. Refusals come as `{"error": "..."}`: 400 for
a body it will not take (a person with neither an email nor a phone), 401 or 403 for a refused
key, whose text may repeat the key (it is blanked out). There is no API call that deletes a
person, so `forget` raises `PermanentError`. `check` reads the group's tags (`GET
{api_url}/api/v2/tags/`), which takes the key and changes nothing.

Options: `batch_size`, how many leads one `upsert` call takes (each is still its own request).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import Field, SecretStr

from integrations import crm
from integrations.crm import Connector, ConnectorSettings, Lead, Outcome, RateLimit
from integrations.errors import PermanentError, TransientError
from integrations.http import json_object

API_URL = "https://actionnetwork.org"
BATCH_SIZE = 10
RATE = (4, 1.0)
OPTIONS = frozenset({"batch_size"})
PREFIX = "action_network:"


class ActionNetworkSettings(ConnectorSettings):
    """`RALLY_ACTION_NETWORK_*`: the API and the group's API key."""

    env_prefix = "RALLY_ACTION_NETWORK_"
    required = ("token",)

    api_url: str = Field(API_URL, description="Action Network API")
    token: SecretStr = Field(SecretStr(""), description="Action Network API key (OSDI-API-Token)")


class ActionNetwork(Connector):
    """One Action Network group, reached with the group's API key."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        name: str,
        api_url: str = API_URL,
        token: str,
        limit: RateLimit | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        options = crm.check_options(options, OPTIONS, "Action Network")
        self.name = name
        self.batch_size = crm.batch_size(options, BATCH_SIZE)
        self.client = client
        self.limit = limit
        self.where = f"Action Network {name}"
        self.url = api_url.rstrip("/") + "/api/v2/people/"
        self.tags_url = api_url.rstrip("/") + "/api/v2/tags/"
        self._token = token
        self._headers = {"OSDI-API-Token": token, "Accept": "application/hal+json"}

    def upsert(self, leads: Sequence[Lead]) -> list[Outcome]:
        return crm.one_by_one(leads, self._signup)

    def verify(self) -> str:
        """Read the group's tags (the key is the group's: a wrong one is refused)."""
        response = crm.send(
            self.client, self.limit, "GET", self.tags_url, where=self.where, headers=self._headers
        )
        if not response.is_success:
            raise crm.refusal(
                response, self.where, route=True, limit=self.limit, secrets=(self._token,)
            )
        return "API key accepted"

    def forget(self, remote_id: str) -> None:
        raise PermanentError(
            f"{self.where}: Action Network has no call to delete a person; unsubscribe them "
            f"there by hand ({remote_id})"
        )

    @staticmethod
    def body(lead: Lead) -> dict[str, Any]:
        """The person signup helper's body for this lead."""
        person: dict[str, Any] = {}
        if lead.given_name:
            person["given_name"] = lead.given_name
        if lead.family_name:
            person["family_name"] = lead.family_name
        if lead.email:
            email: dict[str, Any] = {"address": lead.email}
            if lead.email_consent is not None:
                email["status"] = _status(lead.email_consent)
            person["email_addresses"] = [email]
        if lead.phone:
            phone: dict[str, Any] = {"number": lead.phone, "number_type": "Mobile"}
            if lead.sms_consent is not None:
                phone["status"] = _status(lead.sms_consent)
            person["phone_numbers"] = [phone]
        if lead.postal_code:
            person["postal_addresses"] = [{"postal_code": lead.postal_code, "country": "US"}]
        if lead.custom_fields:
            person["custom_fields"] = dict(lead.custom_fields)
        body: dict[str, Any] = {"person": person}
        if lead.tags:
            body["add_tags"] = list(lead.tags)
        return body

    def _signup(self, lead: Lead) -> Outcome:
        response = crm.send(
            self.client,
            self.limit,
            "POST",
            self.url,
            where=self.where,
            json=self.body(lead),
            headers=self._headers,
        )
        if not response.is_success:
            return crm.refused(
                lead.key,
                crm.refusal(
                    response, self.where, route=True, limit=self.limit, secrets=(self._token,)
                ),
            )
        person = json_object(response)
        identifiers = person.get("identifiers")
        ours = [
            i
            for i in (identifiers if isinstance(identifiers, list) else [])
            if isinstance(i, str) and i.startswith(PREFIX)
        ]
        if not ours:
            return Outcome(
                lead.key,
                error=TransientError(f"{self.where}: answered without an {PREFIX} identifier"),
            )
        return Outcome(lead.key, remote_id=ours[0], subscriptions=subscriptions(person))


def subscriptions(person: Mapping[str, Any]) -> dict[str, str]:
    """The person's email and mobile subscription statuses as Action Network holds them (the
    primary address's and number's, else the first's)."""
    found = {}
    for channel, field in (("email", "email_addresses"), ("sms", "phone_numbers")):
        entries = [e for e in person.get(field) or [] if isinstance(e, dict)]
        entry = next((e for e in entries if e.get("primary")), entries[0] if entries else {})
        status = entry.get("status")
        if isinstance(status, str) and status and len(status) <= 40 and status.isprintable():
            found[channel] = status  # a word or two as Action Network names them, kept as said
    return found


def _status(consent: bool) -> str:
    return "subscribed" if consent else "unsubscribed"

"""Leads into NGP VAN or EveryAction through the VAN API v4: one `POST
{api_url}/v4/people/findOrCreate` per person, with HTTP Basic auth (the application name, and the
API key joined to the database mode by `|`: 0 for MyVoters, 1 for MyCampaign). VAN matches the
person it already has and answers 200, or stores a new one and answers 201; either way the
answer's `vanId` is the remote id.

What is sent: `firstName`, `lastName`, the email in `emails` (with `isSubscribed`), the phone in
`phones` as a cell (`phoneType` "C", with `phoneOptInStatus` "I" or "O"), the postal code in
`addresses` as `zipOrPostalCode`. A consent is sent only when Rally has one on record: granted as
subscribed / opted in, revoked as unsubscribed / opted out, none leaving VAN's own status alone.
Custom fields and tags are not sent: VAN takes custom fields by numeric field and group ids, and
tags are activist codes, applied by a separate call.

VAN needs one of its match combinations to find a person (an email; or first name, last name and
phone); below that it stores a new record every time, so every sync would add a duplicate. A
lead without an email and without a first name, a last name and a phone is therefore never sent:
its outcome is a `PermanentError`.

VAN's rate limits depend on the API key's tier and are not published as one number; `RATE` is a
conservative 10 requests a second. The one option, `batch_size` (default `BATCH_SIZE`), is how
many leads one `upsert` takes. Refusals come as `{"errors": [{"code", "text", "properties"}]}`
(400 `INVALID_PARAMETER` for a field it rejects); 401 means the credentials are refused. VAN has
no API call that deletes a person, so `forget` raises `PermanentError`. `check` reads the API
key's own profile (`GET {api_url}/v4/apiKeyProfiles`).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import Field, SecretStr

from integrations import crm
from integrations.crm import Connector, ConnectorSettings, Lead, Outcome, RateLimit
from integrations.errors import IntegrationError, PermanentError, TransientError
from integrations.http import json_object

API_URL = "https://api.securevan.com"
BATCH_SIZE = 20
RATE = (10, 1.0)
MODES = (0, 1)
OPTIONS = frozenset({"batch_size"})


class NgpVanSettings(ConnectorSettings):
    """`RALLY_NGPVAN_*`: the API, the application and its key, and which database."""

    env_prefix = "RALLY_NGPVAN_"
    required = ("app_name", "api_key")

    api_url: str = Field(API_URL, description="NGP VAN API")
    app_name: str = Field("", description="NGP VAN application name")
    api_key: SecretStr = Field(SecretStr(""), description="NGP VAN API key")
    mode: int = Field(1, description="NGP VAN database: 0 MyVoters, 1 MyCampaign")


class NgpVan(Connector):
    """One VAN committee or EveryAction database, reached with one application's API key."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        name: str,
        api_url: str = API_URL,
        app_name: str,
        api_key: str,
        mode: int = 1,
        limit: RateLimit | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError("the NGP VAN mode is 0 (MyVoters) or 1 (MyCampaign)")
        options = crm.check_options(options, OPTIONS, "NGP VAN")
        self.name = name
        self.batch_size = crm.batch_size(options, BATCH_SIZE)
        self.client = client
        self.limit = limit
        self.where = f"NGP VAN {name}"
        self.url = api_url.rstrip("/") + "/v4/people/findOrCreate"
        self.profiles_url = api_url.rstrip("/") + "/v4/apiKeyProfiles"
        self._api_key = api_key
        self._auth = (app_name, f"{api_key}|{mode}")

    def upsert(self, leads: Sequence[Lead]) -> list[Outcome]:
        return crm.one_by_one(leads, self._find_or_create)

    def verify(self) -> str:
        """Read the API key's own profile."""
        response = crm.send(
            self.client,
            self.limit,
            "GET",
            self.profiles_url,
            where=self.where,
            auth=self._auth,
            headers={"Accept": "application/json"},
        )
        if not response.is_success:
            raise self._refusal(response, json_object(response))
        return "API key accepted"

    def forget(self, remote_id: str) -> None:
        raise PermanentError(
            "NGP VAN has no call to delete a person; delete VAN ID "
            f"{remote_id} in VAN itself, or ask NGP VAN support to"
        )

    @staticmethod
    def matchable(lead: Lead) -> bool:
        """Whether VAN can match this lead rather than store a duplicate."""
        return bool(lead.email or (lead.given_name and lead.family_name and lead.phone))

    @staticmethod
    def person(lead: Lead) -> dict[str, Any]:
        """The findOrCreate body for this lead."""
        person: dict[str, Any] = {}
        if lead.given_name:
            person["firstName"] = lead.given_name
        if lead.family_name:
            person["lastName"] = lead.family_name
        if lead.email:
            email: dict[str, Any] = {"email": lead.email}
            if lead.email_consent is not None:
                email["isSubscribed"] = lead.email_consent
            person["emails"] = [email]
        if lead.phone:
            phone = {"phoneNumber": lead.phone, "phoneType": "C"}
            if lead.sms_consent is not None:
                phone["phoneOptInStatus"] = "I" if lead.sms_consent else "O"
            person["phones"] = [phone]
        if lead.postal_code:
            person["addresses"] = [{"zipOrPostalCode": lead.postal_code}]
        return person

    def _find_or_create(self, lead: Lead) -> Outcome:
        if not self.matchable(lead):
            return Outcome(
                lead.key,
                error=PermanentError(
                    f"{self.where}: not enough to match (an email, or a first name, last name "
                    "and phone); VAN would create a duplicate"
                ),
            )
        response = crm.send(
            self.client,
            self.limit,
            "POST",
            self.url,
            where=self.where,
            json=self.person(lead),
            auth=self._auth,
            headers={"Accept": "application/json"},
        )
        answer = json_object(response)
        if not response.is_success:
            return crm.refused(lead.key, self._refusal(response, answer))
        van_id = answer.get("vanId")
        if not van_id:
            return Outcome(
                lead.key, error=TransientError(f"{self.where}: answered without a vanId")
            )
        return Outcome(lead.key, remote_id=str(van_id))

    def _refusal(self, response: httpx.Response, answer: dict[str, Any]) -> IntegrationError:
        return crm.refusal(
            response,
            self.where,
            _message(answer),
            route=True,  # neither call names a record in its URL
            limit=self.limit,
            secrets=(self._api_key,),
        )


def _message(answer: dict[str, Any]) -> str | None:
    """VAN's words for a refusal: the first error's text, code and the properties it names."""
    errors = answer.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None
    first = errors[0]
    text = str(first.get("text") or first.get("code") or "")
    if not text:
        return None
    details = [str(first["code"])] if first.get("code") else []
    properties = first.get("properties")
    if isinstance(properties, list) and properties:
        details.append(", ".join(str(p) for p in properties))
    return f"{text} [{'; '.join(details)}]" if details else text

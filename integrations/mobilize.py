"""Leads into a Mobilize event as sign-ups: one `POST
{api_url}/v1/organizations/{organization_id}/events/{event_id}/attendances` per person, with a
Bearer token. Mobilize matches the person by email (creating them, or updating the rest of their
fields) and signs them up for each timeslot given, once per person and timeslot: a repeat
updates the sign-up rather than adding another. It answers 201 with `data`, the attendances, one
per timeslot; the remote id is the person's id (`data[0].person.id`), the same for every
timeslot and every repeat.

What is sent: `person` with `given_name`, `family_name`, `email_address`, `phone_number` (the
empty string when Rally has none, as Mobilize asks) and `postal_code`; `timeslots`; `referrer`,
the lead's UTM tags; and `sms_opt_in` and `transactional_sms_opt_in`, `OPT_IN` only for SMS
consent granted and otherwise `UNSPECIFIED`, which leaves whatever Mobilize has alone. Mobilize
takes no opt-out here, so a revoked consent cannot be passed on; it is never sent as an opt-in,
and the transactional opt-in, which Mobilize would otherwise assume, is not given either.
Mobilize needs an email: a lead without one is not sent, its outcome a `PermanentError`. A name
or postal code Rally lacks is left out, and Mobilize refuses the person for it.

Mobilize allows 5 writes a second and answers 429 above it. Refusals come as `{"data": null,
"error": {...}}`, the error an object of field errors (`{"person": {"email_address": ["Enter a
valid email address."]}}`) or a `detail`. 403 means the token is refused or the organization has
not enabled the write endpoints. An event, organization or timeslot Mobilize does not know (404,
or a 400 naming them) is the destination's fault rather than the person's, so it is raised as
`UnavailableError` like a refused token. Mobilize has no API call that deletes a person, so
`forget` raises `PermanentError`. `check` tries the token on the organization's people list
(`GET {api_url}/v1/organizations/{organization_id}/people`), asking only for people changed from
now on.

Options: `organization_id`, `event_id` and `timeslot_ids` (a list), all required, and
`batch_size`, how many leads one `upsert` call takes (each is still its own request).
"""

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import Field, SecretStr

from integrations import crm
from integrations.crm import Connector, ConnectorSettings, Lead, Outcome, RateLimit
from integrations.errors import IntegrationError, PermanentError, TransientError, UnavailableError
from integrations.http import json_object

API_URL = "https://api.mobilize.us"
BATCH_SIZE = 10
RATE = (5, 1.0)
REQUIRED = ("organization_id", "event_id", "timeslot_ids")
OPTIONS = frozenset({*REQUIRED, "batch_size"})
REFERRER = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "url")
DESTINATION_FIELDS = frozenset(
    {"organization", "organization_id", "event", "event_id", "timeslots", "timeslot_id"}
)


class MobilizeSettings(ConnectorSettings):
    """`RALLY_MOBILIZE_*`: the API and the organization's API token."""

    env_prefix = "RALLY_MOBILIZE_"
    required = ("token",)

    api_url: str = Field(API_URL, description="Mobilize API")
    token: SecretStr = Field(SecretStr(""), description="Mobilize API token")


class Mobilize(Connector):
    """One event's timeslots in one Mobilize organization, reached with one API token."""

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
        missing = [o for o in REQUIRED if (options or {}).get(o) in (None, "", [], ())]
        if missing:
            raise ValueError(f"a Mobilize destination needs options: {', '.join(missing)}")
        options = crm.check_options(options, OPTIONS, "Mobilize")
        timeslots = options["timeslot_ids"]
        if not isinstance(timeslots, (list, tuple)):
            raise ValueError("the Mobilize option timeslot_ids is a list of timeslot ids")
        self.organization_id = _whole(options["organization_id"], "organization_id")
        self.event_id = _whole(options["event_id"], "event_id")
        self.timeslot_ids = [_whole(t, "timeslot_ids") for t in timeslots]
        self.name = name
        self.batch_size = crm.batch_size(options, BATCH_SIZE)
        self.client = client
        self.limit = limit
        self.where = f"Mobilize {name}"
        organization = f"{api_url.rstrip('/')}/v1/organizations/{self.organization_id}"
        self.url = f"{organization}/events/{self.event_id}/attendances"
        self.people_url = f"{organization}/people"
        self._token = token
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def upsert(self, leads: Sequence[Lead]) -> list[Outcome]:
        return crm.one_by_one(leads, self._attend)

    def verify(self) -> str:
        """List the organization's people changed from now on (the list needs the token, and
        asking for the newest keeps everyone's data where it is)."""
        response = crm.send(
            self.client,
            self.limit,
            "GET",
            self.people_url,
            where=self.where,
            params={"updated_since": str(int(time.time())), "per_page": "1"},
            headers=self._headers,
        )
        if not response.is_success:
            raise self._refusal(response, json_object(response))
        return "token accepted"

    def forget(self, remote_id: str) -> None:
        raise PermanentError(
            f"{self.where}: Mobilize has no call to delete a person; remove person {remote_id} "
            "in Mobilize by hand"
        )

    def body(self, lead: Lead) -> dict[str, Any]:
        """The attendance request for this lead (who has an email)."""
        person: dict[str, Any] = {"email_address": lead.email, "phone_number": lead.phone or ""}
        for name in ("given_name", "family_name", "postal_code"):
            value = getattr(lead, name)
            if value:
                person[name] = value
        opt_in = "OPT_IN" if lead.sms_consent is True else "UNSPECIFIED"
        body: dict[str, Any] = {
            "person": person,
            "sms_opt_in": opt_in,
            "transactional_sms_opt_in": opt_in,
            "timeslots": [{"timeslot_id": t} for t in self.timeslot_ids],
        }
        referrer = {k: lead.utm[k] for k in REFERRER if lead.utm.get(k)}
        if referrer:
            body["referrer"] = referrer
        return body

    def _attend(self, lead: Lead) -> Outcome:
        if not lead.email:
            return Outcome(
                lead.key,
                error=PermanentError(
                    f"{self.where}: no email address: Mobilize signs people up by email"
                ),
            )
        response = crm.send(
            self.client,
            self.limit,
            "POST",
            self.url,
            where=self.where,
            json=self.body(lead),
            headers=self._headers,
        )
        answer = json_object(response)
        if not response.is_success:
            return crm.refused(lead.key, self._refusal(response, answer))
        data = answer.get("data")
        first = data[0] if isinstance(data, list) and data else data
        person = first.get("person") if isinstance(first, dict) else None
        person_id = person.get("id") if isinstance(person, dict) else None
        if person_id is None:
            return Outcome(
                lead.key, error=TransientError(f"{self.where}: answered without a person id")
            )
        return Outcome(lead.key, remote_id=str(person_id))

    def _refusal(self, response: httpx.Response, answer: dict[str, Any]) -> IntegrationError:
        error = answer.get("error", answer)
        message = "; ".join(_words(error)) or None
        refusal = crm.refusal(
            response, self.where, message, route=True, limit=self.limit, secrets=(self._token,)
        )
        status = response.status_code
        if status == 404 or (
            status == 400 and isinstance(error, dict) and DESTINATION_FIELDS & set(error)
        ):
            return UnavailableError(
                f"{refusal}; check the destination's organization_id, event_id and timeslot_ids"
            )
        return refusal


def _whole(value: Any, option: str) -> int:
    """An id from the campaign file: a whole number, or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"the Mobilize option {option} takes whole-number ids, not {value!r}")


def _words(error: Any, path: str = "") -> list[str]:
    """Mobilize's field errors as `person.email_address: Enter a valid email address.`."""
    if isinstance(error, dict):
        return [
            word for key, value in error.items() for word in _words(value, _within(path, str(key)))
        ]
    if isinstance(error, list):
        return [word for item in error for word in _words(item, path)]
    if error is None or error == "":
        return []
    return [f"{path}: {error}" if path else str(error)]


def _within(path: str, key: str) -> str:
    if key in ("detail", "non_field_errors") or key.isdigit():
        return path
    return f"{path}.{key}" if path else key

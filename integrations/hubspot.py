"""Leads into HubSpot as contacts through CRM v3: one `POST {api_url}/crm/v3/objects/contacts/
batch/upsert` per batch of at most 100, matched by email (`idProperty: "email"`), with a private
app's Bearer token. HubSpot answers 200 when every input went in and 207 when some did not: then
`errors[]` names the failed inputs by their email in `context.ids`. A result's `id` is the
contact's HubSpot id, the remote id.

What is sent as properties: `email`, `firstname`, `lastname`, `phone`, `zip`; the custom fields
(already under HubSpot's names); the tags joined with ";" (a multiple checkbox property, which
takes the whole set) under the `tags_property` option (default `rally_tags`); the consents as
"granted" or "revoked" under the `email_consent_property` and `sms_consent_property` options
(HubSpot's own opt-out is not writable this way), left out when Rally has none on record; and
where the lead came from (`SOURCE_PROPERTIES`). Rally's fields win over a custom field of the same
name, so a mapping cannot change the email or a consent. Fields Rally lacks are left out, never
sent empty (an empty string would clear them). Every property must already exist in the account:
HubSpot refuses an input with one it does not have.

A lead without an email is not sent (its outcome is a `PermanentError`); a second lead with the
same email as another in the batch waits for a later batch, as HubSpot refuses a batch that names
a contact twice. A lead HubSpot's answer does not mention gets a `TransientError`.

HubSpot allows 100 requests per 10 seconds on the smaller plans, shared by every app on the
account. Rally's own limit keeps its calls within that; when other apps have spent part of the
budget, the 429 that follows pauses the limit for its Retry-After (else its `per`), and without
a Retry-After the error asks to wait for the `X-HubSpot-RateLimit-Interval-Milliseconds`.
A `Remaining: 0` alone does not pause: a client at full pace sees it on most answers, and the
window frees a slot as soon as its oldest call leaves it. `forget` is a GDPR delete of the
contact.

Options: `batch_size` (at most, and by default, `BATCH_SIZE`), `tags_property`,
`email_consent_property`, `sms_consent_property`.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from integrations import crm
from integrations.crm import ConnectorSettings, Lead, Outcome, RateLimit
from integrations.errors import IntegrationError, PermanentError, TransientError
from integrations.http import json_object

BATCH_SIZE = 100
RATE = (100, 10.0)
OPTIONS = frozenset(
    {"batch_size", "tags_property", "email_consent_property", "sms_consent_property"}
)
SOURCE_PROPERTIES = {
    "source_code": "rally_source_code",
    "first_source_code": "rally_first_source_code",
    "creator": "rally_creator",
    "campaign": "rally_campaign",
}


class HubSpotSettings(ConnectorSettings):
    """`RALLY_HUBSPOT_*`: the account's API and its private app token."""

    model_config = SettingsConfigDict(env_prefix="RALLY_HUBSPOT_")
    required = ("token",)

    api_url: str = Field("https://api.hubapi.com", description="HubSpot API")
    token: SecretStr = Field(SecretStr(""), description="HubSpot private app token")


class HubSpot:
    """One HubSpot account, reached with one private app token."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        name: str,
        api_url: str,
        token: str,
        limit: RateLimit | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        options = crm.check_options(options, OPTIONS, "HubSpot")
        self.name = name
        self.batch_size = max(1, min(crm.batch_size(options, BATCH_SIZE), BATCH_SIZE))
        self.client = client
        self.limit = limit
        self.tags_property = str(options.get("tags_property") or "rally_tags")
        self.email_consent_property = str(
            options.get("email_consent_property") or "rally_email_consent"
        )
        self.sms_consent_property = str(options.get("sms_consent_property") or "rally_sms_consent")
        self.where = f"HubSpot {name}"
        self._base = api_url.rstrip("/") + "/crm/v3/objects/contacts"
        self._token = token
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def upsert(self, leads: Sequence[Lead]) -> list[Outcome]:
        """Create or update the leads with an email in one call; one outcome per lead."""
        if len(leads) > BATCH_SIZE:
            raise ValueError(f"HubSpot takes at most {BATCH_SIZE} contacts per call")
        held: dict[str, IntegrationError] = {}
        sending: dict[str, Lead] = {}
        for lead in leads:
            if not lead.email:
                held[lead.key] = PermanentError(
                    f"{self.where}: no email address: HubSpot upserts contacts by email"
                )
            elif lead.email.lower() in sending:
                held[lead.key] = TransientError(
                    f"{self.where}: another lead in this batch has the same email"
                )
            else:
                sending[lead.email.lower()] = lead
        answer: dict[str, Any] = {}
        if sending:
            inputs = [
                {"id": lead.email, "idProperty": "email", "properties": self.properties(lead)}
                for lead in sending.values()
            ]
            response = self._call("POST", f"{self._base}/batch/upsert", json={"inputs": inputs})
            if not response.is_success:
                raise self._refusal(response, route=True)
            answer = json_object(response)
        done, failed = self._results(answer), self._errors(answer)
        outcomes = []
        for lead in leads:
            email = (lead.email or "").lower()
            if lead.key in held:
                outcomes.append(Outcome(lead.key, error=held[lead.key]))
            elif email in done:
                outcomes.append(Outcome(lead.key, remote_id=done[email]))
            elif email in failed:
                outcomes.append(Outcome(lead.key, error=failed[email]))
            else:
                missing = TransientError(f"{self.where}: not in HubSpot's answer")
                outcomes.append(Outcome(lead.key, error=missing))
        return outcomes

    def forget(self, remote_id: str) -> None:
        """GDPR-delete the contact; one that is already gone is fine. The call names the contact
        in its body, not its URL, so a 404 is the contact's own only when HubSpot says so
        (`OBJECT_NOT_FOUND`); any other 404 is the route's."""
        response = self._call("POST", f"{self._base}/gdpr-delete", json={"objectId": remote_id})
        if response.is_success or _category(response) == "OBJECT_NOT_FOUND":
            return
        raise self._refusal(response, route=True)

    def properties(self, lead: Lead) -> dict[str, str]:
        """The contact's properties for this lead."""
        properties = {
            name: _text(value)
            for name, value in lead.custom_fields.items()
            if value is not None and value != ""
        }
        fields: dict[str, str | None] = {
            "email": lead.email,
            "firstname": lead.given_name,
            "lastname": lead.family_name,
            "phone": lead.phone,
            "zip": lead.postal_code,
            self.tags_property: ";".join(lead.tags),
            self.email_consent_property: _consent(lead.email_consent),
            self.sms_consent_property: _consent(lead.sms_consent),
        }
        fields.update({name: getattr(lead, field) for field, name in SOURCE_PROPERTIES.items()})
        properties.update({name: value for name, value in fields.items() if value})
        return properties

    def _results(self, answer: Mapping[str, Any]) -> dict[str, str]:
        """The contacts HubSpot took, by email (lowercase): their ids."""
        done: dict[str, str] = {}
        for result in _dicts(answer.get("results")):
            properties = result.get("properties")
            email = properties.get("email") if isinstance(properties, dict) else None
            if isinstance(email, str) and result.get("id"):
                done[email.lower()] = str(result["id"])
        return done

    def _errors(self, answer: Mapping[str, Any]) -> dict[str, IntegrationError]:
        """The inputs HubSpot refused, by email (lowercase): their errors, in HubSpot's words."""
        failed: dict[str, IntegrationError] = {}
        for error in _dicts(answer.get("errors")):
            context = error.get("context")
            ids = context.get("ids") if isinstance(context, dict) else None
            text = self._scrub(str(error.get("message") or "refused"))
            category = error.get("category")
            detail = f"{self.where}: {text}" + (f" ({category})" if category else "")
            for email in ids if isinstance(ids, list) else []:
                failed[str(email).lower()] = PermanentError(detail)
        return failed

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return crm.send(
            self.client, self.limit, method, url, where=self.where, headers=self._headers, **kwargs
        )

    def _refusal(self, response: httpx.Response, *, route: bool) -> IntegrationError:
        """`crm.refusal` with HubSpot's category beside its message; a 429 without Retry-After
        asks to wait for the rate limit's interval (and the limit pauses for its own `per`)."""
        body = json_object(response)
        message, category = body.get("message"), _category(response)
        if isinstance(message, str) and message and category:
            message = f"{message} ({category})"
        error = crm.refusal(
            response,
            self.where,
            message if isinstance(message, str) else None,
            route=route,
            limit=self.limit,
            secrets=(self._token,),
        )
        wait = _interval(response)
        unsaid = isinstance(error, TransientError) and error.retry_after is None
        if response.status_code == 429 and wait and unsaid:
            return TransientError(str(error), retry_after=wait)
        return error

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[secret]") if self._token else text


def _category(response: httpx.Response) -> str | None:
    """HubSpot's name for the kind of error (`VALIDATION_ERROR`, `OBJECT_NOT_FOUND` ...)."""
    body = json_object(response)
    category = body.get("category") or body.get("errorType")
    return category if isinstance(category, str) else None


def _consent(consent: bool | None) -> str | None:
    return None if consent is None else "granted" if consent else "revoked"


def _text(value: Any) -> str:
    """A property value as HubSpot takes it: text, with booleans as "true" and "false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _interval(response: httpx.Response) -> float | None:
    """The rate limit's window in seconds, from X-HubSpot-RateLimit-Interval-Milliseconds."""
    try:
        return float(response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"]) / 1000
    except (KeyError, ValueError):
        return None

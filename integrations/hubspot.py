"""Leads into HubSpot as contacts through CRM v3: one `POST {api_url}/crm/v3/objects/contacts/
batch/upsert` per batch of at most 100, matched by email (`idProperty: "email"`), with a private
app's Bearer token. HubSpot answers 200 when every input went in and 207 when some did not: then
`errors[]` names the failed inputs by their email in `context.ids`. A result's `id` is the
contact's HubSpot id, the remote id.

What is sent as properties: `email`, `firstname`, `lastname`, `phone`, `zip`; the custom fields
(already under HubSpot's names); the tags joined with ";" under the `tags_property` option
(default `rally_tags`); the consents as "granted" or "revoked" under the `email_consent_property`
and `sms_consent_property` options (HubSpot's own opt-out is not writable this way), left out
when Rally has none on record; and where the lead came from (`SOURCE_PROPERTIES`). Rally's fields
win over a custom field of the same name, so a mapping cannot change the email or a consent.
Fields Rally lacks are left out, never sent empty (an empty string would clear them).

Every property must already exist in the account: HubSpot refuses the whole batch, 400 with a
`PROPERTY_DOESNT_EXIST` for each property it does not have. That is the destination's setup, not
any lead's fault, so it stops the destination (`UnavailableError`) and the leads wait. `check`
reads the account's contact properties (`GET {api_url}/crm/v3/properties/contacts`) and names
each one Rally writes that is missing, or of a type that refuses Rally's values; with
`create_missing` it creates them (`POST` there) in a property group `rally` (made first if
need be): single-line text, the consents a dropdown of "granted" and "revoked". The token then
needs the scopes to read, and to write, contact properties (HubSpot names a missing one).

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

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import httpx
from pydantic import Field, SecretStr

from integrations import crm
from integrations.crm import Connector, ConnectorSettings, Lead, Outcome, RateLimit, Readiness
from integrations.errors import (
    IntegrationError,
    PermanentError,
    TransientError,
    UnavailableError,
)
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
GROUP = {"name": "rally", "label": "Rally", "displayOrder": -1}
CONSENT_VALUES = ("granted", "revoked")
STANDARD = frozenset({"email", "firstname", "lastname", "phone", "zip"})  # every account has them


class HubSpotSettings(ConnectorSettings):
    """`RALLY_HUBSPOT_*`: the account's API and its private app token."""

    env_prefix = "RALLY_HUBSPOT_"
    required = ("token",)

    api_url: str = Field("https://api.hubapi.com", description="HubSpot API")
    token: SecretStr = Field(SecretStr(""), description="HubSpot private app token")


class HubSpot(Connector):
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
        self._properties = api_url.rstrip("/") + "/crm/v3/properties/contacts"
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
                raise self._unusable(response) or self._refusal(response, route=True)
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

    def verify(self) -> str:
        """Read the account's contact properties."""
        self._existing()
        return "token accepted"

    def check(self, *, create_missing: bool = False, fields: Collection[str] = ()) -> Readiness:
        """The token, and each contact property Rally writes (`fields` are the mapping's):
        missing ones named, or created with `create_missing`; existing ones whose type refuses
        Rally's values named as problems."""
        existing = self._existing()
        wanted = self.definitions(fields)
        missing = [name for name in wanted if name not in existing]
        problems = [
            problem
            for name, definition in wanted.items()
            if name in existing and (problem := _refuses(definition, existing[name]))
        ]
        created: list[str] = []
        if missing and create_missing:
            self._ensure_group()
            for name in missing:
                problem = self._create(wanted[name])
                if problem:
                    problems.append(problem)
                else:
                    created.append(name)
            missing = []
        exist = sum(1 for name in wanted if name in existing or name in created)
        verified = f"token accepted; {exist} of the {len(wanted)} properties Rally writes exist"
        if created:
            verified += f", {len(created)} of them created now"
        return Readiness(
            verified=(verified,),
            missing=tuple(_described(wanted[name]) for name in missing),
            created=tuple(created),
            problems=tuple(problems),
        )

    def definitions(self, fields: Collection[str] = ()) -> dict[str, dict[str, Any]]:
        """Each custom contact property Rally writes, as HubSpot's create call takes it: the
        tags, the consents, the source properties, then the mapping's `fields` (HubSpot's own
        standard properties aside)."""
        names = [
            self.tags_property,
            self.email_consent_property,
            self.sms_consent_property,
            *SOURCE_PROPERTIES.values(),
            *sorted(fields),
        ]
        consents = {self.email_consent_property, self.sms_consent_property}
        return {
            name: _definition(name, consent=name in consents)
            for name in dict.fromkeys(names)
            if name not in STANDARD
        }

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

    def _existing(self) -> dict[str, dict[str, Any]]:
        """The account's contact properties by name."""
        response = self._call("GET", self._properties)
        if not response.is_success:
            raise self._refusal(response, route=True)
        return {
            str(p["name"]): p for p in _dicts(json_object(response).get("results")) if p.get("name")
        }

    def _ensure_group(self) -> None:
        """Rally's property group, made unless the account has it."""
        response = self._call("GET", f"{self._properties}/groups/{GROUP['name']}")
        if response.is_success:
            return
        if response.status_code != 404:
            raise self._refusal(response, route=False)
        response = self._call("POST", f"{self._properties}/groups", json=GROUP)
        if not response.is_success and response.status_code != 409:  # made meanwhile: fine
            raise self._refusal(response, route=True)

    def _create(self, definition: dict[str, Any]) -> str | None:
        """Create one property; what HubSpot refused about it, else None (one made meanwhile
        counts as made). A refusal of the whole account is raised."""
        response = self._call("POST", self._properties, json=definition)
        if response.is_success or response.status_code == 409:
            return None
        error = self._refusal(response, route=True)
        if not isinstance(error, PermanentError):
            raise error
        return f"{definition['name']} could not be created: {error}"

    def _unusable(self, response: httpx.Response) -> UnavailableError | None:
        """A batch refused for properties the account lacks: no lead would fare better until
        they are made."""
        body = json_object(response)
        message = body.get("message")
        if response.status_code != 400 or "PROPERTY_DOESNT_EXIST" not in str(message):
            return None
        error = self._refusal(response, route=True)
        return UnavailableError(
            f"{error}; create the properties Rally writes with `rally leads check <campaign> "
            "--create-missing`"
        )

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


def _definition(name: str, *, consent: bool) -> dict[str, Any]:
    """A property to create in Rally's group: single-line text, or for a consent a dropdown of
    its two values."""
    definition: dict[str, Any] = {
        "name": name,
        "label": name.replace("_", " ").capitalize(),
        "description": "Written by Rally's lead sync.",
        "groupName": GROUP["name"],
        "type": "string",
        "fieldType": "text",
    }
    if consent:
        definition.update(
            type="enumeration",
            fieldType="select",
            options=[
                {"label": value.capitalize(), "value": value, "displayOrder": order}
                for order, value in enumerate(CONSENT_VALUES)
            ],
        )
    return definition


def _described(definition: Mapping[str, Any]) -> str:
    """What creating this property would make, for people to read."""
    kind = "single-line text"
    if definition["type"] == "enumeration":
        values = ", ".join(o["value"] for o in definition["options"])
        kind = f"a dropdown of {values}"
    return f"{definition['name']} ({kind}, in the property group {definition['groupName']})"


def _refuses(wanted: Mapping[str, Any], existing: Mapping[str, Any]) -> str | None:
    """Why an existing property would refuse what Rally writes to it, if it would: text goes
    anywhere but into numbers, dates and yes/no; a consent's values must be options of a
    choice property. (A choice property for the tags takes the tags it has options for.)"""
    kind, name = existing.get("type"), wanted["name"]
    values = [o["value"] for o in wanted.get("options", [])]
    if kind == "string":
        return None
    if kind == "enumeration":
        options = {o.get("value") for o in _dicts(existing.get("options"))}
        lacking = [value for value in values if value not in options]
        if lacking:
            return f"{name} is a choice property without the options {', '.join(lacking)}"
        return None
    refused = ", ".join(values) if values else "text"
    return f"{name} is a {kind} property, which refuses Rally's values ({refused})"


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

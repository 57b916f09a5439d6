"""Leads into a NationBuilder nation through its v2 API (JSON:API): one `PATCH
{api_url}/api/v2/signups/push` per person, with a Bearer token. Push matches the person the nation
already has (by `external_id`, which is sent as Rally's key for the person, or by email) and
updates them with 200, or creates them with 201; either way the answer is the signup, whose
`data.id` is the remote id.

What is sent, under `data.attributes` of a `signups` resource: `external_id`, `email`,
`first_name`, `last_name`, `mobile_number`, the postal code as `home_address_attributes.zip`
(which patches the home address, other parts kept), the custom fields as `custom_values`, and the
consents as `email_opt_in` and `mobile_opt_in`: true only for a consent granted, false for one
revoked. NationBuilder opts in a person it creates unless told otherwise, so with no SMS consent
on record `mobile_opt_in` is sent as false (texts need a recorded yes; this may also clear an
opt-in the nation got elsewhere, the safer mistake); with no email consent on record
`email_opt_in` is left out, as email needs only a way to opt out. Fields Rally
does not have are left out, never sent as null. Tags are not sent: v2 tags a signup by a separate
call (`signup_taggings`) per tag.

Options: `batch_size` (default `BATCH_SIZE`) is how many leads one `upsert` takes;
`external_id` (default true) sends Rally's key as `external_id`, so a person matches even
after their email changes; turn it off for a nation whose `external_id` belongs to another system
(push would overwrite it).

The nation allows 250 requests per 10 seconds per token. Every answer carries `RateLimit-Limit`,
`RateLimit-Remaining` and `RateLimit-Reset` (seconds until the window resets; a value that reads
as a Unix time is taken as one); when Remaining reaches 0 the client's limit pauses until the
reset, and a 429 pauses it for its Retry-After. Validation failures come back as 422 with a JSON:API
errors document (`errors[].detail`), other refusals as `{"code", "message"}`; 401 means the token
is refused. `check` reads a page of one signup (`GET {api_url}/api/v2/signups?page[size]=1`).
"""

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from integrations import crm
from integrations.crm import Connector, ConnectorSettings, Lead, Outcome, RateLimit
from integrations.errors import IntegrationError, TransientError
from integrations.http import json_object

JSON_API = "application/vnd.api+json"
BATCH_SIZE = 50
RATE = (250, 10.0)
OPTIONS = frozenset({"batch_size", "external_id"})


class NationBuilderSettings(ConnectorSettings):
    """`RALLY_NATIONBUILDER_*`: the nation's address and an access token."""

    env_prefix = "RALLY_NATIONBUILDER_"
    required = ("api_url", "token")

    api_url: str = Field(
        "", description="Your nation's NationBuilder URL (https://<nation>.nationbuilder.com)"
    )
    token: SecretStr = Field(SecretStr(""), description="NationBuilder OAuth access token")


class NationBuilder(Connector):
    """One nation, reached with one API token."""

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
        options = crm.check_options(options, OPTIONS, "NationBuilder")
        self.name = name
        self.batch_size = crm.batch_size(options, BATCH_SIZE)
        self.client = client
        self.limit = limit
        self.send_external_id = bool(options.get("external_id", True))
        self.where = f"NationBuilder {name}"
        self._base = api_url.rstrip("/") + "/api/v2/signups"
        self._token = token
        self._headers = {  # the v2 API speaks JSON:API, and answers 406 or 415 to plain JSON
            "Authorization": f"Bearer {token}",
            "Accept": JSON_API,
            "Content-Type": JSON_API,
        }

    def upsert(self, leads: Sequence[Lead]) -> list[Outcome]:
        return crm.one_by_one(leads, self._push)

    def verify(self) -> str:
        """Read one signup, the smallest page the token can be tried with."""
        response = self._call("GET", self._base, params={"page[size]": "1"})
        if not response.is_success:
            raise self._refusal(response, route=True)
        return "token accepted"

    def forget(self, remote_id: str) -> None:
        """Delete the signup; one that is already gone is fine."""
        response = self._call("DELETE", f"{self._base}/{quote(remote_id, safe='')}")
        if not response.is_success and response.status_code != 404:
            raise self._refusal(response, route=False)

    def attributes(self, lead: Lead) -> dict[str, Any]:
        """The signup's attributes for this lead."""
        attributes: dict[str, Any] = {}
        if self.send_external_id:
            attributes["external_id"] = lead.key
        fields = {
            "email": lead.email,
            "first_name": lead.given_name,
            "last_name": lead.family_name,
            "mobile_number": lead.phone,
        }
        attributes.update({key: value for key, value in fields.items() if value})
        if lead.postal_code:
            attributes["home_address_attributes"] = {"zip": lead.postal_code}
        if lead.email_consent is not None:
            attributes["email_opt_in"] = lead.email_consent
        if lead.sms_consent is not None or lead.phone:
            attributes["mobile_opt_in"] = bool(lead.sms_consent)
        if lead.custom_fields:
            attributes["custom_values"] = dict(lead.custom_fields)
        return attributes

    def _push(self, lead: Lead) -> Outcome:
        body = {"data": {"type": "signups", "attributes": self.attributes(lead)}}
        response = self._call("PATCH", f"{self._base}/push", content=json.dumps(body).encode())
        if not response.is_success:
            return crm.refused(lead.key, self._refusal(response, route=True))
        data = json_object(response).get("data")
        signup_id = data.get("id") if isinstance(data, dict) else None
        if not signup_id:
            return Outcome(
                lead.key, error=TransientError(f"{self.where}: answered without a signup id")
            )
        return Outcome(lead.key, remote_id=str(signup_id))

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = crm.send(
            self.client, self.limit, method, url, where=self.where, headers=self._headers, **kwargs
        )
        self._follow_budget(response)
        return response

    def _follow_budget(self, response: httpx.Response) -> None:
        """Pause the limit until the window resets once the nation says none are left."""
        if self.limit is None:
            return
        try:
            remaining = int(response.headers["RateLimit-Remaining"])
        except (KeyError, ValueError):
            return
        if remaining > 0:
            return
        try:
            reset = float(response.headers["RateLimit-Reset"])
        except (KeyError, ValueError):
            reset = self.limit.per
        if reset > 1e9:  # a Unix time rather than a number of seconds
            reset -= time.time()
        self.limit.pause(reset)

    def _refusal(self, response: httpx.Response, *, route: bool) -> IntegrationError:
        return crm.refusal(
            response, self.where, route=route, limit=self.limit, secrets=(self._token,)
        )

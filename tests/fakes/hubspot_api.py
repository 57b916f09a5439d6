"""A fake of one HubSpot account's CRM v3 contacts API, with a private app's Bearer token:
`POST /crm/v3/objects/contacts/batch/upsert` (1 to 100 inputs matched by email; 200 when all go
in, else 207 with `errors[]` naming the failed inputs in `context.ids`) and `POST
/crm/v3/objects/contacts/gdpr-delete` (204, or 404 for a contact it does not have).

It checks what HubSpot checks. The batch as a whole is refused with 400 VALIDATION_ERROR when it
is not JSON, has no `inputs` list, has none or more than 100, upserts by a property other than
email, or names a contact twice. One input fails alone when its email does not look like one,
differs from its `email` property, is `reject_email`ed, or when it sets a property the account
does not have (`properties`, else the standard ones Rally writes and any `rally_*`).
A wrong token is 401 INVALID_AUTHENTICATION. Every answer carries `X-HubSpot-RateLimit-Max`,
`-Remaining` and `-Interval-Milliseconds` for the window of `rate`, by default the real 100
requests per 10 seconds; over it, HubSpot's 429 body with a Retry-After.
"""

import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tests.fakes.crm_people import Rejections
from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Remote, Response

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
GDPR_DELETE = "/crm/v3/objects/contacts/gdpr-delete"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PROPERTIES = frozenset({"email", "firstname", "lastname", "phone", "zip"})
MAX_INPUTS = 100


class FakeHubSpot(Rejections, FakeHttpServer):
    """The account's contacts in `contacts` (lowercase email to `{"id", "properties"}`);
    `created` and `updated` count the upserts per email."""

    def __init__(
        self,
        *,
        token: str = "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        rate: tuple[int, float] | None = (100, 10.0),
        sliding: bool = False,
        properties: Iterable[str] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.token = token
        self.properties = set(PROPERTIES if properties is None else properties)
        self.any_rally_property = properties is None
        self.contacts: dict[str, dict[str, Any]] = {}
        self.created: Counter[str] = Counter()
        self.updated: Counter[str] = Counter()
        self.rejected: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last_id = 1000
        self.window = (
            self.rate_limit(rate[0], per=rate[1], sliding=sliding) if rate is not None else None
        )
        self.route("POST", UPSERT, self.upsert)
        self.route("POST", GDPR_DELETE, self.gdpr_delete)

    # -- for tests -----------------------------------------------------------------------------

    def known(self, name: str) -> bool:
        """Whether the account has this contact property: one of `properties`, or by default
        the standard ones and any `rally_*`."""
        return name in self.properties or (self.any_rally_property and name.startswith("rally_"))

    # `reject_email(email, message)` fails that input with `message` until `accept_email(email)`
    reject_email, accept_email = Rejections.reject, Rejections.accept

    def contact(self, email: str) -> dict[str, Any] | None:
        """A copy of the contact with this email, if any."""
        with self._lock:
            found = self.contacts.get(email.lower())
            return None if found is None else {**found, "properties": dict(found["properties"])}

    # -- the API -------------------------------------------------------------------------------

    def upsert(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = request.json
        inputs = body.get("inputs") if isinstance(body, dict) else None
        problem = _batch_problem(inputs)
        if problem is not None:
            return self._headed(invalid(problem))
        started = _now()
        results, errors = [], []
        with self._lock:
            for item in inputs or []:
                email, properties = str(item["id"]), dict(item.get("properties") or {})
                message = self._input_problem(email, properties)
                if message is not None:
                    errors.append(
                        {
                            "status": "error",
                            "category": "VALIDATION_ERROR",
                            "message": message,
                            "context": {"ids": [email]},
                        }
                    )
                else:
                    results.append(self._write(email.lower(), properties))
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": _now(),
        }
        if errors:
            answer.update(numErrors=len(errors), errors=errors)
        return self._headed(Response(207 if errors else 200, json=answer))

    def gdpr_delete(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = request.json
        object_id = body.get("objectId") if isinstance(body, dict) else None
        if not isinstance(object_id, str) or not object_id:
            return self._headed(invalid("Some required fields were not set: [objectId]"))
        with self._lock:
            email = next((e for e, c in self.contacts.items() if c["id"] == object_id), None)
            if email is not None:
                del self.contacts[email]
        if email is None:
            return self._headed(
                hubspot_error(404, "OBJECT_NOT_FOUND", f"Object not found. objectId={object_id}")
            )
        return self._headed(Response(204))

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        response = Response(
            429,
            json={
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "TEN_SECONDLY_ROLLING",
                "groupName": "publicapi:private-app-api-ten-secondly",
            },
            headers={"Retry-After": str(math.ceil(retry_after))},
        )
        return self._headed(response)

    def not_found(self, request: RecordedRequest) -> Response:
        return self._headed(Response(404, body=""))

    def method_not_allowed(self, request: RecordedRequest, allowed: list[str]) -> Response:
        return self._headed(super().method_not_allowed(request, allowed))

    # -- inside --------------------------------------------------------------------------------

    def _refused(self, request: RecordedRequest) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._headed(
                hubspot_error(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication and you can find more details at "
                    "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                )
            )
        if request.json is None:
            return self._headed(invalid("Invalid input JSON on line 1, column 1"))
        return None

    def _input_problem(self, email: str, properties: dict[str, Any]) -> str | None:
        """Why HubSpot refuses this one input, or None (called under the lock)."""
        if not EMAIL.fullmatch(email):
            return property_invalid("email", "INVALID_EMAIL", f"Email address {email} is invalid")
        written = properties.get("email")
        if written is not None and str(written).lower() != email.lower():
            return f"The email property {written!r} does not match the id {email!r}"
        if email.lower() in self.rejected:
            return self.rejected[email.lower()]
        for name in properties:
            if not self.known(name):
                return property_invalid(
                    name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
                )
        return None

    def _write(self, email: str, properties: dict[str, Any]) -> dict[str, Any]:
        """Create or update the contact (under the lock); the result HubSpot answers with."""
        now = _now()
        values = {name: _stored(value) for name, value in properties.items()}
        values["email"] = email
        contact = self.contacts.get(email)
        new = contact is None
        if contact is None:
            self._last_id += 1
            contact = {"id": str(self._last_id), "createdAt": now, "properties": {}}
            self.contacts[email] = contact
            self.created[email] += 1
        else:
            self.updated[email] += 1
        contact["properties"].update(values)
        contact["updatedAt"] = now
        return {
            "id": contact["id"],
            "properties": {
                **values,
                "hs_object_id": contact["id"],
                "createdate": contact["createdAt"],
                "lastmodifieddate": now,
            },
            "createdAt": contact["createdAt"],
            "updatedAt": now,
            "archived": False,
            "new": new,
        }

    def _headed(self, response: Response) -> Response:
        """The answer with HubSpot's rate-limit headers."""
        if self.window is not None:
            response.headers.update(
                {
                    "X-HubSpot-RateLimit-Max": str(self.window.limit),
                    "X-HubSpot-RateLimit-Remaining": str(self.window.remaining()),
                    "X-HubSpot-RateLimit-Interval-Milliseconds": str(
                        round(self.window.window * 1000)
                    ),
                }
            )
        return response


def _batch_problem(inputs: Any) -> str | None:
    """Why HubSpot refuses the batch as a whole, or None."""
    if not isinstance(inputs, list):
        return "Some required fields were not set: [inputs]"
    if not 1 <= len(inputs) <= MAX_INPUTS:
        return f"Batch input must have between 1 and {MAX_INPUTS} inputs, got {len(inputs)}"
    seen: set[str] = set()
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return "Some required fields were not set: [id]"
        if item.get("idProperty") != "email":
            return (
                "Unable to perform update/upsert by non-unique 0-1 property "
                f"{item.get('idProperty')}"
            )
        properties = item.get("properties", {})
        if not isinstance(properties, dict) or any(
            isinstance(v, (dict, list)) for v in properties.values()
        ):
            return "Invalid input JSON: properties must map names to values"
        if item["id"].lower() in seen:
            return f"Duplicate IDs found in batch input: [{item['id']}]"
        seen.add(item["id"].lower())
    return None


def hubspot_error(status: int, category: str, message: str) -> Response:
    return Response(
        status,
        json={
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        },
    )


def invalid(message: str) -> Response:
    return hubspot_error(400, "VALIDATION_ERROR", message)


def property_invalid(name: str, code: str, message: str) -> str:
    """HubSpot's message for a property value it refuses."""
    detail = {
        "isValid": False,
        "message": message,
        "error": code,
        "name": name,
        "localizedErrorMessage": message,
    }
    return f"Property values were not valid: {json.dumps([detail])}"


def _stored(value: Any) -> str:
    """A property value as HubSpot keeps it: text."""
    return value if isinstance(value, str) else json.dumps(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


REMOTE = Remote(
    FakeHubSpot,
    lambda f: {"RALLY_HUBSPOT_API_URL": f.url, "RALLY_HUBSPOT_TOKEN": f.token},
    lambda f: "",
    lambda f, email: email in f.contacts,
)

"""A fake of one HubSpot account's CRM v3 contacts API, with a private app's Bearer token:
`POST /crm/v3/objects/contacts/batch/upsert` (1 to 100 inputs matched by email; 200 when all go
in, else 207 with `errors[]` naming the failed inputs in `context.ids`), `POST
/crm/v3/objects/contacts/gdpr-delete` (204, or 404 OBJECT_NOT_FOUND for a contact it does not
have), and the contact properties API: `GET` and `POST /crm/v3/properties/contacts` (every
property; create one, 201, or 409 OBJECT_ALREADY_EXISTS) and its groups (`GET
.../groups/{name}`, 404 when there is none; `POST .../groups`, 201 or 409).

A new account has HubSpot's own contact properties only (`DEFAULT_PROPERTIES`); `properties`
adds ones made before (a name gives a single-line text property, a dict the property as
created). It checks what HubSpot checks. The batch as a whole is refused with 400
VALIDATION_ERROR when it is not JSON, has no `inputs` list, has none or more than 100, upserts by
a property other than email, names a contact twice, or sets a property the account does not
have or a value a choice property has no option for: then the message lists one detail per
property (`PROPERTY_DOESNT_EXIST`, `INVALID_OPTION`). One input fails alone when its email does
not look like one, differs from its `email` property, or is `reject_email`ed. A property to
create needs a lowercase name, a label, an existing group, and a `type` with a `fieldType` valid
for it (choices with options). A wrong token is 401 INVALID_AUTHENTICATION; with
`schema_writable` off, creating a property or group is 403 MISSING_SCOPES. Every answer carries
`X-HubSpot-RateLimit-Max`, `-Remaining` and `-Interval-Milliseconds` for the window of `rate`, by
default the real 100 requests per 10 seconds; over it, HubSpot's 429 body with a Retry-After.
"""

import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tests.fakes.crm_people import Rejections
from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Remote, Response

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
GDPR_DELETE = "/crm/v3/objects/contacts/gdpr-delete"
PROPERTIES = "/crm/v3/properties/contacts"
GROUPS = PROPERTIES + "/groups"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
NAME = re.compile(r"[a-z][a-z0-9_]*")
MAX_INPUTS = 100
DEFAULT_GROUPS = {
    "contactinformation": "Contact information",
    "emailinformation": "Email information",
    "conversioninformation": "Conversion information",
}
DEFAULT_PROPERTIES = (  # a part of HubSpot's own contact properties: (name, label, type)
    ("email", "Email", "string"),
    ("firstname", "First Name", "string"),
    ("lastname", "Last Name", "string"),
    ("phone", "Phone Number", "string"),
    ("mobilephone", "Mobile Phone Number", "string"),
    ("address", "Street Address", "string"),
    ("city", "City", "string"),
    ("state", "State/Region", "string"),
    ("zip", "Postal Code", "string"),
    ("country", "Country/Region", "string"),
    ("company", "Company Name", "string"),
    ("jobtitle", "Job Title", "string"),
    ("website", "Website URL", "string"),
    ("hs_object_id", "Record ID", "number"),
    ("createdate", "Create Date", "datetime"),
    ("lastmodifieddate", "Last Modified Date", "datetime"),
)
FIELD_TYPES = {  # a property's type -> the fieldTypes HubSpot takes for it
    "bool": {"booleancheckbox", "calculation_equation"},
    "enumeration": {"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "string": {"file", "text", "textarea", "calculation_equation", "html", "phonenumber"},
    "number": {"number", "calculation_equation"},
    "phone_number": {"phonenumber"},
}


class FakeHubSpot(Rejections, FakeHttpServer):
    """The account's contacts in `contacts` (lowercase email to `{"id", "properties"}`);
    `created` and `updated` count the upserts per email."""

    def __init__(
        self,
        *,
        token: str = "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        rate: tuple[int, float] | None = (100, 10.0),
        sliding: bool = False,
        properties: Iterable[str | Mapping[str, Any]] = (),
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.token = token
        self.schema_writable = True
        self.groups = {
            name: _group(name, label, order)
            for order, (name, label) in enumerate(DEFAULT_GROUPS.items())
        }
        self.properties: dict[str, dict[str, Any]] = {}
        for name, label, kind in DEFAULT_PROPERTIES:
            field_type = {"number": "number", "datetime": "date"}.get(kind, "text")
            self._define(_property(name, label, kind, field_type), hubspot=True)
        for made in properties:
            if isinstance(made, str):
                made = _property(made, made, "string", "text")
            self._define(dict(made), hubspot=False)
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
        self.route("GET", PROPERTIES, self.list_properties)
        self.route("POST", PROPERTIES, self.create_property)
        self.route("GET", GROUPS + "/{name}", self.read_group)
        self.route("POST", GROUPS, self.create_group)

    # -- for tests -----------------------------------------------------------------------------

    def property(self, name: str) -> dict[str, Any] | None:
        """A copy of the contact property of this name, if the account has it."""
        with self._lock:
            found = self.properties.get(name)
            return None if found is None else json.loads(json.dumps(found))

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
            details = self._property_problems(inputs or [])
            if details:
                return self._headed(
                    invalid(f"Property values were not valid: {json.dumps(details)}")
                )
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

    def list_properties(self, request: RecordedRequest) -> Response:
        refused = self._refused(request, body=False)
        if refused is not None:
            return refused
        with self._lock:
            results = json.loads(json.dumps(list(self.properties.values())))
        return self._headed(Response(200, json={"results": results}))

    def create_property(self, request: RecordedRequest) -> Response:
        refused = self._refused(request) or self._schema_refused()
        if refused is not None:
            return refused
        body = request.json if isinstance(request.json, dict) else {}
        with self._lock:
            problem = self._definition_problem(body)
            if problem is not None:
                return self._headed(invalid(problem))
            if body["name"] in self.properties:
                return self._headed(
                    hubspot_error(
                        409,
                        "OBJECT_ALREADY_EXISTS",
                        f"Property named '{body['name']}' already exists.",
                    )
                )
            made = self._define(body, hubspot=False)
        return self._headed(Response(201, json=made))

    def read_group(self, request: RecordedRequest) -> Response:
        refused = self._refused(request, body=False)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        with self._lock:
            group = self.groups.get(name)
        if group is None:
            return self._headed(
                hubspot_error(404, "OBJECT_NOT_FOUND", f"Unable to find property group {name}")
            )
        return self._headed(Response(200, json=group))

    def create_group(self, request: RecordedRequest) -> Response:
        refused = self._refused(request) or self._schema_refused()
        if refused is not None:
            return refused
        body = request.json if isinstance(request.json, dict) else {}
        name, label = body.get("name"), body.get("label")
        if not isinstance(name, str) or not NAME.fullmatch(name) or not label:
            return self._headed(invalid("Some required fields were not set: [name, label]"))
        with self._lock:
            if name in self.groups:
                return self._headed(
                    hubspot_error(
                        409, "OBJECT_ALREADY_EXISTS", f"Property group {name} already exists."
                    )
                )
            group = self.groups[name] = _group(name, str(label), body.get("displayOrder", -1))
        return self._headed(Response(201, json=group))

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

    def _refused(self, request: RecordedRequest, *, body: bool = True) -> Response | None:
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
        if body and request.json is None:
            return self._headed(invalid("Invalid input JSON on line 1, column 1"))
        return None

    def _schema_refused(self) -> Response | None:
        """The private app's token lacks the scope to change contact properties."""
        if self.schema_writable:
            return None
        response = hubspot_error(
            403,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call. Read more "
            "about required scopes here: https://developers.hubspot.com/scopes.",
        )
        response.json["errors"] = [
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": ["crm.schemas.contacts.write"]},
            }
        ]
        return self._headed(response)

    def _define(self, definition: dict[str, Any], *, hubspot: bool) -> dict[str, Any]:
        """Add a property to the account (under the lock); as HubSpot answers with it."""
        now = _now()
        made = {
            "updatedAt": now,
            "createdAt": now,
            "name": definition["name"],
            "label": definition["label"],
            "type": definition["type"],
            "fieldType": definition["fieldType"],
            "description": definition.get("description", ""),
            "groupName": definition.get("groupName", "contactinformation"),
            "options": [
                {"hidden": False, "displayOrder": n, **option}
                for n, option in enumerate(definition.get("options") or [])
            ],
            "displayOrder": definition.get("displayOrder", -1),
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": definition.get("hasUniqueValue", False),
            "hidden": definition.get("hidden", False),
            "hubspotDefined": hubspot,
            "modificationMetadata": {
                "archivable": not hubspot,
                "readOnlyDefinition": hubspot,
                "readOnlyValue": False,
            },
            "formField": definition.get("formField", False),
            "archived": False,
        }
        self.properties[made["name"]] = made
        return made

    def _definition_problem(self, body: dict[str, Any]) -> str | None:
        """Why HubSpot refuses to create this property, or None (called under the lock)."""
        lacking = [
            f for f in ("name", "label", "type", "fieldType", "groupName") if not body.get(f)
        ]
        if lacking:
            return f"Some required fields were not set: [{', '.join(lacking)}]"
        if not NAME.fullmatch(str(body["name"])):
            return (
                f"Property name '{body['name']}' is invalid: use lowercase letters, numbers "
                "and underscores, starting with a letter"
            )
        kind, field_type = body["type"], body["fieldType"]
        if field_type not in FIELD_TYPES.get(kind, set()):
            return f"fieldType {field_type} is not valid for a property of type {kind}"
        if body["groupName"] not in self.groups:
            return f"property group {body['groupName']} does not exist"
        options = body.get("options")
        if kind == "enumeration" and (
            not isinstance(options, list)
            or not options
            or not all(isinstance(o, dict) and o.get("label") and "value" in o for o in options)
        ):
            return "Options are required for an enumeration property, each with a label and value"
        return None

    def _property_problems(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """HubSpot's details of every property value in the batch it refuses: one per property
        the account lacks, one per value a choice property has no option for."""
        details: list[dict[str, Any]] = []
        missing: set[str] = set()
        for item in inputs:
            for name, value in (item.get("properties") or {}).items():
                known = self.properties.get(name)
                if known is None:
                    if name not in missing:
                        missing.add(name)
                        details.append(
                            _detail(
                                name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
                            )
                        )
                    continue
                refused = _refused_option(known, value)
                if refused is not None:
                    details.append(_detail(name, "INVALID_OPTION", refused))
        return details

    def _input_problem(self, email: str, properties: dict[str, Any]) -> str | None:
        """Why HubSpot refuses this one input, or None (called under the lock)."""
        if not EMAIL.fullmatch(email):
            return property_invalid("email", "INVALID_EMAIL", f"Email address {email} is invalid")
        written = properties.get("email")
        if written is not None and str(written).lower() != email.lower():
            return f"The email property {written!r} does not match the id {email!r}"
        if email.lower() in self.rejected:
            return self.rejected[email.lower()]
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
    return f"Property values were not valid: {json.dumps([_detail(name, code, message)])}"


def _detail(name: str, code: str, message: str) -> dict[str, Any]:
    return {
        "isValid": False,
        "message": message,
        "error": code,
        "name": name,
        "localizedErrorMessage": message,
    }


def _refused_option(known: dict[str, Any], value: Any) -> str | None:
    """Why a choice (or yes/no) property refuses this value, or None; a multiple checkbox takes
    values joined by ";"."""
    if known["type"] == "bool":
        allowed = ["true", "false"]
    elif known["type"] == "enumeration":
        allowed = [str(o["value"]) for o in known["options"]]
    else:
        return None
    text = _stored(value)
    values = text.split(";") if known["fieldType"] == "checkbox" else [text]
    for one in values:
        if one and one not in allowed:
            return f"{one} was not one of the allowed options: [{', '.join(allowed)}]"
    return None


def _property(name: str, label: str, kind: str, field_type: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": kind,
        "fieldType": field_type,
        "groupName": "contactinformation",
    }


def _group(name: str, label: str, order: Any) -> dict[str, Any]:
    return {"name": name, "label": label, "displayOrder": order, "archived": False}


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

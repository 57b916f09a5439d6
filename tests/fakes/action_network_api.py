"""A fake of one Action Network group's person signup helper: `POST /api/v2/people/` with the
group's key in `OSDI-API-Token` and a JSON body `{"person": {...}, "add_tags": [...]}`; and the
group's tags, `GET /api/v2/tags/`, an OSDI collection (one page, the tags under
`_embedded["osdi:tags"]`).

As Action Network does, it matches the person by email, then by phone, and updates them, or else
creates them, answering 200 with the person as a HAL resource (`identifiers`, the fields, and
`_links`); a number that two records would share, which Action Network moves or merges, is not
modelled. A new person is subscribed to email and unsubscribed from texts unless a status is
posted; a person it already has keeps their statuses unless one is posted. Only `subscribed` and
`unsubscribed` may be posted. Custom fields are merged into the ones the person has. A tag the
group does not have is ignored (and recorded in `ignored_tags`).

Refusals are `{"error": "..."}`: 400 for a body it cannot take (neither an email nor a phone, a
status or number type it does not know, an email that is not one, a person `reject`ed), 401 for
a wrong key (repeating the key it was given, as Action Network does), and, over the rate limit
(by default the real 4 requests a second), 429 with Retry-After.
"""

import math
import re
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tests.fakes.crm_people import Rejections
from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Remote, Response

PATH = "/api/v2/people/"
TAGS = "/api/v2/tags/"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
STATUSES = ("subscribed", "unsubscribed")


class FakeActionNetwork(Rejections, FakeHttpServer):
    """The group's people in `people` (id to resource fields), their tags in `tagged`; `creates`
    and `updates` count the signups per person id."""

    def __init__(
        self,
        *,
        token: str = "an-api-key-7e6d5c4b3a29",
        tags: tuple[str, ...] = ("volunteer", "first-vote-pa-2027"),
        rate: tuple[int, float] | None = (4, 1.0),
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.token = token
        self.tags = set(tags)
        self.people: dict[str, dict[str, Any]] = {}
        self.tagged: dict[str, set[str]] = {}
        self.ignored_tags: list[str] = []
        self.creates: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()
        self.rejected: dict[str, str] = {}
        self._lock = threading.Lock()
        if rate is not None:
            self.rate_limit(rate[0], per=rate[1])
        self.route("POST", PATH, self.signup)
        self.route("GET", TAGS, self.list_tags)

    # -- for tests -----------------------------------------------------------------------------

    def add(self, **person: Any) -> str:
        """A person the group already has, in the resource's shape; their id."""
        with self._lock:
            person_id = str(uuid.uuid4())
            self.people[person_id] = {"custom_fields": {}, **person, "created_date": _now()}
            self.tagged[person_id] = set()
            return person_id

    def person(self, email: str) -> dict[str, Any] | None:
        """A copy of the person with this email, with their `id` and `tags`."""
        with self._lock:
            person_id = self._by_email(email)
            if person_id is None:
                return None
            return {"id": person_id, "tags": set(self.tagged[person_id]), **self.people[person_id]}

    # -- the API -------------------------------------------------------------------------------

    def signup(self, request: RecordedRequest) -> Response:
        key = request.headers.get("osdi-api-token", "")
        if key != self.token:
            return an_error(401, f"API Key invalid or not present {key}".strip())
        body = request.json
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/json") or not isinstance(body, dict):
            return an_error(400, "Request body must be a JSON object")
        person = body.get("person")
        if not isinstance(person, dict):
            return an_error(400, "You must provide a person")
        with self._lock:
            problem = self._problem(person, body.get("add_tags", []))
            if problem is not None:
                return an_error(400, problem)
            email, phone = _email(person), _phone(person)
            person_id = self._by_email(email) or self._by_phone(phone)
            if person_id is None:
                person_id = str(uuid.uuid4())
                self.people[person_id] = {
                    "created_date": _now(),
                    "email_addresses": [],
                    "phone_numbers": [],
                    "custom_fields": {},
                }
                self.tagged[person_id] = set()
                self.creates[person_id] += 1
            else:
                self.updates[person_id] += 1
            self._update(self.people[person_id], person)
            for tag in body.get("add_tags", []):
                if tag in self.tags:
                    self.tagged[person_id].add(tag)
                else:
                    self.ignored_tags.append(tag)
            resource = self.resource(person_id)
        return Response(200, json=resource, headers={"Content-Type": "application/hal+json"})

    def list_tags(self, request: RecordedRequest) -> Response:
        key = request.headers.get("osdi-api-token", "")
        if key != self.token:
            return an_error(401, f"API Key invalid or not present {key}".strip())
        base = f"{self.url}/api/v2/tags"
        tags: list[dict[str, Any]] = [
            {
                "name": name,
                "identifiers": [f"action_network:{_tag_id(name)}"],
                "created_date": "2026-01-05T15:00:00Z",
                "modified_date": "2026-01-05T15:00:00Z",
                "_links": {
                    "self": {"href": f"{base}/{_tag_id(name)}"},
                    "osdi:taggings": {"href": f"{base}/{_tag_id(name)}/taggings"},
                },
            }
            for name in sorted(self.tags)
        ]
        body = {
            "total_pages": 1,
            "per_page": 25,
            "page": 1,
            "total_records": len(tags),
            "_links": {
                "self": {"href": base},
                "osdi:tags": [{"href": f"{base}/{_tag_id(tag['name'])}"} for tag in tags],
            },
            "_embedded": {"osdi:tags": tags},
        }
        return Response(200, json=body, headers={"Content-Type": "application/hal+json"})

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        response = an_error(429, "Too many requests")
        response.headers["Retry-After"] = str(math.ceil(retry_after))
        return response

    # -- inside --------------------------------------------------------------------------------

    def _problem(self, person: dict[str, Any], tags: Any) -> str | None:
        emails, phones = person.get("email_addresses", []), person.get("phone_numbers", [])
        if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
            return "email_addresses must be an array of email address objects"
        if not isinstance(phones, list) or not all(isinstance(p, dict) for p in phones):
            return "phone_numbers must be an array of phone number objects"
        for entry in emails + phones:
            if "status" in entry and entry["status"] not in STATUSES:
                return (
                    f"Status '{entry['status']}' is not valid here: use subscribed or unsubscribed"
                )
        for phone in phones:
            if phone.get("number_type", "Mobile") != "Mobile":
                return f"Number type '{phone['number_type']}' is not valid: use Mobile"
        email = _email(person)
        if email and not EMAIL.fullmatch(email):
            return f"Email address '{email}' is invalid"
        if not email and not _phone(person):
            return "You must specify a valid email address or phone number"
        if email in self.rejected:
            return self.rejected[email]
        if not isinstance(person.get("custom_fields", {}), dict):
            return "custom_fields must be an object"
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return "add_tags must be an array of tag names"
        return None

    def _by_email(self, email: str) -> str | None:
        email = email.strip().lower()
        for person_id, person in self.people.items():
            if email and _email(person) == email:
                return person_id
        return None

    def _by_phone(self, phone: str) -> str | None:
        for person_id, person in self.people.items():
            if phone and _phone(person) == phone:
                return person_id
        return None

    def _update(self, known: dict[str, Any], posted: dict[str, Any]) -> None:
        """Names and the postal address are replaced, custom fields merged; a posted email or
        phone keeps the status it had unless one is posted, and a new one gets the default."""
        for name in ("given_name", "family_name"):
            if posted.get(name):
                known[name] = posted[name]
        for field, default in (
            ("email_addresses", "subscribed"),
            ("phone_numbers", "unsubscribed"),
        ):
            if posted.get(field):
                entry = posted[field][0]
                before = known[field][0] if known.get(field) else {}
                if _key(before) != _key(entry):
                    before = {"status": default}
                known[field] = [{**before, **entry, "primary": True}]
        if posted.get("postal_addresses"):
            known["postal_addresses"] = [{**posted["postal_addresses"][0], "primary": True}]
        known["custom_fields"] = {**known["custom_fields"], **posted.get("custom_fields", {})}
        known["modified_date"] = _now()

    def resource(self, person_id: str) -> dict[str, Any]:
        """The person as Action Network answers with them: a HAL resource."""
        href = f"{self.url}/api/v2/people/{person_id}"
        return {
            "identifiers": [f"action_network:{person_id}"],
            **self.people[person_id],
            "languages_spoken": ["en"],
            "_links": {
                "self": {"href": href},
                "osdi:taggings": {"href": f"{href}/taggings"},
                "curies": [
                    {
                        "name": "osdi",
                        "href": "https://actionnetwork.org/docs/v2/{rel}",
                        "templated": True,
                    }
                ],
            },
        }


def an_error(status: int, message: str) -> Response:
    return Response(status, json={"error": message})


def _email(person: dict[str, Any]) -> str:
    return _key((person.get("email_addresses") or [{}])[0])


def _phone(person: dict[str, Any]) -> str:
    return _key((person.get("phone_numbers") or [{}])[0])


def _key(entry: dict[str, Any]) -> str:
    """What people are matched on: an email address in lower case, or a number's digits with
    the US country code."""
    if "address" in entry:
        return str(entry["address"] or "").strip().lower()
    digits = re.sub(r"\D", "", str(entry.get("number") or ""))
    return "1" + digits if len(digits) == 10 else digits


def _tag_id(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"tag:{name}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


REMOTE = Remote(
    FakeActionNetwork,
    lambda f: {"RALLY_ACTION_NETWORK_API_URL": f.url, "RALLY_ACTION_NETWORK_TOKEN": f.token},
    lambda f: "",
    lambda f, email: f.person(email) is not None,
)

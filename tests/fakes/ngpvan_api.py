"""A fake of the VAN API v4's `POST /v4/people/findOrCreate` for one database: HTTP Basic auth
with the application name and `{api_key}|{mode}`, a JSON person; 200 `{"vanId", "status":
"Matched"}` for a person it matched, 201 `{"vanId", "status": "UnmatchedStored"}` for one it
stored.

It matches as VAN does at its minimum: on an email, or on first name, last name and phone
together. Anything less (a phone alone, names alone) finds nobody, so it stores a new person on
every call: the duplicates a connector must not cause.

Refusals take VAN's shape, `{"errors": [{"code", "text", "properties"?}]}`: 400
`INVALID_PARAMETER` for a field it rejects (an email that is not one, a phone that is not a
number, an unknown phone type or opt-in status, a person `reject`ed), 401 for wrong credentials,
415 for a body that is not JSON, 429 over `rate` (a fixed window, by default 10 requests a
second), with Retry-After.
"""

import base64
import math
import re
import threading
import time
from collections import Counter
from typing import Any

from tests.fakes.crm_people import Rejections
from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Remote, Response

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE_TYPES = frozenset({"H", "W", "C", "M", "F"})
OPT_IN_STATUSES = frozenset({"I", "U", "O"})


class FakeNgpVan(Rejections, FakeHttpServer):
    """The database's people in `people` (vanId to person); `creates` and `updates` count the
    calls that stored or matched each vanId."""

    def __init__(
        self,
        *,
        app_name: str = "rally-test",
        api_key: str = "a1b2c3d4-van-api-key-e5f6a7b8",
        mode: int = 1,
        rate: tuple[int, float] | None = (10, 1.0),
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.app_name, self.api_key, self.mode = app_name, api_key, mode
        self.people: dict[int, dict[str, Any]] = {}
        self.creates: Counter[int] = Counter()
        self.updates: Counter[int] = Counter()
        self.rejected: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last_id = 100_000_000
        if rate is not None:
            self.rate_limit(rate[0], per=rate[1])
        self.route("POST", "/v4/people/findOrCreate", self.find_or_create)
        self.route("GET", "/v4/apiKeyProfiles", self.api_key_profiles)

    # -- for tests -----------------------------------------------------------------------------

    def add(self, person: dict[str, Any]) -> int:
        """A person the database already has; their vanId."""
        with self._lock:
            return self._store(person)

    def person(self, email: str) -> dict[str, Any] | None:
        """A copy of the person with this email, if any."""
        with self._lock:
            van_id = self._with_email(email)
            return _copy(self.people[van_id]) if van_id is not None else None

    # -- the API -------------------------------------------------------------------------------

    def find_or_create(self, request: RecordedRequest) -> Response:
        if _basic_auth(request) != (self.app_name, f"{self.api_key}|{self.mode}"):
            return van_error(401, "UNAUTHORIZED", "Authorization has been denied for this request.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/json":
            return van_error(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"The request entity's media type '{content_type}' is not supported.",
            )
        body = request.json
        if not isinstance(body, dict):
            return van_error(400, "INVALID_PARAMETER", "A person is required.", [])
        problem = self._problem(body)
        if problem is not None:
            return problem
        with self._lock:
            van_id = self._match(body)
            if van_id is None:
                van_id = self._store(body)
                self.creates[van_id] += 1
                return Response(201, json={"vanId": van_id, "status": "UnmatchedStored"})
            self._merge(self.people[van_id], body)
            self.updates[van_id] += 1
        return Response(200, json={"vanId": van_id, "status": "Matched"})

    def api_key_profiles(self, request: RecordedRequest) -> Response:
        """The key's own profile: its database and application, the key itself hashed."""
        if _basic_auth(request) != (self.app_name, f"{self.api_key}|{self.mode}"):
            return van_error(401, "UNAUTHORIZED", "Authorization has been denied for this request.")
        profile = {
            "databaseName": "MyCampaign" if self.mode == 1 else "MyVoters",
            "hashedApiKey": "*" * 8 + self.api_key[-4:],
            "apiKeyTypeName": "Custom Integration",
            "userFirstName": "Rally",
            "userLastName": "Sync",
            "committeeName": "First Vote PA",
            "keyReference": self.api_key[-4:],
        }
        return Response(200, json={"items": [profile], "nextPageLink": None, "count": 1})

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        response = van_error(429, "TOO_MANY_REQUESTS", "API rate limit exceeded.")
        response.headers["Retry-After"] = str(math.ceil(retry_after))
        return response

    # -- inside --------------------------------------------------------------------------------

    def _problem(self, body: dict[str, Any]) -> Response | None:
        for name in ("firstName", "lastName"):
            if name in body and not isinstance(body[name], str):
                return invalid(name, f"{name} must be a string.")
        for name in ("emails", "phones", "addresses"):
            if name in body and not (
                isinstance(body[name], list) and all(isinstance(i, dict) for i in body[name])
            ):
                return invalid(name, f"{name} must be a list of objects.")
        for index, email in enumerate(_items(body, "emails")):
            where = f"emails[{index}]"
            address = email.get("email")
            if not isinstance(address, str) or not EMAIL.fullmatch(address):
                return invalid(f"{where}.email", "Email address is not valid.")
            if "isSubscribed" in email and not isinstance(email["isSubscribed"], bool):
                return invalid(f"{where}.isSubscribed", "isSubscribed must be true or false.")
            with self._lock:
                message = self.rejected.get(address.lower())
            if message is not None:
                return invalid(f"{where}.email", message)
        for index, phone in enumerate(_items(body, "phones")):
            where = f"phones[{index}]"
            digits = re.sub(r"\D", "", str(phone.get("phoneNumber", "")))
            if not 10 <= len(digits) <= 15:
                return invalid(f"{where}.phoneNumber", "Phone number is not valid.")
            if phone.get("phoneType", "H") not in PHONE_TYPES:
                return invalid(f"{where}.phoneType", "Phone type is not valid.")
            if phone.get("phoneOptInStatus", "U") not in OPT_IN_STATUSES:
                return invalid(f"{where}.phoneOptInStatus", "Phone opt-in status is not valid.")
        return None

    def _match(self, body: dict[str, Any]) -> int | None:
        for email in _items(body, "emails"):
            van_id = self._with_email(email["email"])
            if van_id is not None:
                return van_id
        first, last = body.get("firstName"), body.get("lastName")
        if not (first and last):
            return None
        for phone in _items(body, "phones"):
            number = _digits(phone["phoneNumber"])
            for van_id, person in self.people.items():
                if (
                    str(person.get("firstName", "")).lower() == first.lower()
                    and str(person.get("lastName", "")).lower() == last.lower()
                    and any(_digits(p["phoneNumber"]) == number for p in person["phones"])
                ):
                    return van_id
        return None

    def _with_email(self, address: str) -> int | None:
        for van_id, person in self.people.items():
            if any(e["email"].lower() == address.lower() for e in person["emails"]):
                return van_id
        return None

    def _store(self, body: dict[str, Any]) -> int:
        self._last_id += 1
        person = {"vanId": self._last_id, "emails": [], "phones": [], "addresses": []}
        self.people[self._last_id] = person
        self._merge(person, body)
        return self._last_id

    def _merge(self, person: dict[str, Any], body: dict[str, Any]) -> None:
        """Names fill in where missing; emails and phones are added or updated in place (their
        statuses changed only when given); a new postal code is added."""
        for name in ("firstName", "lastName"):
            if body.get(name) and not person.get(name):
                person[name] = body[name]
        for key, same in (("emails", "email"), ("phones", "phoneNumber")):
            for item in _items(body, key):
                known = next((k for k in person[key] if k[same] == item[same]), None)
                if known is None:
                    person[key].append(dict(item))
                else:
                    known.update(item)
        for address in _items(body, "addresses"):
            if address not in person["addresses"]:
                person["addresses"].append(dict(address))


def van_error(status: int, code: str, text: str, properties: list[str] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "text": text}
    if properties is not None:
        error["properties"] = properties
    return Response(status, json={"errors": [error]})


def invalid(property_: str, text: str) -> Response:
    return van_error(400, "INVALID_PARAMETER", text, [property_])


def _items(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key)
    return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []


def _digits(number: Any) -> str:
    return re.sub(r"\D", "", str(number))[-10:]


def _copy(person: dict[str, Any]) -> dict[str, Any]:
    return {k: [dict(i) for i in v] if isinstance(v, list) else v for k, v in person.items()}


def _basic_auth(request: RecordedRequest) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        return None
    return user, password


REMOTE = Remote(
    FakeNgpVan,
    lambda f: {
        "RALLY_NGPVAN_API_URL": f.url,
        "RALLY_NGPVAN_APP_NAME": f.app_name,
        "RALLY_NGPVAN_API_KEY": f.api_key,
        "RALLY_NGPVAN_MODE": str(f.mode),
    },
    lambda f: "",
    lambda f, email: f.person(email) is not None,
)

"""A fake of Mobilize's attendance API for one organization: `POST
/v1/organizations/{organization_id}/events/{event_id}/attendances` with a Bearer token and a JSON
body `{"person": {...}, "sms_opt_in", "transactional_sms_opt_in", "timeslots": [{"timeslot_id"}],
"referrer": {...}}`.

As Mobilize does, it matches the person by email (creating them, or updating their other fields)
and keeps one attendance per person and timeslot: a repeat updates it. It answers 201 with
`{"data": [attendance, ...], "error": null}`, one attendance per timeslot posted, each with the
person. `OPT_IN` opts the person in (`sms_opt_in_status`, `transactional_sms_opt_in_status`);
`UNSPECIFIED` leaves what they have (for a new person, `UNSPECIFIED`; `add` can give one who
texted STOP `OPT_OUT`); no transactional opt-in at all means `OPT_IN`, as Mobilize assumes.

It checks what Mobilize's serializers check and refuses with its shapes, `{"data": null, "error":
{...}}`: 400 with field errors (a required person field missing or blank, where `phone_number`
may be "" but must be there; an email that is not one; an opt-in that is not one of the two
choices; timeslots missing, malformed or not the event's; a person `reject`ed), 403 with a
`detail` for a wrong or missing token, another organization, or `writes_enabled` off, 404 for an
event the organization does not have, 415 for a body that is not JSON, and, over the write limit
(by default the real 5 a second), 429 with Retry-After.
"""

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tests.fakes.crm_people import Rejections
from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Remote, Response

PATH = "/v1/organizations/{organization_id}/events/{event_id}/attendances"
PEOPLE = "/v1/organizations/{organization_id}/people"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PERSON = ("given_name", "family_name", "email_address", "phone_number", "postal_code")
CHOICES = ("OPT_IN", "UNSPECIFIED")
REFERRER = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "url")


class FakeMobilize(Rejections, FakeHttpServer):
    """The organization's people by email in `people`, their sign-ups by (email, timeslot id) in
    `attendances`; `creates` and `updates` count the posts per email, `signups` the attendances
    created per (email, timeslot id)."""

    def __init__(
        self,
        *,
        token: str = "mobilize-api-key-5f4e3d2c1b",
        organization_id: int = 1234,
        events: Mapping[int, Sequence[int]] | None = None,
        rate: tuple[int, float] | None = (5, 1.0),
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.token = token
        self.organization_id = organization_id
        self.events = {e: list(t) for e, t in (events or {7001: (90001, 90002)}).items()}
        self.writes_enabled = True
        self.people: dict[str, dict[str, Any]] = {}
        self.attendances: dict[tuple[str, int], dict[str, Any]] = {}
        self.creates: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()
        self.signups: Counter[tuple[str, int]] = Counter()
        self.rejected: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last_id = 0
        if rate is not None:
            self.rate_limit(rate[0], per=rate[1], applies=lambda r: r.method != "GET")
        self.route("POST", PATH, self.attend)
        self.route("GET", PEOPLE, self.list_people)

    # -- for tests -----------------------------------------------------------------------------

    def add(self, email: str, **fields: Any) -> int:
        """A person Mobilize already has; their id."""
        with self._lock:
            person = self._person(email.lower())
            person.update(fields)
            return int(person["id"])

    def person(self, email: str) -> dict[str, Any] | None:
        with self._lock:
            person = self.people.get(email.lower())
            return dict(person) if person is not None else None

    # -- the API -------------------------------------------------------------------------------

    def attend(self, request: RecordedRequest) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not token:
            return failure(403, {"detail": "Authentication credentials were not provided."})
        if scheme != "Bearer" or token != self.token:
            return failure(403, {"detail": "Invalid token."})
        organization = request.path_params["organization_id"]
        event = request.path_params["event_id"]
        if organization != str(self.organization_id) or not self.writes_enabled:
            return failure(403, {"detail": "You do not have permission to perform this action."})
        if not event.isdigit() or int(event) not in self.events:
            return failure(404, {"detail": "Not found."})
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/json":
            return failure(415, {"detail": f'Unsupported media type "{content_type}" in request.'})
        body = request.json
        if not isinstance(body, dict):
            return failure(400, {"detail": "JSON parse error - expected an object"})
        with self._lock:
            errors = self._errors(body, self.events[int(event)])
            if errors:
                return failure(400, errors)
            return Response(201, json={"data": self._save(body, int(event)), "error": None})

    def list_people(self, request: RecordedRequest) -> Response:
        """The organization's people changed since `updated_since` (a Unix time), a page of
        `per_page` (default 25) at a time; it needs the token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not token:
            return failure(403, {"detail": "Authentication credentials were not provided."})
        if scheme != "Bearer" or token != self.token:
            return failure(403, {"detail": "Invalid token."})
        if request.path_params["organization_id"] != str(self.organization_id):
            return failure(403, {"detail": "You do not have permission to perform this action."})
        since, per_page = (
            request.query.get("updated_since", "0"),
            request.query.get("per_page", "25"),
        )
        if not since.isdigit() or not per_page.isdigit() or int(per_page) < 1:
            return failure(400, {"updated_since": ["A valid integer is required."]})
        with self._lock:
            people = [
                {
                    "id": p["id"],
                    "created_date": p["created_date"],
                    "modified_date": p.get("modified_date", p["created_date"]),
                    "given_name": p.get("given_name", ""),
                    "family_name": p.get("family_name", ""),
                    "email_addresses": [{"primary": True, "address": p["email_address"]}],
                }
                for p in self.people.values()
                if p.get("modified_date", p["created_date"]) >= int(since)
            ]
        page = people[: int(per_page)]
        following = None
        if len(people) > len(page):
            following = f"{self.url}{request.path}?per_page={per_page}&page=2"
        return Response(
            200,
            json={"count": len(people), "next": following, "previous": None, "data": page},
        )

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        wait = math.ceil(retry_after)
        response = failure(
            429,
            {
                "detail": f"Request was throttled. Expected available in {wait} "
                f"second{'s' if wait != 1 else ''}."
            },
        )
        response.headers["Retry-After"] = str(wait)
        return response

    def not_found(self, request: RecordedRequest) -> Response:
        return failure(404, {"detail": "Not found."})

    # -- inside --------------------------------------------------------------------------------

    def _errors(self, body: dict[str, Any], timeslots: list[int]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        person = body.get("person")
        if not isinstance(person, dict):
            errors["person"] = (
                ["This field is required."]
                if person is None
                else ["Invalid data. Expected a dictionary."]
            )
        else:
            problems = {name: [p] for name in PERSON if (p := _problem(person, name))}
            email = str(person.get("email_address") or "").lower()
            if "email_address" not in problems and email in self.rejected:
                problems["email_address"] = [self.rejected[email]]
            if problems:
                errors["person"] = problems
        for name in ("sms_opt_in", "transactional_sms_opt_in"):
            if name in body and body[name] not in CHOICES:
                errors[name] = [f'"{body[name]}" is not a valid choice.']
        posted = body.get("timeslots")
        if not isinstance(posted, list) or not posted:
            errors["timeslots"] = [
                "This field is required." if posted is None else "This list may not be empty."
            ]
        else:
            ids = [t.get("timeslot_id") if isinstance(t, dict) else None for t in posted]
            wrong = [i for i in ids if not isinstance(i, int) or isinstance(i, bool)]
            unknown = [i for i in ids if i not in timeslots]
            if wrong:
                errors["timeslots"] = ["A valid integer is required."]
            elif unknown:
                errors["timeslots"] = [f"Invalid timeslot {unknown[0]} for this event."]
        referrer = body.get("referrer", {})
        if not isinstance(referrer, dict) or any(
            not isinstance(referrer.get(k), (str, type(None))) for k in REFERRER
        ):
            errors["referrer"] = ["Each referrer field is a string."]
        return errors

    def _save(self, body: dict[str, Any], event: int) -> list[dict[str, Any]]:
        posted = body["person"]
        email = posted["email_address"].lower()
        if email in self.people:
            self.updates[email] += 1
        else:
            self.creates[email] += 1
        person = self._person(email)
        for name in ("given_name", "family_name", "postal_code", "phone_number"):
            if posted.get(name):
                person[name] = posted[name]
        for name, default in (
            ("sms_opt_in", "UNSPECIFIED"),
            ("transactional_sms_opt_in", "OPT_IN"),
        ):
            if body.get(name, default) == "OPT_IN":
                person[f"{name}_status"] = "OPT_IN"
        person["modified_date"] = int(time.time())
        referrer = {k: body.get("referrer", {}).get(k) for k in REFERRER}
        answer = []
        for timeslot in (t["timeslot_id"] for t in body["timeslots"]):
            attendance = self.attendances.get((email, timeslot))
            if attendance is None:
                self._last_id += 1
                attendance = self.attendances[(email, timeslot)] = {
                    "id": self._last_id,
                    "created_date": int(time.time()),
                    "event": event,
                    "timeslot": timeslot,
                    "status": "REGISTERED",
                }
                self.signups[(email, timeslot)] += 1
            attendance.update(modified_date=int(time.time()), referrer=referrer)
            answer.append(self._attendance(attendance, person))
        return answer

    def _person(self, email: str) -> dict[str, Any]:
        """The person with this email, created if new (not opted in to anything)."""
        if email not in self.people:
            self._last_id += 1
            self.people[email] = {
                "id": self._last_id,
                "created_date": int(time.time()),
                "email_address": email,
                "sms_opt_in_status": "UNSPECIFIED",
                "transactional_sms_opt_in_status": "UNSPECIFIED",
            }
        return self.people[email]

    def _attendance(self, attendance: dict[str, Any], person: dict[str, Any]) -> dict[str, Any]:
        """An attendance as Mobilize shows it."""
        return {
            "id": attendance["id"],
            "created_date": attendance["created_date"],
            "modified_date": attendance["modified_date"],
            "person": {
                "id": person["id"],
                "given_name": person.get("given_name", ""),
                "family_name": person.get("family_name", ""),
                "email_addresses": [{"primary": True, "address": person["email_address"]}],
                "phone_numbers": [{"primary": True, "number": person.get("phone_number", "")}],
                "postal_addresses": [{"primary": True, "postal_code": person.get("postal_code")}],
                "sms_opt_in_status": person["sms_opt_in_status"],
            },
            "event": {"id": attendance["event"]},
            "timeslot": {"id": attendance["timeslot"]},
            "sponsor": {"id": self.organization_id},
            "status": attendance["status"],
            "attended": None,
            "referrer": attendance["referrer"],
            "custom_signup_field_values": [],
        }


def failure(status: int, error: dict[str, Any]) -> Response:
    return Response(status, json={"data": None, "error": error})


def _problem(person: dict[str, Any], name: str) -> str | None:
    """What Mobilize says of one person field, if anything."""
    if name not in person:
        return "This field is required."
    value = person[name]
    if value is None:
        return "This field may not be null."
    if not isinstance(value, str):
        return "Not a valid string."
    if not value.strip() and name != "phone_number":
        return "This field may not be blank."
    if name == "email_address" and not EMAIL.fullmatch(value):
        return "Enter a valid email address."
    return None


REMOTE = Remote(
    FakeMobilize,
    lambda f: {"RALLY_MOBILIZE_API_URL": f.url, "RALLY_MOBILIZE_TOKEN": f.token},
    lambda f: (
        f"    options: {{organization_id: {f.organization_id}, event_id: 7001, "
        "timeslot_ids: [90001]}\n"
    ),
    lambda f, email: f.person(email) is not None,
)

"""A fake of one NationBuilder nation's v2 signups API: `PATCH /api/v2/signups/push` (match by
`external_id`, then email; update with 200 or create with 201, answering the signup as a JSON:API
document), `DELETE /api/v2/signups/{id}` (200 with `{"meta": {}}`, 404 when there is none) and
`GET /api/v2/signups` (a page of `page[size]`, default 20, with `links`), with a Bearer token.

Refusals take NationBuilder's shapes: 422 with a JSON:API errors document for a failed validation
(an email that is not one, or a person `reject`ed), `{"code", "message"}` for the rest (400 for a
malformed document or an attribute signups do not have, 401 for a wrong token, 404, 415 for a body
that is not JSON). Every answer, 429s included, carries `RateLimit-Limit`, `RateLimit-Remaining`
and `RateLimit-Reset` (seconds until the window resets), for a fixed window of `rate`, by default
the real 250 requests per 10 seconds.
"""

import math
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tests.fakes.crm_people import Rejections
from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Remote, Response

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
ATTRIBUTES = frozenset(
    {
        "civicrm_id",
        "county_file_id",
        "custom_values",
        "do_not_call",
        "do_not_contact",
        "dw_id",
        "email",
        "email_opt_in",
        "employer",
        "external_id",
        "first_name",
        "home_address_attributes",
        "is_volunteer",
        "last_name",
        "middle_name",
        "mobile_number",
        "mobile_opt_in",
        "ngp_id",
        "note",
        "occupation",
        "phone_number",
        "salesforce_id",
        "support_level",
        "van_id",
    }
)
BOOLEANS = frozenset(
    {"do_not_call", "do_not_contact", "email_opt_in", "is_volunteer", "mobile_opt_in"}
)
ADDRESS = frozenset({"address1", "address2", "address3", "city", "state", "zip", "country_code"})
OPTED_IN_BY_DEFAULT = ("email_opt_in", "mobile_opt_in")
JSON_API = "application/vnd.api+json"


class FakeNationBuilder(Rejections, FakeHttpServer):
    """The nation's signups in `signups` (id to attributes, the home address under
    `home_address`); `creates` and `updates` count the pushes per signup id."""

    def __init__(
        self,
        *,
        token: str = "nb-api-token-4f3e2d1c0b",
        rate: tuple[int, float] | None = (250, 10.0),
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.token = token
        self.signups: dict[str, dict[str, Any]] = {}
        self.creates: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()
        self.rejected: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last_id = 0
        self.window = self.rate_limit(rate[0], per=rate[1]) if rate is not None else None
        self.route("PATCH", "/api/v2/signups/push", self.push)
        self.route("DELETE", "/api/v2/signups/{signup_id}", self.delete)
        self.route("GET", "/api/v2/signups", self.index)

    # -- for tests -----------------------------------------------------------------------------

    def add(self, **attributes: Any) -> str:
        """A person the nation already has; their signup id."""
        with self._lock:
            return self._create(attributes)

    def signup(self, email: str) -> dict[str, Any] | None:
        """A copy of the signup with this email, if any."""
        with self._lock:
            for signup_id, signup in self.signups.items():
                if str(signup.get("email", "")).lower() == email.lower():
                    return {"id": signup_id, **signup}
        return None

    # -- the API -------------------------------------------------------------------------------

    def push(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = request.json
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "signups":
            return self._headed(error(400, "bad_request", "Expected a signups resource under data"))
        attributes = data.get("attributes")
        if not isinstance(attributes, dict):
            return self._headed(error(400, "bad_request", "Expected attributes to be an object"))
        problem = self._problem(attributes)
        if problem is not None:
            return self._headed(problem)
        with self._lock:
            signup_id = self._match(attributes)
            if signup_id is None:
                signup_id, status = self._create(attributes), 201
                self.creates[signup_id] += 1
            else:
                self._update(self.signups[signup_id], attributes)
                status = 200
                self.updates[signup_id] += 1
            shown = {k: v for k, v in self.signups[signup_id].items() if k != "home_address"}
        return self._headed(
            Response(
                status, json={"data": {"id": signup_id, "type": "signups", "attributes": shown}}
            )
        )

    def delete(self, request: RecordedRequest) -> Response:
        refused = self._refused(request, body=False)
        if refused is not None:
            return refused
        with self._lock:
            gone = self.signups.pop(request.path_params["signup_id"], None)
        if gone is None:
            return self._headed(error(404, "not_found", "Record not found"))
        return self._headed(Response(200, json={"meta": {}}))

    def index(self, request: RecordedRequest) -> Response:
        refused = self._refused(request, body=False)
        if refused is not None:
            return refused
        size = request.query.get("page[size]", "20")
        if not size.isdigit() or not 1 <= int(size) <= 100:
            return self._headed(error(400, "bad_request", f"Invalid page size {size!r}"))
        with self._lock:
            page = list(self.signups.items())[: int(size)]
            data = [
                {
                    "id": signup_id,
                    "type": "signups",
                    "attributes": {k: v for k, v in signup.items() if k != "home_address"},
                }
                for signup_id, signup in page
            ]
        base = f"{self.url}/api/v2/signups?page[size]={size}"
        links = {"self": base + "&page[number]=1", "next": base + "&page[number]=2"}
        return self._headed(
            Response(200, json={"data": data, "links": links}, headers={"Content-Type": JSON_API})
        )

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        response = Response(
            429,
            json={"message": "You have made too many requests. Please try again later."},
            headers={"Retry-After": str(math.ceil(retry_after))},
        )
        return self._headed(response)

    def not_found(self, request: RecordedRequest) -> Response:
        return self._headed(error(404, "not_found", "Record not found"))

    def method_not_allowed(self, request: RecordedRequest, allowed: list[str]) -> Response:
        response = super().method_not_allowed(request, allowed)
        return self._headed(response)

    # -- inside --------------------------------------------------------------------------------

    def _refused(self, request: RecordedRequest, *, body: bool = True) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._headed(
                error(
                    401,
                    "unauthorized",
                    "You are not authorized to access this content. Your access token may be "
                    "missing. The resource owner also may not have a permission level sufficient "
                    "to grant access.",
                )
            )
        # JSON:API's media type, as a spec-driven server insists on it.
        accept = request.headers.get("accept", "")
        if accept and not any(
            kind.split(";")[0].strip() in (JSON_API, "*/*") for kind in accept.split(",")
        ):
            return self._headed(
                error(406, "not_acceptable", f"Cannot answer in {accept!r}: ask for {JSON_API}")
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if body and content_type != JSON_API:
            return self._headed(
                error(415, "unsupported_media_type", f"Unsupported content type {content_type!r}")
            )
        return None

    def _problem(self, attributes: dict[str, Any]) -> Response | None:
        for name, value in attributes.items():
            if name not in ATTRIBUTES:
                return error(
                    400,
                    "bad_request",
                    f"signups: Tried to write attribute :{name}, but could not find an "
                    "attribute with that name.",
                )
            if name in BOOLEANS and not isinstance(value, bool):
                return error(400, "bad_request", f"{name}: expected a boolean, got {value!r}")
        custom = attributes.get("custom_values", {})
        if not isinstance(custom, dict):
            return error(400, "bad_request", "custom_values: expected an object")
        address = attributes.get("home_address_attributes", {})
        if not isinstance(address, dict) or set(address) - ADDRESS:
            return error(400, "bad_request", "home_address_attributes: unexpected attributes")
        email = attributes.get("email")
        if email is not None and not (isinstance(email, str) and EMAIL.fullmatch(email)):
            return invalid("email", f"Email '{email}' should look like an email address")
        if isinstance(email, str):
            with self._lock:
                message = self.rejected.get(email.lower())
            if message is not None:
                return invalid("email", message)
        return None

    def _match(self, attributes: dict[str, Any]) -> str | None:
        external_id = attributes.get("external_id")
        email = str(attributes.get("email") or "").lower()
        if external_id:
            for signup_id, signup in self.signups.items():
                if signup.get("external_id") == external_id:
                    return signup_id
        if email:
            for signup_id, signup in self.signups.items():
                if str(signup.get("email") or "").lower() == email:
                    return signup_id
        return None

    def _create(self, attributes: dict[str, Any]) -> str:
        self._last_id += 1
        signup_id = str(self._last_id)
        now = _now()
        signup: dict[str, Any] = {"created_at": now, "custom_values": {}}
        signup.update(dict.fromkeys(OPTED_IN_BY_DEFAULT, True))
        self.signups[signup_id] = signup
        self._update(signup, attributes)
        return signup_id

    def _update(self, signup: dict[str, Any], attributes: dict[str, Any]) -> None:
        for name, value in attributes.items():
            if name == "custom_values":
                signup["custom_values"] = {**signup.get("custom_values", {}), **value}
            elif name == "home_address_attributes":
                signup["home_address"] = {**signup.get("home_address", {}), **value}
            else:
                signup[name] = value
        signup["updated_at"] = _now()

    def _headed(self, response: Response) -> Response:
        """The answer with the nation's rate-limit headers."""
        window = self.window
        if window is not None:
            started = window._window_start if window._window_start is not None else self.clock()
            response.headers.update(
                {
                    "RateLimit-Limit": str(window.limit),
                    "RateLimit-Remaining": str(window.remaining()),
                    "RateLimit-Reset": str(
                        max(math.ceil(started + window.window - self.clock()), 0)
                    ),
                }
            )
        return response


def error(status: int, code: str, message: str) -> Response:
    return Response(status, json={"code": code, "message": message})


def invalid(attribute: str, detail: str) -> Response:
    return Response(
        422,
        json={
            "errors": [
                {
                    "code": "unprocessable_entity",
                    "status": "422",
                    "title": "Validation Error",
                    "detail": detail,
                    "source": {"pointer": f"/data/attributes/{attribute}"},
                    "meta": {"attribute": attribute, "message": detail},
                }
            ]
        },
        headers={"Content-Type": "application/vnd.api+json"},
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


REMOTE = Remote(
    FakeNationBuilder,
    lambda f: {"RALLY_NATIONBUILDER_API_URL": f.url, "RALLY_NATIONBUILDER_TOKEN": f.token},
    lambda f: "",
    lambda f, email: f.signup(email) is not None,
)

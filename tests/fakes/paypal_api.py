"""A fake of PayPal's Payouts API (v1) for one REST app in the sandbox: OAuth 2.0's client
credentials (`POST /v1/oauth2/token`), `POST /v1/payments/payouts`, `GET
/v1/payments/payouts/{id}` (paged by `page` and `page_size`, `total_required`, and
`fields=batch_header`), `GET /v1/payments/payouts-item/{id}`, `POST
/v1/notifications/verify-webhook-signature` and `GET /v1/notifications/webhooks-events/{id}`.

As PayPal does, it hands out an access token for the app's client id and secret given as HTTP
Basic (401 `invalid_client` otherwise) and asks every other call for `Authorization: Bearer
<token>` (401 `AUTHENTICATION_FAILURE` for a missing, unknown or expired one: a token lives
`expires_in` seconds on the fake's clock, or until `expire_tokens`). It answers JSON errors as
`{"name", "message", "debug_id", "information_link", "details"?, "links"}` with a
`Paypal-Debug-Id` header: 400 `VALIDATION_ERROR` with one detail per bad field (no items or more
than 15,000, an amount that is not a positive number with no or exactly two decimals, none for
JPY, HUF and TWD, a currency PayPal does not pay out in, a missing receiver, an unknown
recipient type or wallet); 400 `USER_BUSINESS_ERROR` for a `sender_batch_id` already used (its
detail links the first batch); 422 `INSUFFICIENT_FUNDS` when the `balance` in a currency is below
the batch's total in it; 404 `INVALID_RESOURCE_ID` for an unknown batch or item; 413 for a body
over `max_body` (64 KiB); and, over the rate limit (PayPal publishes none; 30 requests a
second by default), 429 `RATE_LIMIT_REACHED` without Retry-After.

A `PayPal-Request-Id` keeps a create's answer, a batch or a 4xx refusal (not a 401, 413, 429 or
injected 5xx). The same id with the same body gets it again and creates nothing; as PayPal's
idempotency guide says it returns "the latest status" of the first request, a kept batch comes
back with its `batch_status` as it is now. With another body the id gets 422
`DUPLICATE_REQUEST_ID`; while the first request is still going, 409 `RESOURCE_CONFLICT`.

Money leaves the `balance` when a batch is created and each item starts `PENDING`, or
`UNCLAIMED` (`RECEIVER_UNREGISTERED`) when its receiver is not in `receivers`. `settle` moves
pending items to the outcome `receivers` names for them ("SUCCESS", with a `transaction_id`;
"FAILED", `RECEIVER_ACCOUNT_LOCKED`, money back; "UNCLAIMED", money held; "BLOCKED", money back)
and completes their batches (`SUCCESS`); `settle_on_create` does so as each batch is created,
though the create's answer still says `PENDING` as PayPal's does. Each outcome is an event
(`PAYMENT.PAYOUTS-ITEM.SUCCEEDED`, `.FAILED`, `.UNCLAIMED`, `.BLOCKED`) POSTed to `webhook_url`
with PayPal's `PAYPAL-TRANSMISSION-*` headers, after the API answer or, with `webhook_first`,
before it; the verify endpoint answers `SUCCESS` only for the headers sent with exactly that
event and webhook id. `fail_next` answers PayPal's 500 `INTERNAL_SERVICE_ERROR` without creating
anything; `lose_answers` creates the batch and keeps its idempotent answer, then closes the
connection (or answers a 5xx) instead of answering.
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
import uuid
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.fakes.http_server import (
    AfterAnswer,
    Clock,
    FakeHttpServer,
    RecordedRequest,
    Response,
    _Handler,
    _send,
)

MAX_BODY = 64 * 1024
MAX_ITEMS = 15_000
MAX_PAGE_SIZE = 1000
TOKEN_LIFETIME = 32_400  # seconds, as PayPal's `expires_in`
SANDBOX = "https://api-m.sandbox.paypal.com"
INFORMATION_LINK = "https://developer.paypal.com/docs/api/payments.payouts-batch/#errors"
ERROR_OVERVIEW = "https://developer.paypal.com/docs/api/overview/#error"
SCOPE = (
    "https://uri.paypal.com/services/payments/payouts "
    "https://uri.paypal.com/services/applications/webhooks "
    "https://uri.paypal.com/services/payments/realtimepayment openid"
)
AUTH_ALGO = "SHA256withRSA"
UPPER_ALNUM = string.ascii_uppercase + string.digits
CURRENCIES = {
    "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "ILS", "JPY",
    "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RUB", "SEK", "SGD", "THB", "TWD", "USD",
}  # fmt: skip
NO_DECIMALS = {"HUF", "JPY", "TWD"}
AMOUNT = re.compile(r"\d{1,7}(?:\.\d{2})?")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
RECIPIENT_TYPES = ("EMAIL", "PHONE", "PAYPAL_ID")
WALLETS = ("PAYPAL", "VENMO", "RECIPIENT_SELECTED")
OUTCOMES = ("SUCCESS", "FAILED", "UNCLAIMED", "BLOCKED")
MISSING = "may not be null"
EVENT_TYPES = {
    "SUCCESS": "PAYMENT.PAYOUTS-ITEM.SUCCEEDED",
    "FAILED": "PAYMENT.PAYOUTS-ITEM.FAILED",
    "UNCLAIMED": "PAYMENT.PAYOUTS-ITEM.UNCLAIMED",
    "BLOCKED": "PAYMENT.PAYOUTS-ITEM.BLOCKED",
    "REFUNDED": "PAYMENT.PAYOUTS-ITEM.REFUNDED",
}
SUMMARIES = {
    "SUCCESS": "Payouts item was successful.",
    "FAILED": "Payouts item has failed.",
    "UNCLAIMED": "Payouts item is unclaimed.",
    "BLOCKED": "Payouts item was blocked.",
    "REFUNDED": "Payouts item was refunded.",
}
ITEM_ERRORS = {
    "FAILED": ("RECEIVER_ACCOUNT_LOCKED", "Receiver's account is locked or inactive."),
    "UNCLAIMED": ("RECEIVER_UNREGISTERED", "Receiver is unregistered."),
}
RETURNED = {"FAILED", "BLOCKED", "REFUNDED"}  # outcomes that credit the money back


@dataclass
class WebhookDelivery:
    """One event POSTed to `webhook_url`: its body as sent, its `PAYPAL-*` transmission headers,
    and the status the receiver answered (None: no answer). `at` is on the fake's clock."""

    event: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    status: int | None
    at: float


@dataclass
class _Saved:
    """A create's kept answer, under its `PayPal-Request-Id`."""

    payload: Any
    status: int
    body: dict[str, Any]
    payout_batch_id: str | None
    done: bool


@dataclass
class _Transmission:
    """What was sent with one transmission, for the verify endpoint."""

    headers: dict[str, str]
    webhook_id: str
    event: dict[str, Any]


class _AnswerLost(BaseException):
    """Raised by a handler to close the connection unanswered (a BaseException, so the base's
    catch-all for the fake's own failures lets it through)."""


class FakePayPal(FakeHttpServer):
    """Batches created in `batches` (in order, each as the batch GET shows it), every item in
    `items` (as the item GET shows it); what becomes of a payment to each receiver in
    `receivers` (email or PayPal id -> one of `OUTCOMES`); the sender's `balance` per currency;
    every event in `events`, each delivery in `webhooks_sent`."""

    def __init__(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        receivers: Mapping[str, str] | None = None,
        balance: Decimal | int | str = 10**9,
        settle_on_create: bool = False,
        webhook_url: str | None = None,
        webhook_id: str | None = None,
        webhook_first: bool = False,
        rate: tuple[int, float] | None = (30, 1.0),
        sliding: bool = False,
        max_body: int = MAX_BODY,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.client_id = client_id or "A" + _id(79, string.ascii_letters + string.digits + "-_")
        self.client_secret = client_secret or "E" + _id(79, string.ascii_letters + string.digits)
        self.app_id = "APP-" + _id(17)
        self.receivers: dict[str, str] = {}
        for receiver, outcome in (receivers or {}).items():
            self.receivers[receiver] = _checked_outcome(outcome)
        self.balance: defaultdict[str, Decimal] = defaultdict(lambda: Decimal(balance))
        self.settle_on_create = settle_on_create
        self.webhook_url = webhook_url
        self.webhook_id = webhook_id or _id(17)
        self.webhook_first = webhook_first
        self.max_body = max_body
        self.batches: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.webhooks_sent: list[WebhookDelivery] = []
        self._tokens: dict[str, float] = {}  # access token -> when it expires (fake's clock)
        self._batch_by_id: dict[str, dict[str, Any]] = {}
        self._batch_by_sender_id: dict[str, str] = {}  # sender_batch_id -> payout_batch_id
        self._item_by_id: dict[str, dict[str, Any]] = {}
        self._event_by_id: dict[str, dict[str, Any]] = {}
        self._transmissions: dict[str, _Transmission] = {}
        self._signing_key = secrets.token_bytes(32)
        self._saved: dict[str, _Saved] = {}
        self._lose: deque[int | None] = deque()
        self._lock = threading.Lock()
        self._sent = threading.Condition()
        self._events = AfterAnswer(self._deliver, f"{type(self).__name__}-webhooks")
        self._client: httpx.Client | None = None
        self.window = (
            self.rate_limit(rate[0], per=rate[1], sliding=sliding) if rate is not None else None
        )
        self.route("POST", "/v1/oauth2/token", self.issue)
        self.route("POST", "/v1/payments/payouts", self.create_batch)
        self.route("GET", "/v1/payments/payouts/{payout_batch_id}", self.read_batch)
        self.route("GET", "/v1/payments/payouts-item/{payout_item_id}", self.read_item)
        self.route("POST", "/v1/notifications/verify-webhook-signature", self.verify_signature)
        self.route("GET", "/v1/notifications/webhooks-events/{event_id}", self.read_event)

    # -- for tests -----------------------------------------------------------------------------

    def add_receiver(self, outcome: str = "SUCCESS") -> str:
        """A new receiver's email, whose payments end in `outcome` when settled."""
        receiver = f"creator-{secrets.token_hex(4)}@example.com"
        with self._lock:
            self.receivers[receiver] = _checked_outcome(outcome)
        return receiver

    def issue_token(self) -> str:
        """A new access token, as `POST /v1/oauth2/token` would give (for set-up)."""
        token = "A21AA" + _id(92, string.ascii_letters + string.digits + "-_")
        with self._lock:
            self._tokens[token] = self.clock() + TOKEN_LIFETIME
        return token

    def expire_tokens(self) -> None:
        """Make every access token issued so far invalid: the client must fetch a new one."""
        with self._lock:
            self._tokens.clear()

    def paid_to(self, receiver: str) -> list[dict[str, Any]]:
        """Copies of the items that reached SUCCESS for `receiver`, oldest first."""
        with self._lock:
            return [
                _copy(item)
                for item in self.items
                if item["transaction_status"] == "SUCCESS"
                and _same_receiver(item["payout_item"]["receiver"], receiver)
            ]

    def settle(self, payout_batch_id: str | None = None) -> list[dict[str, Any]]:
        """Move the pending items of that batch (of every batch, by default) to what `receivers`
        names for them, complete their batches and queue an event for each item; copies of the
        items moved."""
        with self._lock:
            if payout_batch_id is None:
                batches = list(self.batches)
            elif payout_batch_id in self._batch_by_id:
                batches = [self._batch_by_id[payout_batch_id]]
            else:
                raise KeyError(f"no payout batch {payout_batch_id}")
            moved, events = [], []
            for batch in batches:
                for item in batch["items"]:
                    if item["transaction_status"] == "PENDING":
                        events.append(self._settle_item(item, self._outcome(item)))
                        moved.append(_copy(item))
                _complete(batch)
        for event in events:
            self._events.add(event)
        return moved

    def refund(self, receiver: str) -> dict[str, Any]:
        """The receiver sends back the item they were paid (SUCCESS to REFUNDED): the money is
        credited back and an event queued; a copy of the item."""
        with self._lock:
            item = next(
                i
                for i in self.items
                if i["transaction_status"] == "SUCCESS"
                and _same_receiver(i["payout_item"]["receiver"], receiver)
            )
            event = self._settle_item(item, "REFUNDED")
        self._events.add(event)
        return _copy(item)

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` and PayPal's `INTERNAL_SERVICE_ERROR`
        (`RATE_LIMIT_REACHED` for a 429; or `body`) before they reach the API: nothing is
        created, no idempotent answer kept."""
        if body is None:
            error = _rate_limited() if status == 429 else _internal_error(status)
            body, headers = error.json, {**error.headers, **(headers or {})}
        super().fail_next(count, status, body, headers)

    def lose_answers(self, count: int = 1, status: int | None = None) -> None:
        """The next `count` batches are created (their idempotent answers kept, their events
        sent), then the connection is closed unanswered, or, with a `status`, answered with it
        and PayPal's `INTERNAL_SERVICE_ERROR`: a client must retry with the same
        `PayPal-Request-Id` (or look the batch up) to learn it."""
        with self._lock:
            self._lose.extend([status] * count)

    def forget_request_ids(self) -> None:
        """PayPal keeps `PayPal-Request-Id`s for 30 days: past that, a repeat is no longer
        answered with the first batch, and only its `sender_batch_id` stops a second one."""
        with self._lock:
            self._saved.clear()

    def wait_for_webhooks(self, count: int, timeout: float = 5.0) -> list[WebhookDelivery]:
        """Block until at least `count` deliveries were made (answered or not)."""
        with self._sent:
            if not self._sent.wait_for(lambda: len(self.webhooks_sent) >= count, timeout):
                raise TimeoutError(f"{len(self.webhooks_sent)} of {count} webhooks sent")
            return list(self.webhooks_sent)

    # -- the API -------------------------------------------------------------------------------

    def issue(self, request: RecordedRequest) -> Response:
        client_id, client_secret = _basic(request)
        if not (
            hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return Response(
                401,
                json={
                    "error": "invalid_client",
                    "error_description": "Client Authentication failed",
                },
                headers={"Paypal-Debug-Id": _debug_id()},
            )
        grant_type = request.form.get("grant_type")
        if grant_type != "client_credentials":
            description = "Grant Type is NULL" if not grant_type else "unsupported grant_type"
            return Response(
                400,
                json={"error": "unsupported_grant_type", "error_description": description},
                headers={"Paypal-Debug-Id": _debug_id()},
            )
        token = self.issue_token()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Response(
            200,
            json={
                "scope": SCOPE,
                "access_token": token,
                "token_type": "Bearer",
                "app_id": self.app_id,
                "expires_in": TOKEN_LIFETIME,
                "nonce": stamp + secrets.token_urlsafe(32),
            },
        )

    def create_batch(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if len(request.body) > self.max_body:
            return _too_large(self.max_body)
        request_id = request.headers.get("paypal-request-id")
        payload = request.json if request.json is not None else request.body
        batch_id: str | None = None
        events: list[dict[str, Any]] = []
        with self._lock:
            saved = self._saved.get(request_id) if request_id else None
            if saved is not None:
                return self._replay(saved, payload)
            response = self._refusal(request)
            if response is None:
                batch, events = self._create(request.json)
                batch_id = batch["batch_header"]["payout_batch_id"]
                response = Response(201, json=self._created(batch))
            if request_id:
                done = not events or not self.webhook_first
                self._saved[request_id] = _Saved(
                    _copy(payload) if request.json is not None else payload,
                    response.status,
                    _copy(response.json),
                    batch_id,
                    done,
                )
            lost = self._lose.popleft() if batch_id is not None and self._lose else 0
        if events and self.webhook_first:
            for event in events:
                self._deliver(event)
            if request_id:
                with self._lock:
                    self._saved[request_id].done = True
        else:
            for event in events:
                self._events.add(event)
        if lost is None:
            raise _AnswerLost
        if lost:
            return _internal_error(lost)
        return response

    def read_batch(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        batch_id = request.path_params["payout_batch_id"]
        query = request.query
        details = []
        numbers = {}
        for name, default, top in (("page", 1, None), ("page_size", MAX_PAGE_SIZE, MAX_PAGE_SIZE)):
            text = query.get(name, str(default))
            if not text.isdigit() or int(text) < 1 or (top is not None and int(text) > top):
                bound = f" and at most {top}" if top is not None else ""
                issue = f"must be a whole number of at least 1{bound}"
                details.append({"field": name, "value": text, "location": "query", "issue": issue})
            else:
                numbers[name] = int(text)
        if details:
            return _validation_error(details)
        with self._lock:
            batch = self._batch_by_id.get(batch_id)
            if batch is None:
                return _not_found()
            answer: dict[str, Any] = {"batch_header": _copy(batch["batch_header"])}
            size, page = numbers["page_size"], numbers["page"]
            items = batch["items"]
            if query.get("fields") != "batch_header":
                answer["items"] = [
                    self._listed(item) for item in items[(page - 1) * size : page * size]
                ]
            pages = max((len(items) + size - 1) // size, 1)
            if query.get("total_required", "").lower() == "true":
                answer["total_items"] = len(items)
                answer["total_pages"] = pages
            path = f"/v1/payments/payouts/{batch_id}"
            links = [_link(self._href(f"{path}?page={page}&page_size={size}"), "self")]
            if page > 1:
                links.append(_link(self._href(f"{path}?page={page - 1}&page_size={size}"), "prev"))
            if page < pages:
                links.append(_link(self._href(f"{path}?page={page + 1}&page_size={size}"), "next"))
            answer["links"] = links
        return Response(200, json=answer)

    def read_item(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        with self._lock:
            item = self._item_by_id.get(request.path_params["payout_item_id"])
            if item is not None:
                return Response(200, json=_copy(item))
        return _not_found()

    def verify_signature(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = request.json
        if not isinstance(body, dict):
            return _malformed()
        details = []
        fields = ("auth_algo", "cert_url", "transmission_id", "transmission_sig")
        for name in (*fields, "transmission_time", "webhook_id", "webhook_event"):
            value = body.get(name)
            if value is None or value == "":
                details.append({"field": name, "location": "body", "issue": MISSING})
            elif name == "webhook_event" and not isinstance(value, dict):
                details.append({"field": name, "location": "body", "issue": "must be an object"})
            elif name != "webhook_event" and not isinstance(value, str):
                details.append({"field": name, "location": "body", "issue": "must be a string"})
        if details:
            return _validation_error(details)
        with self._lock:
            sent = self._transmissions.get(body["transmission_id"])
        verified = sent is not None and (
            hmac.compare_digest(body["transmission_sig"], sent.headers["PAYPAL-TRANSMISSION-SIG"])
            and body["transmission_time"] == sent.headers["PAYPAL-TRANSMISSION-TIME"]
            and body["cert_url"] == sent.headers["PAYPAL-CERT-URL"]
            and body["auth_algo"] == sent.headers["PAYPAL-AUTH-ALGO"]
            and body["webhook_id"] == sent.webhook_id
            and body["webhook_event"] == sent.event
        )
        return Response(200, json={"verification_status": "SUCCESS" if verified else "FAILURE"})

    def read_event(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        with self._lock:
            event = self._event_by_id.get(request.path_params["event_id"])
            if event is not None:
                return Response(200, json=_copy(event))
        return _not_found()

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        return _rate_limited()

    def not_found(self, request: RecordedRequest) -> Response:
        return paypal_error(404, "NOT_FOUND", "The specified resource does not exist.")

    def method_not_allowed(self, request: RecordedRequest, allowed: list[str]) -> Response:
        return paypal_error(
            405,
            "METHOD_NOT_SUPPORTED",
            "The server does not implement the requested HTTP method.",
            headers={"Allow": ", ".join(allowed)},
        )

    # -- running -------------------------------------------------------------------------------

    def start(self) -> Self:
        super().start()
        self._client = httpx.Client(timeout=10.0, trust_env=False)
        self._events.start()
        return self

    def stop(self) -> None:
        super().stop()
        self._events.stop()
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- inside --------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        """A body over `max_body` is refused unread; events wait until the answer is sent."""
        length = handler.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_body:
            self._refuse_unread(handler)
            return
        with self._events.answering():
            try:
                super()._serve(handler)
            except _AnswerLost:
                handler.close_connection = True

    def _refuse_unread(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        query_all = parse_qs(parts.query, keep_blank_values=True)
        request = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query={name: values[-1] for name, values in query_all.items()},
            query_all=query_all,
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=b"",
            status=413,
            at=self.clock(),
        )
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()
        handler.close_connection = True  # the body is left unread
        response = _too_large(self.max_body)
        response.headers["Connection"] = "close"
        _send(handler, response)

    def _dispatch(self, request: RecordedRequest) -> Response:
        response = super()._dispatch(request)
        response.headers.setdefault("Paypal-Debug-Id", _debug_id())
        return response

    def _refused(self, request: RecordedRequest) -> Response | None:
        """None for a live access token given as Bearer, else PayPal's 401."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            with self._lock:
                expires = self._tokens.get(token.strip())
            if expires is not None and self.clock() < expires:
                return None
        return Response(
            401,
            json={
                "name": "AUTHENTICATION_FAILURE",
                "message": "Authentication failed due to invalid authentication credentials or "
                "a missing Authorization header.",
                "links": [{"href": ERROR_OVERVIEW, "rel": "information_link"}],
            },
            headers={"Paypal-Debug-Id": _debug_id()},
        )

    def _replay(self, saved: _Saved, payload: Any) -> Response:
        """The kept answer again, with its batch's status as it is now (under the lock), or
        PayPal's refusal to give it for another body."""
        if saved.payload != payload:
            return paypal_error(
                422,
                "DUPLICATE_REQUEST_ID",
                "The value of PayPal-Request-Id header has already been used.",
            )
        if not saved.done:
            return paypal_error(
                409,
                "RESOURCE_CONFLICT",
                "The server has detected a conflict while processing this request.",
            )
        body = _copy(saved.body)
        if saved.payout_batch_id is not None:
            batch = self._batch_by_id[saved.payout_batch_id]
            body["batch_header"]["batch_status"] = batch["batch_header"]["batch_status"]
        debug_id = body.get("debug_id") or _debug_id()
        return Response(saved.status, json=body, headers={"Paypal-Debug-Id": debug_id})

    def _refusal(self, request: RecordedRequest) -> Response | None:
        """PayPal's refusal of a create (under the lock), or None."""
        if "json" not in request.headers.get("content-type", ""):
            return paypal_error(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "The server does not support the request payload's media type.",
            )
        body = request.json
        if not isinstance(body, dict):
            return _malformed()
        details = _batch_problems(body)
        if details:
            return _validation_error(details)
        sender_batch_id = body["sender_batch_header"].get("sender_batch_id")
        first = self._batch_by_sender_id.get(sender_batch_id) if sender_batch_id else None
        if first is not None:
            return paypal_error(
                400,
                "USER_BUSINESS_ERROR",
                "User business error.",
                details=[
                    {
                        "field": "SENDER_BATCH_ID",
                        "value": sender_batch_id,
                        "location": "body",
                        "issue": "Batch with given sender_batch_id already exists",
                        "link": [
                            _link(self._href(f"/v1/payments/payouts/{first}"), "self"),
                        ],
                    }
                ],
            )
        for currency, total in _totals(body["items"]).items():
            if total > self.balance[currency]:
                return paypal_error(
                    422,
                    "INSUFFICIENT_FUNDS",
                    "Sender does not have sufficient funds. Please add funds and retry.",
                )
        return None

    def _create(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Make the batch and its items, debit the balance, and apply what is known at once
        (under the lock): the batch, and the events of the items that reached an outcome."""
        header = body["sender_batch_header"]
        batch_id = _id(13)
        default_type = header.get("recipient_type") or "EMAIL"
        first_currency = body["items"][0]["amount"]["currency"]
        items: list[dict[str, Any]] = []
        for entry in body["items"]:
            amount = entry["amount"]
            payout_item: dict[str, Any] = {
                "recipient_type": entry.get("recipient_type") or default_type,
                "amount": {"currency": amount["currency"], "value": amount["value"]},
            }
            if entry.get("note") is not None:
                payout_item["note"] = entry["note"]
            payout_item["receiver"] = entry["receiver"]
            if entry.get("sender_item_id") is not None:
                payout_item["sender_item_id"] = entry["sender_item_id"]
            payout_item["recipient_wallet"] = entry.get("recipient_wallet") or "PAYPAL"
            item_id = _id(13)
            item: dict[str, Any] = {
                "payout_item_id": item_id,
                "transaction_status": "PENDING",
                "payout_item_fee": {
                    "currency": amount["currency"],
                    "value": _money(0, amount["currency"]),
                },
                "payout_batch_id": batch_id,
                "payout_item": payout_item,
                "links": [
                    _link(self._href(f"/v1/payments/payouts-item/{item_id}"), "self"),
                    _link(self._href(f"/v1/payments/payouts/{batch_id}"), "batch"),
                ],
            }
            items.append(item)
        totals = _totals(body["items"])
        for currency, total in totals.items():
            self.balance[currency] -= total
        batch = {
            "batch_header": {
                "payout_batch_id": batch_id,
                "batch_status": "PENDING",
                "time_created": _now(),
                "sender_batch_header": _copy(header),
                "amount": {
                    "currency": first_currency,
                    "value": _money(totals[first_currency], first_currency),
                },
                "fees": {"currency": first_currency, "value": _money(0, first_currency)},
            },
            "items": items,
            "links": [_link(self._href(f"/v1/payments/payouts/{batch_id}"), "self")],
        }
        self.batches.append(batch)
        self._batch_by_id[batch_id] = batch
        if header.get("sender_batch_id"):
            self._batch_by_sender_id[header["sender_batch_id"]] = batch_id
        for item in items:
            self.items.append(item)
            self._item_by_id[item["payout_item_id"]] = item
        events = []
        for item in items:
            outcome = self._outcome(item)
            if outcome == "UNCLAIMED" or self.settle_on_create:
                events.append(self._settle_item(item, outcome))
        if self.settle_on_create:
            _complete(batch)
        return batch, events

    def _created(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The create's answer: the batch header as PayPal first shows it."""
        header = batch["batch_header"]
        return {
            "batch_header": {
                "payout_batch_id": header["payout_batch_id"],
                "batch_status": "PENDING",
                "sender_batch_header": _copy(header["sender_batch_header"]),
            },
            "links": _copy(batch["links"]),
        }

    def _listed(self, item: dict[str, Any]) -> dict[str, Any]:
        """An item as the batch GET lists it: linked to itself as `item`."""
        listed = _copy(item)
        href = self._href(f"/v1/payments/payouts-item/{item['payout_item_id']}")
        listed["links"] = [_link(href, "item")]
        return listed

    def _outcome(self, item: dict[str, Any]) -> str:
        """What becomes of a payment to the item's receiver: UNCLAIMED for one not known."""
        receiver = item["payout_item"]["receiver"]
        outcome = self.receivers.get(receiver)
        if outcome is None:
            for known, value in self.receivers.items():
                if _same_receiver(known, receiver):
                    outcome = value
                    break
        return _checked_outcome(outcome or "UNCLAIMED")

    def _settle_item(self, item: dict[str, Any], outcome: str) -> dict[str, Any]:
        """Give the item its outcome, credit back money that will not be paid, and record the
        event about it (under the lock)."""
        item["transaction_status"] = outcome
        if outcome == "SUCCESS":
            item["transaction_id"] = _id(17)
        item["time_processed"] = _now()
        if outcome in ITEM_ERRORS:
            name, message = ITEM_ERRORS[outcome]
            item["errors"] = {
                "name": name,
                "message": message,
                "information_link": INFORMATION_LINK,
                "details": [],
                "links": [],
            }
        if outcome in RETURNED:
            amount = item["payout_item"]["amount"]
            self.balance[amount["currency"]] += Decimal(amount["value"])
        event_id = f"WH-{_id(17)}-{_id(17)}"
        event = {
            "id": event_id,
            "event_version": "1.0",
            "create_time": _now(),
            "resource_type": "payouts_item",
            "event_type": EVENT_TYPES[outcome],
            "summary": SUMMARIES[outcome],
            "resource": _copy(item),
            "links": [
                _link(self._href(f"/v1/notifications/webhooks-events/{event_id}"), "self"),
                _link(
                    self._href(f"/v1/notifications/webhooks-events/{event_id}/resend"),
                    "resend",
                    "POST",
                ),
            ],
        }
        self.events.append(event)
        self._event_by_id[event_id] = event
        return event

    def _href(self, path: str) -> str:
        return (self.url if self._server is not None else SANDBOX) + path

    def _deliver(self, event: dict[str, Any]) -> None:
        """POST the event to `webhook_url` with PayPal's transmission headers, and record the
        receiver's answer."""
        if self.webhook_url is None:
            return
        body = json.dumps(event, separators=(",", ":")).encode()
        transmission_id = str(uuid.uuid4())
        sent_at = _now()
        webhook_id = self.webhook_id
        message = f"{transmission_id}|{sent_at}|{webhook_id}|{zlib.crc32(body)}"
        digest = hmac.new(self._signing_key, message.encode(), hashlib.sha256).digest()
        cert = f"CERT-{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "PayPal/AUHD-214.0-58751617",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": sent_at,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(digest).decode(),
            "PAYPAL-CERT-URL": self._href(f"/v1/notifications/certs/{cert}"),
            "PAYPAL-AUTH-ALGO": AUTH_ALGO,
            "PAYPAL-AUTH-VERSION": "v2",
        }
        with self._lock:  # before the POST: a receiver may verify while it answers
            self._transmissions[transmission_id] = _Transmission(
                dict(headers), webhook_id, json.loads(body)
            )
        status: int | None = None
        try:
            post = self._client.post if self._client is not None else httpx.post
            status = post(self.webhook_url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            pass  # no answer: the status stays None
        with self._sent:
            self.webhooks_sent.append(WebhookDelivery(event, body, headers, status, self.clock()))
            self._sent.notify_all()


def paypal_error(
    status: int,
    name: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    debug_id = _debug_id()
    error: dict[str, Any] = {
        "name": name,
        "message": message,
        "debug_id": debug_id,
        "information_link": INFORMATION_LINK,
    }
    if details is not None:
        error["details"] = details
    error["links"] = []
    return Response(status, json=error, headers={"Paypal-Debug-Id": debug_id, **(headers or {})})


def _batch_problems(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One detail per bad field of a create's body, in PayPal's `VALIDATION_ERROR` shape."""
    details: list[dict[str, Any]] = []

    def bad(field: str, issue: str) -> None:
        details.append({"field": field, "location": "body", "issue": issue})

    header = body.get("sender_batch_header")
    default_type = "EMAIL"
    if header is None:
        bad("sender_batch_header", MISSING)
    elif not isinstance(header, dict):
        bad("sender_batch_header", "must be an object")
    else:
        for name in ("sender_batch_id", "email_subject", "email_message", "note"):
            if header.get(name) is not None and not isinstance(header[name], str):
                bad(f"sender_batch_header.{name}", "must be a string")
        subject = header.get("email_subject")
        if isinstance(subject, str) and len(subject) > 255:
            bad("sender_batch_header.email_subject", "size must be between 0 and 255")
        kind = header.get("recipient_type")
        if kind is not None and kind not in RECIPIENT_TYPES:
            bad("sender_batch_header.recipient_type", _one_of(RECIPIENT_TYPES))
        elif kind is not None:
            default_type = kind
    items = body.get("items")
    if items is None:
        bad("items", MISSING)
    elif not isinstance(items, list):
        bad("items", "must be an array")
    elif not 1 <= len(items) <= MAX_ITEMS:
        bad("items", f"size must be between 1 and {MAX_ITEMS}")
    else:
        for index, item in enumerate(items):
            _item_problems(f"items[{index}]", item, default_type, bad)
    return details


def _item_problems(
    where: str, item: Any, default_type: str, bad: Callable[[str, str], None]
) -> None:
    if not isinstance(item, dict):
        bad(where, "must be an object")
        return
    kind = item.get("recipient_type")
    if kind is not None and kind not in RECIPIENT_TYPES:
        bad(f"{where}.recipient_type", _one_of(RECIPIENT_TYPES))
        kind = None
    kind = kind or default_type
    amount = item.get("amount")
    if amount is None:
        bad(f"{where}.amount", MISSING)
    elif not isinstance(amount, dict):
        bad(f"{where}.amount", "must be an object")
    else:
        currency, value = amount.get("currency"), amount.get("value")
        if currency is None:
            bad(f"{where}.amount.currency", MISSING)
        elif currency not in CURRENCIES:
            bad(f"{where}.amount.currency", "Currency code is invalid or is not supported")
        if value is None:
            bad(f"{where}.amount.value", MISSING)
        elif not isinstance(value, str) or not AMOUNT.fullmatch(value) or not Decimal(value):
            bad(
                f"{where}.amount.value",
                "Currency amount must be a positive number, may optionally contain exactly 2 "
                "decimal places separated by '.', limited to 7 digits before the decimal point",
            )
        elif currency in NO_DECIMALS and "." in value:
            bad(f"{where}.amount.value", "Currency does not support decimals.")
    receiver = item.get("receiver")
    if receiver is None or receiver == "":
        bad(f"{where}.receiver", MISSING)
    elif not isinstance(receiver, str):
        bad(f"{where}.receiver", "must be a string")
    elif kind == "EMAIL" and not EMAIL.fullmatch(receiver):
        bad(f"{where}.receiver", "Receiver is invalid or does not match with type")
    wallet = item.get("recipient_wallet")
    if wallet is not None and wallet not in WALLETS:
        bad(f"{where}.recipient_wallet", _one_of(WALLETS))
    for name in ("sender_item_id", "note"):
        if item.get(name) is not None and not isinstance(item[name], str):
            bad(f"{where}.{name}", "must be a string")


def _totals(items: list[dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for item in items:
        currency = item["amount"]["currency"]
        totals[currency] = totals.get(currency, Decimal(0)) + Decimal(item["amount"]["value"])
    return totals


def _complete(batch: dict[str, Any]) -> None:
    """Mark the batch processed once none of its items is pending."""
    header = batch["batch_header"]
    if header["batch_status"] in ("PENDING", "PROCESSING") and all(
        item["transaction_status"] != "PENDING" for item in batch["items"]
    ):
        header["batch_status"] = "SUCCESS"
        header["time_completed"] = _now()


def _checked_outcome(outcome: str) -> str:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
    return outcome


def _same_receiver(a: str, b: str) -> bool:
    """Receivers match exactly, or, for emails, whatever their case."""
    return a == b or ("@" in a and a.casefold() == b.casefold())


def _validation_error(details: list[dict[str, Any]]) -> Response:
    return paypal_error(400, "VALIDATION_ERROR", "Invalid request - see details", details=details)


def _malformed() -> Response:
    return paypal_error(
        400, "MALFORMED_REQUEST", "Incoming JSON request does not map to API request"
    )


def _not_found() -> Response:
    return paypal_error(404, "INVALID_RESOURCE_ID", "Requested resource ID was not found.")


def _rate_limited() -> Response:
    return paypal_error(
        429, "RATE_LIMIT_REACHED", "Too many requests. Blocked due to rate limiting."
    )


def _internal_error(status: int) -> Response:
    return paypal_error(status, "INTERNAL_SERVICE_ERROR", "An internal service error occurred.")


def _too_large(limit: int) -> Response:
    return paypal_error(
        413, "REQUEST_ENTITY_TOO_LARGE", f"The request body is too large: at most {limit} bytes."
    )


def _basic(request: RecordedRequest) -> tuple[str, str]:
    """The client id and secret given as HTTP Basic; empty strings when none are."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:
        return "", ""
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


def _link(href: str, rel: str, method: str = "GET") -> dict[str, str]:
    return {"href": href, "rel": rel, "method": method, "encType": "application/json"}


def _one_of(values: tuple[str, ...]) -> str:
    return f"must be one of {', '.join(values)}"


def _money(value: Decimal | int, currency: str) -> str:
    return f"{Decimal(value):.0f}" if currency in NO_DECIMALS else f"{Decimal(value):.2f}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _debug_id() -> str:
    return secrets.token_hex(7)[:13]


def _id(length: int, alphabet: str = UPPER_ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))

"""A fake of Stripe's Transfers API (Stripe Connect) for one platform account in test mode:
`POST /v1/transfers`, `GET /v1/transfers/{id}`, and `GET /v1/transfers` (newest first, filtered
by `transfer_group` and `destination`, paged by `limit`, `starting_after` and `ending_before`).

As Stripe does, it takes the secret key as `Authorization: Bearer` (or as HTTP Basic's user
name) and form-encoded parameters with nested keys (`metadata[payout]=12`), and answers JSON: a
transfer object, or `{"error": {"type", "code", "param", "message", "doc_url"}}`. 401 for a
missing or wrong key (shown masked but for its last four characters); 400 `parameter_missing`,
`parameter_invalid_integer` or `parameter_unknown`; 400 `resource_missing` for an unknown
destination (404 for an unknown transfer); 400 `insufficient_capabilities_for_transfer` for a
connected account without the transfers capability; 400 `balance_insufficient` when the
platform's available `balance` in that currency is below the amount; 413 for a body over 64 KiB;
and, over the rate limit (by default Stripe's test-mode 25 requests a second), 429 `rate_limit`
with `Stripe-Should-Retry: true` and no Retry-After.

An `Idempotency-Key` (1 to 255 characters) keeps a create's first answer once its execution has
begun: a transfer, or a refusal over the destination or the balance. It does not keep a
malformed request, a 429 or an injected 5xx. The same key with the same parameters gets the kept
answer again, with `Idempotent-Replayed: true`, and creates nothing; with other parameters it
gets 400 `idempotency_error`; while the first request is still going, 409.

Each transfer created, or reversed with `reverse`, is an event (`transfer.created`,
`transfer.reversed`) POSTed to `webhook_url`, signed in Stripe's `Stripe-Signature` header (see
`sign`): after the API answer, or before it with `webhook_first`. `fail_next` answers Stripe's 500
`api_error` without creating anything; `lose_answers` creates the transfer and keeps its
idempotent answer, then closes the connection (or answers a 5xx) instead of answering.
"""

import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
from base64 import b64decode
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
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

API_VERSION = "2024-06-20"
MAX_BODY = 64 * 1024
MAX_KEY = 255
MAX_LIMIT = 100
INTEGER = re.compile(r"-?\d{1,18}")
CURRENCY = re.compile(r"[A-Za-z]{3}")
METADATA = re.compile(r"metadata\[([^\[\]]+)\]")
CREATE_PARAMS = {"amount", "currency", "destination", "description", "transfer_group", "metadata"}
LIST_PARAMS = {"limit", "starting_after", "ending_before", "transfer_group", "destination"}
ALNUM = string.ascii_letters + string.digits
RETRY = {"Stripe-Should-Retry": "true"}
KEY_PREFIX = re.compile(r"(?:[a-z]{2}_(?:test|live)_)?")


@dataclass
class WebhookDelivery:
    """One event POSTed to `webhook_url`: its body as sent, its `Stripe-Signature`, and the
    status the receiver answered (None: no answer). `at` is on the fake's clock."""

    event: dict[str, Any]
    body: bytes
    signature: str
    status: int | None
    at: float


@dataclass
class _Saved:
    """A create's kept answer, under its idempotency key."""

    params: dict[str, str]
    status: int
    body: dict[str, Any]
    request_id: str
    done: bool


class _AnswerLost(BaseException):
    """Raised by a handler to close the connection unanswered (a BaseException, so the base's
    catch-all for the fake's own failures lets it through)."""


class FakeStripe(FakeHttpServer):
    """Transfers created in `transfers` (in order); connected accounts in `accounts` (id ->
    whether it can receive transfers); the platform's available `balance` per currency (cents);
    every event in `events`, each delivery in `webhooks_sent`."""

    def __init__(
        self,
        *,
        secret_key: str | None = None,
        accounts: Mapping[str, bool] | None = None,
        balance: int = 10**12,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_first: bool = False,
        rate: tuple[int, float] | None = (25, 1.0),
        sliding: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.secret_key = secret_key or "sk_test_" + secrets.token_hex(16)
        self.accounts: dict[str, bool] = dict(accounts or {})
        self.balance: defaultdict[str, int] = defaultdict(lambda: balance)
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(16)
        self.webhook_first = webhook_first
        self.transfers: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.webhooks_sent: list[WebhookDelivery] = []
        self._by_id: dict[str, int] = {}  # transfer id -> its index in `transfers`
        self._saved: dict[str, _Saved] = {}
        self._lose: deque[int | None] = deque()
        self._lock = threading.Lock()
        self._sent = threading.Condition()
        self._events = AfterAnswer(self._deliver, f"{type(self).__name__}-webhooks")
        self._client: httpx.Client | None = None
        self.window = (
            self.rate_limit(rate[0], per=rate[1], sliding=sliding) if rate is not None else None
        )
        self.route("POST", "/v1/transfers", self.create_transfer)
        self.route("GET", "/v1/transfers", self.list_transfers)
        self.route("GET", "/v1/transfers/{transfer_id}", self.read_transfer)

    # -- for tests -----------------------------------------------------------------------------

    def add_account(self, transfers: bool = True) -> str:
        """A new connected account; `transfers=False` gives one without that capability."""
        account = _id("acct_", 16)
        with self._lock:
            self.accounts[account] = transfers
        return account

    def paid_to(self, account: str) -> list[dict[str, Any]]:
        """Copies of the transfers made to `account`, oldest first."""
        with self._lock:
            return [_copy(t) for t in self.transfers if t["destination"] == account]

    def reverse(self, transfer_id: str, amount: int | None = None) -> dict[str, Any]:
        """Reverse `amount` of the transfer (all that is left, by default), crediting the balance
        back, and queue a `transfer.reversed` event; a copy of the transfer after it."""
        with self._lock:
            transfer = self.transfers[self._by_id[transfer_id]]
            left = transfer["amount"] - transfer["amount_reversed"]
            amount = left if amount is None else amount
            if not 0 < amount <= left:
                raise ValueError(f"cannot reverse {amount} of {transfer_id}: {left} left")
            reversal = {
                "id": _id("trr_"),
                "object": "transfer_reversal",
                "amount": amount,
                "balance_transaction": _id("txn_"),
                "created": int(time.time()),
                "currency": transfer["currency"],
                "destination_payment_refund": _id("pyr_"),
                "metadata": {},
                "source_refund": None,
                "transfer": transfer_id,
            }
            reversals = transfer["reversals"]
            reversals["data"].insert(0, reversal)
            reversals["total_count"] += 1
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
            self.balance[transfer["currency"]] += amount
            event = self._event("transfer.reversed", transfer, None, None)
        self._events.add(event)
        return _copy(transfer)

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` and Stripe's `api_error` (or `body`)
        before they reach the API: nothing is created, no idempotent answer kept."""
        if body is None:
            body = {"error": {"type": "api_error", "message": "An unknown error occurred"}}
        if headers is None and (status == 429 or status >= 500):
            headers = dict(RETRY)
        super().fail_next(count, status, body, headers)

    def lose_answers(self, count: int = 1, status: int | None = None) -> None:
        """The next `count` transfers are created (their idempotent answers kept, their events
        sent), then the connection is closed unanswered, or, with a `status`, answered with it
        and Stripe's `api_error`: a client must retry with the same key to learn the transfer."""
        with self._lock:
            self._lose.extend([status] * count)

    def wait_for_webhooks(self, count: int, timeout: float = 5.0) -> list[WebhookDelivery]:
        """Block until at least `count` deliveries were made (answered or not)."""
        with self._sent:
            if not self._sent.wait_for(lambda: len(self.webhooks_sent) >= count, timeout):
                raise TimeoutError(f"{len(self.webhooks_sent)} of {count} webhooks sent")
            return list(self.webhooks_sent)

    # -- the API -------------------------------------------------------------------------------

    def create_transfer(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if len(request.body) > MAX_BODY:
            return _too_large()
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= MAX_KEY:
            return stripe_error(
                400,
                "invalid_request_error",
                f"Idempotent key length is {len(key)}, which is outside accepted lengths. "
                f"Idempotent Keys must be 1-{MAX_KEY} characters long.",
            )
        params = request.form  # Stripe reads only form-encoded parameters
        request_id = _id("req_", 14)
        transfer = event = None
        with self._lock:
            saved = self._saved.get(key) if key is not None else None
            if saved is not None:
                return _replay(key or "", saved, params)
            malformed = _malformed(params)
            if malformed is not None:
                return malformed
            response = self._refusal(params)
            if response is None:
                transfer = self._create(params)
                event = self._event("transfer.created", transfer, request_id, key)
                response = Response(200, json=_copy(transfer))
            response.headers.update(_headers(request_id, request_id, key))
            if key is not None:
                done = event is None or not self.webhook_first
                self._saved[key] = _Saved(
                    dict(params), response.status, _copy(response.json), request_id, done
                )
            lost = self._lose.popleft() if event is not None and self._lose else 0
        if event is not None:
            if self.webhook_first:
                self._deliver(event)
                if key is not None:
                    self._saved[key].done = True
            else:
                self._events.add(event)
        if lost is None:
            raise _AnswerLost
        if lost:
            return stripe_error(lost, "api_error", "An unknown error occurred", headers=RETRY)
        return response

    def read_transfer(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        transfer_id = request.path_params["transfer_id"]
        with self._lock:
            index = self._by_id.get(transfer_id)
            if index is not None:
                return Response(200, json=_copy(self.transfers[index]))
        return stripe_error(
            404,
            "invalid_request_error",
            f"No such transfer: '{transfer_id}'",
            code="resource_missing",
            param="id",
        )

    def list_transfers(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        query = request.query
        unknown = sorted(set(query) - LIST_PARAMS)
        if unknown:
            return _unknown_param(unknown[0])
        limit_text = query.get("limit", "10")
        if not INTEGER.fullmatch(limit_text):
            return _invalid_integer("limit", f"Invalid integer: {limit_text}")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_LIMIT:
            bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
            return _invalid_integer("limit", f"This value must be {bound}.")
        group, destination = query.get("transfer_group"), query.get("destination")
        with self._lock:
            newest_first = [
                (index, t)
                for index, t in reversed(list(enumerate(self.transfers)))
                if (group is None or t["transfer_group"] == group)
                and (destination is None or t["destination"] == destination)
            ]
            for param in ("starting_after", "ending_before"):
                cursor = query.get(param)
                if cursor is not None and cursor not in self._by_id:
                    return stripe_error(
                        400,
                        "invalid_request_error",
                        f"No such transfer: '{cursor}'",
                        code="resource_missing",
                        param=param,
                    )
            if "starting_after" in query:
                cut = self._by_id[query["starting_after"]]
                pool = [t for index, t in newest_first if index < cut]
                page = pool[:limit]
            elif "ending_before" in query:
                cut = self._by_id[query["ending_before"]]
                pool = [t for index, t in newest_first if index > cut]
                page = pool[-limit:]
            else:
                pool = [t for _, t in newest_first]
                page = pool[:limit]
            answer = {
                "object": "list",
                "data": _copy(page),
                "has_more": len(pool) > limit,
                "url": "/v1/transfers",
            }
        return Response(200, json=answer)

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        return stripe_error(
            429,
            "invalid_request_error",
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            code="rate_limit",
            headers=RETRY,
        )

    def not_found(self, request: RecordedRequest) -> Response:
        return stripe_error(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({request.method}: {request.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def method_not_allowed(self, request: RecordedRequest, allowed: list[str]) -> Response:
        return self.not_found(request)

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
        """A body over `MAX_BODY` is refused unread; events wait until the answer is sent."""
        length = handler.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_BODY:
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
        response = _too_large()
        response.headers["Connection"] = "close"
        _send(handler, response)

    def _dispatch(self, request: RecordedRequest) -> Response:
        response = super()._dispatch(request)
        response.headers.setdefault("Request-Id", _id("req_", 14))
        response.headers.setdefault("Stripe-Version", API_VERSION)
        return response

    def _refused(self, request: RecordedRequest) -> Response | None:
        given = _api_key(request)
        if given == self.secret_key:
            return None
        if not given:
            message = (
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                "or we can help at https://support.stripe.com/."
            )
        else:
            message = f"Invalid API Key provided: {_masked(given)}"
        return stripe_error(
            401,
            "invalid_request_error",
            message,
            headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
        )

    def _refusal(self, params: dict[str, str]) -> Response | None:
        """Stripe's refusal of a well-formed create (under the lock), or None."""
        destination, currency = params["destination"], params["currency"].lower()
        if destination not in self.accounts:
            return stripe_error(
                400,
                "invalid_request_error",
                f"No such destination: '{destination}'",
                code="resource_missing",
                param="destination",
            )
        if not self.accounts[destination]:
            return stripe_error(
                400,
                "invalid_request_error",
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
                param="destination",
            )
        if self.balance[currency] < int(params["amount"]):
            return stripe_error(
                400,
                "invalid_request_error",
                "You have insufficient available funds in your Stripe account.",
                code="balance_insufficient",
            )
        return None

    def _create(self, params: dict[str, str]) -> dict[str, Any]:
        """Make the transfer and debit the balance (under the lock)."""
        transfer_id = _id("tr_")
        amount, currency = int(params["amount"]), params["currency"].lower()
        metadata = {}
        for name, value in params.items():
            found = METADATA.fullmatch(name)
            if found and value:  # an empty value sets nothing, as in Stripe
                metadata[found.group(1)] = value
        transfer = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": _id("txn_"),
            "created": int(time.time()),
            "currency": currency,
            "description": params.get("description") or None,
            "destination": params["destination"],
            "destination_payment": _id("py_"),
            "livemode": False,
            "metadata": metadata,
            "reversals": {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/transfers/{transfer_id}/reversals",
            },
            "reversed": False,
            "source_transaction": None,
            "source_type": "card",
            "transfer_group": params.get("transfer_group") or None,
        }
        self.balance[currency] -= amount
        self._by_id[transfer_id] = len(self.transfers)
        self.transfers.append(transfer)
        return transfer

    def _event(
        self, kind: str, transfer: dict[str, Any], request_id: str | None, key: str | None
    ) -> dict[str, Any]:
        """Record the event about the transfer as it is now (under the lock)."""
        event = {
            "id": _id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": _copy(transfer)},
            "livemode": False,
            "pending_webhooks": 1 if self.webhook_url else 0,
            "request": {"id": request_id, "idempotency_key": key},
            "type": kind,
        }
        self.events.append(event)
        return event

    def _deliver(self, event: dict[str, Any]) -> None:
        """POST the event to `webhook_url`, signed, and record the receiver's answer."""
        if self.webhook_url is None:
            return
        body = json.dumps(event, indent=2).encode()
        signature = sign(body, self.webhook_secret, int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature,
        }
        status: int | None = None
        try:
            post = self._client.post if self._client is not None else httpx.post
            status = post(self.webhook_url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            pass  # no answer: the status stays None
        with self._sent:
            self.webhooks_sent.append(WebhookDelivery(event, body, signature, status, self.clock()))
            self._sent.notify_all()


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header for `payload` sent at `timestamp` (Unix seconds):
    `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<payload>", keyed by the secret>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def stripe_error(
    status: int,
    kind: str,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return Response(status, json={"error": error}, headers=dict(headers or {}))


def _malformed(params: dict[str, str]) -> Response | None:
    """Stripe's refusal of a create's parameters themselves (nothing is kept), or None."""
    for name in params:
        if name not in CREATE_PARAMS and not METADATA.fullmatch(name):
            return _unknown_param(name)
    for name in ("amount", "currency", "destination"):
        if not params.get(name):
            return stripe_error(
                400,
                "invalid_request_error",
                f"Missing required param: {name}.",
                code="parameter_missing",
                param=name,
            )
    amount = params["amount"]
    if not INTEGER.fullmatch(amount):
        return _invalid_integer("amount", f"Invalid integer: {amount}")
    if int(amount) < 1:
        return _invalid_integer("amount", "This value must be greater than or equal to 1.")
    if not CURRENCY.fullmatch(params["currency"]):
        return stripe_error(
            400,
            "invalid_request_error",
            f"Invalid currency: {params['currency'].lower()}.",
            param="currency",
        )
    return None


def _replay(key: str, saved: _Saved, params: dict[str, str]) -> Response:
    """The kept answer again, or Stripe's refusal to give it for these parameters."""
    if saved.params != params:
        return stripe_error(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request.",
        )
    if not saved.done:
        return stripe_error(
            409,
            "idempotency_error",
            "There is currently another in-progress request using this Idempotent Key (that "
            "probably means you submitted twice, and the other request is still going "
            f"through): {key}. Please try again later.",
            headers=RETRY,
        )
    headers = _headers(_id("req_", 14), saved.request_id, key)
    headers["Idempotent-Replayed"] = "true"
    return Response(saved.status, json=_copy(saved.body), headers=headers)


def _headers(request_id: str, original: str, key: str | None) -> dict[str, str]:
    headers = {"Request-Id": request_id, "Original-Request": original}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def _unknown_param(name: str) -> Response:
    return stripe_error(
        400,
        "invalid_request_error",
        f"Received unknown parameter: {name}",
        code="parameter_unknown",
        param=name,
    )


def _invalid_integer(param: str, message: str) -> Response:
    return stripe_error(
        400, "invalid_request_error", message, code="parameter_invalid_integer", param=param
    )


def _too_large() -> Response:
    return stripe_error(
        413, "invalid_request_error", f"Request body too large: at most {MAX_BODY} bytes."
    )


def _api_key(request: RecordedRequest) -> str:
    """The key given as `Bearer <key>`, or as Basic auth's user name; "" when none is."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return b64decode(value, validate=True).decode().partition(":")[0]
        except ValueError:
            return ""
    return ""


def _masked(key: str) -> str:
    """The key as Stripe shows a wrong one: its prefix and last four characters only."""
    prefix = KEY_PREFIX.match(key)
    start = prefix.end() if prefix else 0
    hidden = max(len(key) - start - 4, 0)
    return key[:start] + "*" * hidden + key[start + hidden :]


def _id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(ALNUM) for _ in range(length))


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))

"""What every lead destination shares: the lead as Rally hands it over, the outcome per person,
the connector protocol, the settings a connector reads, a client-side rate limit, and the
mapping of HTTP answers onto the error tree.

A connector upserts a batch of leads and reports one `Outcome` per lead it was given. A failure
of the whole call (the remote down, a 429 or 5xx, a refused token, a 404 from the upsert endpoint
itself, which means the API is not at the configured address, a batch it rejects as a whole) is
raised instead, as an `integrations.errors` exception; the drain decides what to do.
Connectors never retry by themselves: the drain is the one retry layer.
"""

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx
from pydantic import SecretStr

from config.settings import RallySettings
from integrations.errors import (
    IntegrationError,
    PermanentError,
    TransientError,
    UnavailableError,
)
from integrations.http import json_object, request, retry_after


@dataclass(frozen=True)
class Lead:
    """One person as a destination receives them. `key` is Rally's id for the person, stable
    across syncs. Consent is True (granted), False (revoked: send as unsubscribed, never as
    subscribed) or None (nothing on record: leave the remote's own status alone). `custom_fields`
    are already under the remote's names, from the destination's mapping. `sync_id` is unique to
    this sync of this person (an idempotency key for remotes that take one)."""

    key: str
    contact_id: int
    campaign: str
    sync_id: str = ""
    email: str | None = None
    phone: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    postal_code: str | None = None
    tags: tuple[str, ...] = ()
    email_consent: bool | None = None
    sms_consent: bool | None = None
    source_code: str | None = None
    first_source_code: str | None = None
    creator: str | None = None
    utm: Mapping[str, str] = field(default_factory=dict)
    custom_fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What became of one lead: its id at the remote, or the error that keeps it out; and, from
    a remote that answers with it, the person's subscription status there per channel (`email`,
    `sms`) in the remote's words (`subscribed`, `unsubscribed`, `bouncing` ...), which may
    differ from the consent Rally sent."""

    key: str
    remote_id: str | None = None
    error: IntegrationError | None = None
    subscriptions: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Readiness:
    """What `Connector.check` found: what it verified, what the remote lacks that Rally writes
    (`missing`, each saying what creating it would make), what it created, and anything else
    that stands in the way (`problems`)."""

    verified: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    created: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not (self.missing or self.problems)


class Connector(Protocol):
    """One destination. `batch_size` is how many leads one `upsert` call may take. A
    connector names this class as its base to take the default `check`."""

    name: str
    batch_size: int

    def upsert(self, leads: Sequence[Lead]) -> list[Outcome]:
        """Create or update these people; one outcome per lead, in any order."""
        ...

    def forget(self, remote_id: str) -> None:
        """Delete the person the remote knows by `remote_id`, or raise `PermanentError` where
        the remote has no such call."""
        ...

    def verify(self) -> str:
        """Try the credentials with one cheap read (one that changes nothing there) and say
        what was verified; a refusal is raised as `upsert` raises it (a refused credential or
        a wrong API URL as `UnavailableError`)."""
        ...

    def check(self, *, create_missing: bool = False, fields: Collection[str] = ()) -> Readiness:
        """Whether the destination can take Rally's leads before any is sent: its credentials
        and whatever the remote must already hold (`fields` are the remote names the
        destination's mapping writes); with `create_missing`, what it lacks is created. The
        default only verifies the credentials."""
        return Readiness(verified=(self.verify(),))


class ConnectorSettings(RallySettings):
    """A destination type's own settings, declared beside its connector and read like every
    Rally setting. Each field is a keyword argument of the connector's constructor, set by
    `<env_prefix><FIELD>` (a subclass sets `env_prefix`, `RALLY_HUBSPOT_` say); `required`
    names the fields a destination of this type cannot work without, in the order they are
    asked for."""

    required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable that sets `field` (`RALLY_HUBSPOT_TOKEN`)."""
        return f"{cls.env_prefix}{field}".upper()

    @classmethod
    def variables(cls) -> list[str]:
        """Every variable these settings read, for the documentation to list."""
        return [cls.variable(field) for field in cls.model_fields]

    def arguments(self) -> dict[str, Any]:
        """The fields as the connector's constructor takes them, secrets revealed."""
        values = {field: getattr(self, field) for field in type(self).model_fields}
        return {
            field: value.get_secret_value() if isinstance(value, SecretStr) else value
            for field, value in values.items()
        }

    def missing(self) -> list[str]:
        """The variables of the required fields that are not set."""
        arguments = self.arguments()
        return [self.variable(field) for field in self.required if not arguments[field]]


def check_options(
    options: Mapping[str, Any] | None, allowed: Iterable[str], service: str
) -> dict[str, Any]:
    """The destination's options as a dict; any `allowed` does not name is a `ValueError`."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {service} options: {', '.join(unknown)}")
    return options


def batch_size(options: Mapping[str, Any], default: int) -> int:
    """The `batch_size` option as a number, else `default`."""
    return int(options.get("batch_size") or default)


def refused(key: str, error: IntegrationError) -> Outcome:
    """The outcome of a refusal of one person; a transient one is the whole destination's, and
    is raised."""
    if isinstance(error, TransientError):
        raise error
    return Outcome(key, error=error)


class RateLimit:
    """At most `requests` calls in any `per` seconds, on the client's side, plus pauses the
    server asks for. Thread-safe, so several workers of one process share one budget (lead sync
    shares it further, with every process on one store: `tasks.rate_limits`).

    A call counts from when its answer came back (`answered`), not from when it left: a server
    that counts calls as they arrive has seen it by then at the latest, however late a busy
    machine or network delivered it. So calls a whole window apart on this side are a whole
    window apart on the server's too; the small margin over `per` covers the two clocks."""

    def __init__(
        self,
        requests: int,
        per: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests < 1 or per <= 0:
            raise ValueError("a rate limit needs at least one request per a positive time")
        self.requests, self.per = requests, per
        self.window = per * 1.001 + 0.01
        self.clock, self.sleep = clock, sleep
        self._sent: deque[tuple[float, int]] = deque()  # (when it counts from, ticket)
        self._tickets = itertools.count(1)
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> int:
        """Wait until one more call may go, and count it from now: the ticket it returns, given
        to `answered` once the call is answered, counts it from then instead."""
        while True:
            with self._lock:
                now = self.clock()
                while self._sent and self._sent[0][0] <= now - self.window:
                    self._sent.popleft()
                wait = self._paused_until - now
                if len(self._sent) >= self.requests:
                    wait = max(wait, self._sent[0][0] + self.window - now)
                if wait <= 0:
                    ticket = next(self._tickets)
                    self._sent.append((now, ticket))
                    return ticket
            self.waited += wait
            self.sleep(wait)

    def answered(self, ticket: int) -> None:
        """The call of `ticket` was answered (or failed): it counts from now."""
        with self._lock:
            now = self.clock()
            for entry in self._sent:
                if entry[1] == ticket:
                    self._sent.remove(entry)
                    break
            self._sent.append((now, ticket))  # every other entry counts from earlier: in order

    def pause(self, seconds: float) -> None:
        """The server asked for a pause (Retry-After, or a budget it says is spent)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + max(seconds, 0.0))

    def release(self) -> None:
        """Give back what this limit holds that others could use (a limit of this process's
        own holds nothing)."""


def one_by_one(leads: Sequence[Lead], upsert_one: Callable[[Lead], Outcome]) -> list[Outcome]:
    """Outcomes of APIs that take one person per request. A failure of the whole destination
    is raised when it comes first; after that, the leads not yet sent get it as their outcome,
    so the work already done is kept."""
    outcomes: list[Outcome] = []
    for index, lead in enumerate(leads):
        try:
            outcomes.append(upsert_one(lead))
        except TransientError as exc:
            if not outcomes:
                raise
            outcomes += [
                Outcome(rest.key, error=type(exc)(str(exc), retry_after=exc.retry_after))
                for rest in leads[index:]
            ]
            break
    return outcomes


def send(
    client: httpx.Client,
    limit: RateLimit | None,
    method: str,
    url: str,
    *,
    where: str,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call within the rate limit (see `integrations.http.request` for failures)."""
    if limit is None:
        return request(client, method, url, where=where, **kwargs)
    ticket = limit.acquire()
    try:
        return request(client, method, url, where=where, **kwargs)
    finally:
        limit.answered(ticket)


def refusal(
    response: httpx.Response,
    where: str,
    message: str | None = None,
    *,
    route: bool,
    limit: RateLimit | None = None,
    secrets: Sequence[str] = (),
) -> IntegrationError:
    """The error for a non-success answer: 429 and 5xx are transient (and pause `limit` for
    as long as the server asked), 401 and 403 mean the whole destination is unusable, any other
    4xx is this request's own fault. `message` is the remote's words (else its reason phrase);
    `secrets` are scrubbed from it.

    `route` says what the call's URL names, as the caller knows it: the API's own endpoint (an
    upsert, a collection, a read that checks the credentials), where a 404 means the API is not
    at that address (a wrong API URL or version) and the whole destination is unusable; or one
    record (`route=False`), where a 404 is that record's own (a person already gone)."""
    status = response.status_code
    text = message or _message(json_object(response)) or response.reason_phrase
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    detail = f"{where}: {text} (HTTP {status})"
    if status == 429 or status >= 500:
        wait = retry_after(response)
        if limit is not None and status == 429:
            limit.pause(wait if wait is not None else limit.per)
        return TransientError(detail, retry_after=wait)
    if status in (401, 403):
        return UnavailableError(f"{detail}; check the destination's credentials")
    if status in (406, 415):  # the API refuses how Rally speaks to it: no lead would fare better
        return UnavailableError(f"{detail}; the destination refuses Rally's requests as sent")
    if status == 404 and route:
        return UnavailableError(f"{detail}; {_endpoint(response)} is not there: check the API URL")
    return PermanentError(detail)


def _endpoint(response: httpx.Response) -> str:
    """The method and URL the answer was for, without its query or any user and password in it
    (`POST https://actionnetwork.org/api/v2/people/`)."""
    request = response.request
    return f"{request.method} {request.url.copy_with(query=None, fragment=None, userinfo=b'')}"


def _message(body: Mapping[str, Any]) -> str:
    """The human part of the common error bodies (`message`, `error`, `errors[0].detail` ...)."""
    for key in ("message", "error", "detail", "title"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        if isinstance(first, str):
            return first
        if isinstance(first, Mapping):
            return _message(first) or str(first)
    return ""

"""Outgoing webhooks, signed per the Standard Webhooks specification
(https://www.standardwebhooks.com): each POST carries `webhook-id` (the same on every try, so a
receiver can drop a repeat), `webhook-timestamp` (seconds, of this try) and `webhook-signature`
(`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the subscription's secret).

A 2xx answer is delivered; 410 Gone asks the sender to stop (`GoneError`); other 4xx refuse this
message (`PermanentError`), except 408, 425 and 429, which with 5xx, redirects and network
failures are passing (`TransientError`).
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from config.errors import RallyError
from integrations.errors import PermanentError, TransientError
from integrations.http import http_client, retry_after

SECRET_PREFIX = "whsec_"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
PASSING = {408, 425, 429}
KEPT_OF_ANSWER = 300  # characters of a refusal's body kept as the error


class GoneError(PermanentError):
    """The receiver answered 410 Gone: it wants no more deliveries."""


def new_secret() -> str:
    """A signing secret in the specification's form: `whsec_` and 24 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for one try."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def body_of(payload: dict[str, Any]) -> bytes:
    """The JSON a receiver gets: compact, keys in a stable order."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def check_url(url: str) -> str:
    """A receiver's URL, as given, if Rally may post to it: https, or http to this machine
    only (a local n8n, a test receiver), so that event data never crosses a network in the
    clear."""
    if len(url) > 2000:
        raise RallyError("the webhook URL is longer than 2,000 characters")
    url = url.strip()
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise RallyError(
            f"the webhook URL {url!r} holds spaces or other characters a URL cannot: "
            "percent-encode them (and give a non-ASCII host in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        hostname, _ = parts.hostname, parts.port  # a port past 65535 is a ValueError
    except ValueError:  # a bracketed host that is no IPv6 address, say
        raise RallyError(f"the webhook URL {url!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise RallyError(f"the webhook URL must be an http(s) address, not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise RallyError(
            "the webhook URL must not hold a user name or password (it is shown in lists "
            "and logs): the receiver checks each delivery's signature instead"
        )
    if parts.scheme == "http" and not _loopback(hostname):
        raise RallyError(
            f"the webhook URL must use https ({url!r}); plain http is allowed to this "
            "machine only (localhost, 127.0.0.1)"
        )
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookPoster:
    """Posts signed deliveries over one kept-alive connection pool; redirects are not followed
    (a receiver that moved is a failure to look at, not a hop to take with the event)."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self.client = client or http_client(timeout=TIMEOUT, follow_redirects=False)
        self.headers = {"content-type": "application/json", "user-agent": "Rally-Webhooks/1"}

    def post(
        self, url: str, secret: str, message_id: str, payload: dict[str, Any], *, at: datetime
    ) -> None:
        body = body_of(payload)
        timestamp = int(at.timestamp())
        headers = self.headers | {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, message_id, timestamp, body),
        }
        try:
            with self.client.stream("POST", url, content=body, headers=headers) as answer:
                # read (a little of) the answer, so that its connection is kept for the next
                text = _start_of(answer)
                if answer.is_success:
                    return
        except httpx.HTTPError as exc:
            raise TransientError(f"{url}: {type(exc).__name__} {exc}".strip()) from None
        said = f"{url} answered {answer.status_code}: {text}".strip()
        if answer.status_code == 410:
            raise GoneError(said)
        if 400 <= answer.status_code < 500 and answer.status_code not in PASSING:
            raise PermanentError(said)
        raise TransientError(said, retry_after=retry_after(answer))

    def close(self) -> None:
        self.client.close()


def _start_of(answer: httpx.Response) -> str:
    """The first characters of an answer's body, read no further (a receiver's page may be
    large: then its connection is closed rather than kept)."""
    start = b""
    for chunk in answer.iter_bytes():
        start += chunk
        if len(start) >= KEPT_OF_ANSWER:
            break
    return start[:KEPT_OF_ANSWER].decode("utf-8", "replace").strip()

"""Creator payouts through Stripe Connect: one `POST {api_url}/v1/transfers` per payout, from
the campaign's Stripe balance to the creator's connected account (`acct_...`), form-encoded
`amount` (cents), `currency`, `destination`, `transfer_group` and `metadata[...]`, with the
secret key as a Bearer token. Every call carries an `Idempotency-Key`: Stripe answers a repeat
of it (within 24 hours) with the first call's answer, so a payout sent again after a crash
finds its first transfer instead of making a second.

Stripe allows 100 operations a second in live mode and 25 in test mode (a secret key starting
`sk_test_`); over it, a 429 with the code `rate_limit` and no Retry-After. Its errors are
`{"error": {"type", "code", "param", "message"}}`: 429 and 5xx are transient (worth the same
call again, with the same key), 401 and 403 mean the key is refused, a `balance_insufficient`
400 means the campaign's balance is spent (no payout could go: the run stops), and any other
400 is this payout's own (an unknown destination, an account that cannot take transfers).

Stripe signs its webhooks with the endpoint's secret (`whsec_...`): `Stripe-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` (more than one `v1` while a secret is
being rolled); `verify_signature` checks one and its age.
"""

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import Field, SecretStr

from config.settings import RallySettings
from integrations.crm import RateLimit, send
from integrations.errors import (
    IntegrationError,
    PermanentError,
    TransientError,
    UnavailableError,
)
from integrations.http import json_body, json_object

LIVE_RATE, TEST_RATE = (100, 1.0), (25, 1.0)
SIGNATURE_HEADER = "Stripe-Signature"


class StripeSettings(RallySettings):
    """`RALLY_STRIPE_*`: the platform account's secret key, and its webhook endpoint's secret."""

    env_prefix = "RALLY_STRIPE_"

    api_url: str = Field("https://api.stripe.com", description="Stripe API")
    secret_key: SecretStr = Field(SecretStr(""), description="Stripe secret key (sk_...)")
    webhook_secret: SecretStr = Field(
        SecretStr(""), description="Stripe webhook endpoint secret (whsec_...)"
    )

    @property
    def rate(self) -> tuple[int, float]:
        """The documented limit of the key's mode."""
        return TEST_RATE if self.secret_key.get_secret_value().startswith("sk_test_") else LIVE_RATE


class Stripe:
    """Transfers from one platform account, within its rate limit."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        api_url: str,
        secret_key: str,
        limit: RateLimit | None = None,
    ) -> None:
        self.client, self.limit = client, limit
        self._transfers = api_url.rstrip("/") + "/v1/transfers"
        self._key = secret_key
        self._headers = {"Authorization": f"Bearer {secret_key}"}

    def transfer(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        key: str,
        group: str,
        metadata: Mapping[str, str],
    ) -> str:
        """Move `amount_cents` to `destination`, once for `key`; the transfer's id."""
        form = {
            "amount": str(amount_cents),
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": group,
            **{f"metadata[{name}]": value for name, value in metadata.items()},
        }
        headers = self._headers | {"Idempotency-Key": key}
        response = send(
            self.client, self.limit, "POST", self._transfers, where="Stripe",
            data=form, headers=headers,
        )  # fmt: skip
        answer = json_object(response)
        if not response.is_success:
            raise self._error(response, answer)
        if not isinstance(answer.get("id"), str):
            raise TransientError("Stripe: the transfer was accepted without an id")
        return str(answer["id"])

    def transfers_in(self, group: str) -> list[dict[str, Any]]:
        """The transfers of `transfer_group` (a payout's own group holds its one transfer)."""
        response = send(
            self.client, self.limit, "GET", self._transfers, where="Stripe",
            params={"transfer_group": group, "limit": "100"}, headers=self._headers,
        )  # fmt: skip
        answer = json_object(response)
        if not response.is_success:
            raise self._error(response, answer)
        data = answer.get("data")
        return [t for t in data if isinstance(t, dict)] if isinstance(data, list) else []

    def _error(self, response: httpx.Response, answer: Mapping[str, Any]) -> IntegrationError:
        status = response.status_code
        error = answer.get("error")
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or error.get("type") or "")
        message = str(error.get("message") or response.reason_phrase)
        if self._key:
            message = message.replace(self._key, "[secret key]")
        detail = f"Stripe: {message} (HTTP {status}" + (f", {code})" if code else ")")
        if status == 429 or status >= 500:
            if status == 429 and self.limit is not None:
                self.limit.pause(self.limit.per)
            return TransientError(detail)
        if status in (401, 403):
            return UnavailableError(f"{detail}; check RALLY_STRIPE_SECRET_KEY")
        if code == "balance_insufficient":
            return UnavailableError(f"{detail}; top up the campaign's Stripe balance")
        return PermanentError(detail)


class SignatureError(ValueError):
    """A webhook whose Stripe-Signature does not prove it came from Stripe, just now."""


def verify_signature(
    header: str | None, body: bytes, secret: str, *, now: float, tolerance: float = 300
) -> None:
    """Raise SignatureError unless one of the header's `v1` signatures signs this raw body with
    the endpoint's secret, within `tolerance` seconds of `now`."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    pairs = [part.strip().partition("=")[::2] for part in header.split(",")[:16]]
    timestamp = next((value for name, value in pairs if name == "t"), "")
    signatures = [value.lower() for name, value in pairs if name == "v1"]
    if not re.fullmatch(r"\d{1,12}", timestamp) or not signatures:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header")
    age = now - int(timestamp)
    if abs(age) > tolerance:
        raise SignatureError(f"signed {abs(age):.0f} s {'ago' if age > 0 else 'ahead'}")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    if not any(hmac.compare_digest(expected.hexdigest(), s) for s in signatures):
        raise SignatureError("signature does not match the body")


def parse_event(body: bytes) -> tuple[str, dict[str, Any]]:
    """An event's type and its object (`data.object`); ValueError for anything else."""
    try:
        event = json_body(body)
    except ValueError as exc:
        raise ValueError(f"the body: {exc}") from None
    data = event.get("data") if isinstance(event, dict) else None
    found = data.get("object") if isinstance(data, dict) else None
    if not isinstance(event.get("type"), str) or not isinstance(found, dict):
        raise ValueError("not a Stripe event: it needs a type and data.object")
    return event["type"], found

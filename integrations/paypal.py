"""Creator payouts through PayPal Payouts: one `POST {api_url}/v1/payments/payouts` per payout, a
batch of one item to the creator's PayPal account (an email address or a PayPal id), with an
OAuth 2.0 access token from `POST /v1/oauth2/token` (client credentials, kept until it
expires or is refused). Each call carries `PayPal-Request-Id`, PayPal's idempotency key, and
the batch's `sender_batch_id` and the item's `sender_item_id` are the payout's reference, so a
repeat after a crash is answered with the first batch.

A `sender_batch_id` used before is refused with a link to the first batch (PayPal keeps
request ids and sender batch ids for 30 days): `transfer` answers with that batch, so a payout
sent again after its answer was lost is never paid twice.

PayPal takes a payout at once (201, the batch `PENDING`) and pays it later: each item ends
`SUCCESS`, or `FAILED`, `BLOCKED`, `RETURNED` (the money comes back), or waits as `UNCLAIMED`
(a receiver without an account, for 30 days). Its webhooks (`PAYMENT.PAYOUTS-ITEM.*`) say so,
and `batch` reads a batch's items. A webhook is proved genuine by PayPal itself:
`verify_webhook` posts its transmission headers and body to
`/v1/notifications/verify-webhook-signature`.

Errors are `{"name", "message", "details"}`: 429 (`RATE_LIMIT_REACHED`) and 5xx are transient,
401 and 403 mean the credentials are refused, `INSUFFICIENT_FUNDS` means the campaign's balance
is spent (no payout could go: the run stops), and other 4xx are this payout's own (a receiver
PayPal refuses). PayPal does not publish its rate limits; Rally keeps to `RATE`.
"""

import threading
import time
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
from integrations.http import json_object

RATE = (10, 1.0)
# Items' end states: paid, or not (the money stays with the campaign, or comes back).
ITEM_PAID, ITEM_NOT_PAID = "SUCCESS", ("FAILED", "BLOCKED", "RETURNED", "REFUNDED", "DENIED")
TRANSMISSION = (
    "paypal-transmission-id",
    "paypal-transmission-time",
    "paypal-transmission-sig",
    "paypal-cert-url",
    "paypal-auth-algo",
)


class PayPalSettings(RallySettings):
    """`RALLY_PAYPAL_*`: the REST app's credentials, and the id of its webhook."""

    env_prefix = "RALLY_PAYPAL_"

    api_url: str = Field("https://api-m.paypal.com", description="PayPal REST API")
    client_id: str = Field("", description="PayPal REST app client id")
    client_secret: SecretStr = Field(SecretStr(""), description="PayPal REST app secret")
    webhook_id: str = Field("", description="The id PayPal gave Rally's webhook (WH-...)")


class PayPal:
    """Payouts from one PayPal business account, within `RATE`."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        api_url: str,
        client_id: str,
        client_secret: str,
        limit: RateLimit | None = None,
    ) -> None:
        self.client, self.limit = client, limit
        self._api = api_url.rstrip("/")
        self._credentials = (client_id, client_secret)
        self._token: tuple[str, float] | None = None  # the token and when it stops being used
        self._lock = threading.Lock()

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
        """Pay `amount_cents` to the PayPal account `destination`, once for `key`; the batch's
        id (the item is paid later: see the module)."""
        receiver = "EMAIL" if "@" in destination else "PAYPAL_ID"
        body = {
            "sender_batch_header": {
                "sender_batch_id": key,
                "recipient_type": receiver,
                "email_subject": f"You have a payment from {metadata.get('campaign', 'Rally')}",
            },
            "items": [
                {
                    "recipient_type": receiver,
                    "amount": {"value": f"{amount_cents / 100:.2f}", "currency": currency},
                    "receiver": destination,
                    "sender_item_id": group,
                    "note": f"Creator payout {metadata.get('rally_payout', '')}".strip(),
                }
            ],
        }
        response = self._call(
            "POST", "/v1/payments/payouts", json=body, request_id=key, answered=(400,)
        )
        if response.status_code == 400:
            made = first_batch(response)
            if made is None:
                raise self._error(response)
            return made  # made before, its answer lost: PayPal names the first batch
        answer = json_object(response)
        header = answer.get("batch_header")
        batch = header.get("payout_batch_id") if isinstance(header, dict) else None
        if not isinstance(batch, str) or not batch:
            raise TransientError("PayPal: the payout was taken without a batch id")
        return batch

    def batch(self, batch_id: str) -> list[dict[str, Any]]:
        """The items of a batch, as PayPal has them now."""
        response = self._call("GET", f"/v1/payments/payouts/{batch_id}")
        items = json_object(response).get("items")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def verify_webhook(self, headers: Mapping[str, str], event: Any, webhook_id: str) -> bool:
        """Whether PayPal says it sent this event to our webhook."""
        said = {name: headers.get(name, "") for name in TRANSMISSION}
        if not all(said.values()):
            return False
        body = {
            "auth_algo": said["paypal-auth-algo"],
            "cert_url": said["paypal-cert-url"],
            "transmission_id": said["paypal-transmission-id"],
            "transmission_sig": said["paypal-transmission-sig"],
            "transmission_time": said["paypal-transmission-time"],
            "webhook_id": webhook_id,
            "webhook_event": event,
        }
        answer = json_object(
            self._call("POST", "/v1/notifications/verify-webhook-signature", json=body)
        )
        return answer.get("verification_status") == "SUCCESS"

    def _call(
        self,
        method: str,
        path: str,
        *,
        request_id: str | None = None,
        answered: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """One call with a current token; a token refused mid-life is fetched again once. An
        error status is raised as its IntegrationError, except those `answered` returns."""
        for fresh in (False, True):
            headers = {"Authorization": f"Bearer {self._access_token(fresh)}"}
            if request_id:
                headers["PayPal-Request-Id"] = request_id
            response = send(
                self.client, self.limit, method, self._api + path, where="PayPal",
                headers=headers, **kwargs,
            )  # fmt: skip
            if response.status_code != 401 or fresh:
                break
        if not response.is_success and response.status_code not in answered:
            raise self._error(response)
        return response

    def _access_token(self, fresh: bool) -> str:
        with self._lock:
            if fresh or self._token is None or self._token[1] <= time.monotonic():
                response = send(
                    self.client, self.limit, "POST", self._api + "/v1/oauth2/token",
                    where="PayPal", data={"grant_type": "client_credentials"},
                    auth=self._credentials,
                )  # fmt: skip
                answer = json_object(response)
                if not response.is_success or not isinstance(answer.get("access_token"), str):
                    raise self._error(response)
                life = float(answer.get("expires_in") or 300)
                self._token = (answer["access_token"], time.monotonic() + life * 0.9)
            return self._token[0]

    def _error(self, response: httpx.Response) -> IntegrationError:
        status = response.status_code
        answer = json_object(response)
        name = str(answer.get("name") or answer.get("error") or "")
        message = str(
            answer.get("message") or answer.get("error_description") or response.reason_phrase
        )
        details = answer.get("details")
        if isinstance(details, list) and details and isinstance(details[0], dict):
            message += f" ({details[0].get('field', '')}: {details[0].get('issue', '')})"
        secret = self._credentials[1]
        if secret:
            message = message.replace(secret, "[secret]")
        detail = f"PayPal: {message} (HTTP {status}" + (f", {name})" if name else ")")
        if status == 429 or status >= 500:
            if status == 429 and self.limit is not None:
                self.limit.pause(self.limit.per)
            return TransientError(detail)
        if status in (401, 403):
            return UnavailableError(f"{detail}; check RALLY_PAYPAL_CLIENT_ID and _SECRET")
        if name == "INSUFFICIENT_FUNDS":
            return UnavailableError(f"{detail}; add funds to the campaign's PayPal account")
        if name == "USER_BUSINESS_ERROR" and "sender_batch_id" in message.lower():
            # made before, its answer lost past PayPal's memory of the request id: not a
            # refusal (that could pay twice); `transfer` takes the first batch from its link
            return TransientError(detail)
        return PermanentError(detail)


def first_batch(response: httpx.Response) -> str | None:
    """The id of the batch a refused create's `sender_batch_id` was used for: PayPal refuses a
    `sender_batch_id` used in the last 30 days with a link to the first payout batch."""
    answer = json_object(response)
    if answer.get("name") != "USER_BUSINESS_ERROR":
        return None
    for detail in answer.get("details") or []:
        if not isinstance(detail, dict) or str(detail.get("field", "")).upper() != (
            "SENDER_BATCH_ID"
        ):
            continue
        for link in detail.get("link") or detail.get("links") or []:
            href = link.get("href") if isinstance(link, dict) else None
            if isinstance(href, str) and "/v1/payments/payouts/" in href:
                batch = href.rstrip("/").rsplit("/", 1)[1]
                return batch or None
    return None

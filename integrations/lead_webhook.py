"""A generic destination: leads POSTed as signed JSON to a URL the organizer runs.

Body `{"type": "leads.upserted", "leads": [<record>, ...]}` (records as in the file export) or
`{"type": "lead.forgotten", "key": "<key>"}`. Header `Rally-Signature: t=<unix time>,s=<hex>`
with `s = HMAC-SHA256(secret, t + "." + body)`, the same scheme TikTok uses, so a receiver can
reject stale or forged calls; `Idempotency-Key` lets it recognise a repeat after a crash.

Options: `url` (required), where the leads go, and `batch_size` (default `BATCH_SIZE`). The
secret is `RALLY_LEAD_WEBHOOK_SECRET`, one for every webhook destination.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import Field, SecretStr

from integrations import crm
from integrations.crm import Connector, ConnectorSettings, Lead, Outcome, RateLimit, refusal, send
from integrations.lead_files import lead_record

BATCH_SIZE = 100
RATE = (10, 1.0)


def signature(secret: str, body: bytes, at: int) -> str:
    """The `Rally-Signature` header of `body` sent at Unix time `at`."""
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},s={digest}"


class LeadWebhookSettings(ConnectorSettings):
    """`RALLY_LEAD_WEBHOOK_SECRET`: the key every lead webhook is signed with."""

    env_prefix = "RALLY_LEAD_WEBHOOK_"
    required = ("secret",)

    secret: SecretStr = Field(
        SecretStr(""), description="Signs lead webhooks (Rally-Signature header)"
    )


class LeadWebhook(Connector):
    """One receiver's URL, called with signed batches of leads."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        name: str,
        secret: str,
        limit: RateLimit | None = None,
        options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        options = dict(options or {})
        if not options.get("url"):
            raise ValueError("options.url is not set")
        self.client, self.name, self.url, self.limit = client, name, str(options["url"]), limit
        self.batch_size = crm.batch_size(options, BATCH_SIZE)
        self._secret, self._clock = secret, clock

    def upsert(self, leads: Sequence[Lead]) -> list[Outcome]:
        body = {"type": "leads.upserted", "leads": [lead_record(lead) for lead in leads]}
        key = hashlib.sha256("\n".join(lead.sync_id for lead in leads).encode()).hexdigest()
        self._post(body, key)
        return [Outcome(lead.key, remote_id=lead.key) for lead in leads]

    def verify(self) -> str:
        """Nothing to read: a receiver takes only Rally's signed posts, and a post would be a
        delivery."""
        return "its secret is set; a receiver has no call that only reads, so nothing was sent"

    def forget(self, remote_id: str) -> None:
        self._post({"type": "lead.forgotten", "key": remote_id}, f"forget:{remote_id}")

    def _post(self, body: dict[str, Any], idempotency_key: str) -> None:
        raw = json.dumps(body, ensure_ascii=False, default=str).encode()
        where = f"webhook {self.name}"
        response = send(
            self.client,
            self.limit,
            "POST",
            self.url,
            where=where,
            content=raw,
            headers={
                "Content-Type": "application/json",
                "Rally-Signature": signature(self._secret, raw, int(self._clock())),
                "Idempotency-Key": idempotency_key,
            },
        )
        if not response.is_success:
            # One URL takes every call, forgets too: a 404 means it is not the receiver's.
            raise refusal(response, where, route=True, limit=self.limit, secrets=[self._secret])

"""TikTok's signed webhooks at `/webhooks/tiktok`, answered by a plain ASGI endpoint in front of
the app: the busiest route by far, and at a thousand notifications a second FastAPI's routing,
dependencies and middleware would cost more than checking and storing each one. Every other
request goes on to the app as usual.

A notification TikTok signed with our client secret is stored as an event before it is
answered 200 (a redelivery is only counted; the account's own comments and messages echoed
back and read receipts are answered and not stored); a bad or stale signature is 401, a body
Rally cannot read 400, one over `MAX_WEBHOOK_BYTES` 413, and without a client secret 503.
"""

import asyncio
import json
import logging
from typing import Any

from integrations.tiktok import SIGNATURE_HEADER, SignatureError, parse_webhook, verify_signature
from tasks.engagement.inbound import webhook_event
from web.deps import AppState
from web.pages import PRIVATE_HEADERS, bounded_body

log = logging.getLogger(__name__)
PATH = "/webhooks/tiktok"
MAX_WEBHOOK_BYTES = 64 * 1024  # TikTok's notifications are a few hundred bytes
SIGNATURE = SIGNATURE_HEADER.lower().encode()


class TikTokWebhooks:
    """The ASGI middleware that answers `POST /webhooks/tiktok` itself (see the module)."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status, answer = await self.answer(scope, receive)
        body = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + PRIVATE_HEADERS})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def answer(self, scope: Any, receive: Any) -> tuple[int, dict[str, Any]]:
        headers = dict(scope["headers"])
        body = await bounded_body(headers, receive, MAX_WEBHOOK_BYTES)
        if body is None:
            return 413, {"error": "the body is too large"}
        settings, now = self.state.settings, self.state.clock()
        secret = settings.tiktok_client_secret.get_secret_value()
        if not secret:
            return 503, {"error": "webhooks are not configured"}
        try:
            signature = headers.get(SIGNATURE, b"").decode("latin-1") or None
            verify_signature(signature, body, secret, now=now.timestamp())
            notification = parse_webhook(body, settings.tiktok_client_key, now=now)
        except SignatureError as exc:
            return 401, {"error": f"signature: {exc}"}
        except ValueError as exc:
            return 400, {"error": str(exc)}
        if notification.ignored:  # the account's own comment or message echoed, a read receipt
            return 200, {"ok": True, "ignored": notification.ignored}
        try:
            await asyncio.wrap_future(
                self.state.writer.submit(webhook_event(notification, received_at=now))
            )
        except Exception:  # the writer said why in the log; TikTok will deliver it again
            return 500, {"error": "the notification could not be stored"}
        return 200, {"ok": True}

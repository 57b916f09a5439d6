"""A receiver of Rally's outgoing webhooks, as an n8n flow or a data team's endpoint would be:
each delivery is verified with the `standardwebhooks` library (signature and timestamp), kept
once by its `webhook-id`, and answered 204. `down` makes it answer 503 as a service that is
down would; the faults of `FakeHttpServer` (`fail_next`, `drop_next`) apply first."""

import threading
from collections import Counter
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Response


class FakeWebhookReceiver(FakeHttpServer):
    """`received` holds each delivery's payload once, in the order first received; `seen`
    counts every verified try per webhook-id; `refused` counts the ones that failed checks."""

    def __init__(self, *, path: str = "/hooks/rally") -> None:
        super().__init__()
        self.path = path
        self.secret: str | None = None
        self.down = False
        self.received: list[dict[str, Any]] = []
        self.seen: Counter[str] = Counter()
        self.refused = 0
        self._lock = threading.Lock()
        self.route("POST", path, self.receive)

    @property
    def endpoint(self) -> str:
        return self.url + self.path

    def receive(self, request: RecordedRequest) -> Response:
        if self.down:
            return Response(503, body="down for maintenance")
        try:
            payload = Webhook(self.secret or "").verify(request.body, request.headers)
        except WebhookVerificationError as exc:
            with self._lock:
                self.refused += 1
            return Response(400, json={"error": str(exc)})
        message_id = request.headers["webhook-id"]
        with self._lock:
            if not self.seen[message_id]:
                self.received.append(payload)
            self.seen[message_id] += 1
        return Response(204)

    def types(self) -> list[str]:
        return [payload["type"] for payload in self.received]

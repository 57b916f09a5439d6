"""A receiver of Rally's signed lead webhooks, as an organizer's endpoint would be: it checks
the `Rally-Signature` (HMAC over `t + "." + body`, at most five minutes old), keeps each lead by
key, and counts the calls it saw for each `Idempotency-Key`."""

import hashlib
import hmac
import time
from collections import Counter
from typing import Any

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Response


class FakeLeadReceiver(FakeHttpServer):
    def __init__(self, *, secret: str = "receiver-secret-5f1e", path: str = "/hooks/rally") -> None:
        super().__init__()
        self.secret, self.path = secret, path
        self.leads: dict[str, dict[str, Any]] = {}
        self.forgotten: list[str] = []
        self.deliveries: Counter[str] = Counter()
        self.refused: dict[str, str] = {}  # email -> why this receiver answers 422
        self.route("POST", path, self.receive)

    def receive(self, request: RecordedRequest) -> Response:
        if not self._signed(request):
            return Response(401, json={"error": "bad signature"})
        body = request.json
        if not isinstance(body, dict) or body.get("type") not in (
            "leads.upserted",
            "lead.forgotten",
        ):
            return Response(400, json={"error": "unknown type"})
        self.deliveries[request.headers.get("idempotency-key", "")] += 1
        if body["type"] == "lead.forgotten":
            self.leads.pop(str(body.get("key")), None)
            self.forgotten.append(str(body.get("key")))
            return Response(204)
        for lead in body.get("leads", []):
            why = self.refused.get(str(lead.get("email")))
            if why:
                return Response(422, json={"error": f"{lead.get('email')}: {why}"})
        for lead in body["leads"]:
            self.leads[str(lead["key"])] = lead
        return Response(200, json={"received": len(body["leads"])})

    def _signed(self, request: RecordedRequest) -> bool:
        parts = dict(
            p.split("=", 1)
            for p in request.headers.get("rally-signature", "").split(",")
            if "=" in p
        )
        try:
            at = int(parts.get("t", ""))
        except ValueError:
            return False
        expected = hmac.new(
            self.secret.encode(), f"{at}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
        return abs(time.time() - at) <= 300 and hmac.compare_digest(expected, parts.get("s", ""))

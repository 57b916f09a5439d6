"""A fake of Twilio's Messages API for one account: `POST /2010-04-01/Accounts/{sid}/Messages.json`
with HTTP Basic auth and form-encoded To, From, Body; 201 with the message, or Twilio's error
body `{"code", "message", "more_info", "status"}`: 20003 bad credentials (401), 20404 another
account's path (404), 21602/21603/21604 a missing field, 21211 a To that is not E.164, 21606 a
From the account does not own, 21610 a recipient who texted STOP, 21617 a body over 1,600
characters, and, over the rate limit, 20429 (429, with Retry-After).
"""

import base64
import math
import re
import time
import uuid
from email.utils import formatdate
from typing import Any

from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Response

E164 = re.compile(r"\+[1-9]\d{1,14}")


class FakeSms(FakeHttpServer):
    """Records each accepted message in `messages`; `mark_stopped(number)` is a STOP."""

    def __init__(
        self,
        *,
        account_sid: str = "AC" + "5" * 32,
        auth_token: str = "sms-auth-token-9d8c7b6a",
        senders: tuple[str, ...] = ("+15005550006",),
        rate: tuple[int, float] | None = None,
        sliding: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.account_sid, self.auth_token = account_sid, auth_token
        self.senders = set(senders)
        self.stopped: set[str] = set()
        self.messages: list[dict[str, Any]] = []
        if rate is not None:
            self.rate_limit(rate[0], per=rate[1], sliding=sliding)
        self.route("POST", "/2010-04-01/Accounts/{sid}/Messages.json", self.create_message)

    def mark_stopped(self, number: str) -> None:
        """The recipient texted STOP: the carrier refuses them further messages (21610)."""
        self.stopped.add(number)

    def create_message(self, request: RecordedRequest) -> Response:
        if _basic_auth(request) != (self.account_sid, self.auth_token):
            return twilio_error(401, 20003, "Authenticate")
        if request.path_params["sid"] != self.account_sid:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        form = request.form  # empty unless form-encoded, as Twilio reads only forms
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        problem = self._problem(to, sender, body)
        if problem is not None:
            return problem
        sid = f"SM{uuid.uuid4().hex}"
        message = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "num_segments": str(math.ceil(len(body) / 153) if len(body) > 160 else 1),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": formatdate(usegmt=True),
            "date_updated": formatdate(usegmt=True),
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "messaging_service_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        self.messages.append(message)
        return Response(201, json=message)

    def _problem(self, to: str, sender: str, body: str) -> Response | None:
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not sender:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return twilio_error(400, 21602, "Message body is required.")
        if not E164.fullmatch(to):
            return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if sender not in self.senders:
            return twilio_error(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
            )
        if to in self.stopped:
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        if len(body) > 1600:
            return twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        return None

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        response = twilio_error(429, 20429, "Too Many Requests")
        response.headers["Retry-After"] = str(math.ceil(retry_after))
        return response


def twilio_error(status: int, code: int, message: str) -> Response:
    return Response(
        status,
        json={
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def _basic_auth(request: RecordedRequest) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        return None
    return user, password

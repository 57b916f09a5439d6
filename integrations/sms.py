"""SMS out through an HTTP provider with Twilio's Messages API shape: `POST
{api_url}/2010-04-01/Accounts/{sid}/Messages.json`, form-encoded To, From and Body, HTTP Basic
auth with the account sid and auth token; 201 with the message's JSON (`sid`, `status`, ...).

Like every adapter it never retries by itself; its failures map onto the error tree. Twilio's
error bodies carry `code` and `message` (21211 an invalid number, 21610 a recipient who texted
STOP, 20429 too many requests), which go into the error's text for the dead-letter record.
"""

from typing import Any

import httpx

from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.http import json_object, request, retry_after


class SmsGateway:
    """Sends texts from one number (or messaging-service sender) of one provider account."""

    def __init__(
        self, client: httpx.Client, *, api_url: str, account_sid: str, auth_token: str, sender: str
    ) -> None:
        self.client = client
        self.account_sid = account_sid
        self.sender = sender
        self.url = f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._token = auth_token

    def send(self, *, to: str, body: str) -> str:
        """Hand one text to the provider; the provider's message sid."""
        where = "SMS provider"
        response = request(
            self.client,
            "POST",
            self.url,
            where=where,
            data={"To": to, "From": self.sender, "Body": body},
            auth=(self.account_sid, self._token),
        )
        answer = json_object(response)
        if response.is_success:
            sid = answer.get("sid")
            if not sid:
                raise TransientError(f"{where}: accepted without a message sid")
            return str(sid)
        raise self._error(response, answer)

    def _error(self, response: httpx.Response, answer: dict[str, Any]) -> Exception:
        """The error for a refusal, with the provider's own message and code."""
        status = response.status_code
        message = str(answer.get("message") or response.reason_phrase)
        if self._token:
            message = message.replace(self._token, "[auth token]")
        code = answer.get("code")
        detail = f"{message} (HTTP {status}" + (f", code {code})" if code is not None else ")")
        if status == 429 or status >= 500:
            return TransientError(f"SMS provider: {detail}", retry_after=retry_after(response))
        if status == 401:
            return UnavailableError(f"SMS provider refuses our credentials: {detail}")
        return PermanentError(f"SMS provider refused the message: {detail}")

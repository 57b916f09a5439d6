"""What the lead connectors' tests share: a lead to send, the fixtures each of them takes (a
manual `clock`, an httpx client `http`, the connector's rate `limit` on that clock) and helpers
for faults and refusals; and, for the fakes of their APIs, `Rejections`. A test module takes the
fixtures under their names:

    clock, http = crm_people.clock, crm_people.http
    limit = crm_people.limit_at(RATE)
"""

import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from integrations.crm import Lead, RateLimit
from tests.fakes.http_server import ManualClock


def lead(n: int = 1, **changes: Any) -> Lead:
    """Person `n`: an email, a phone, a name and a postal code, both consents granted."""
    fields: dict[str, Any] = {
        "key": f"lead-{n}",
        "contact_id": n,
        "campaign": "first-vote-pa-2027",
        "email": f"voter{n}@example.org",
        "phone": f"+1215555010{n}",
        "given_name": "Ada",
        "family_name": f"Voter{n}",
        "postal_code": "19104",
        "email_consent": True,
        "sms_consent": True,
    }
    return Lead(**{**fields, **changes})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=0)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def limit_at(rate: tuple[int, float]) -> Callable[[ManualClock], RateLimit]:
    """A `limit` fixture: `rate` counted on the test's `clock`, its waits moving the clock."""

    @pytest.fixture
    def limit(clock: ManualClock) -> RateLimit:
        return RateLimit(*rate, clock=clock, sleep=clock.advance)

    return limit


def after_first_answer(http: httpx.Client, arm: Callable[[], None]) -> None:
    """Call `arm` once the first answer arrives, so a fault meets the second request."""
    armed: list[bool] = []

    def hook(response: httpx.Response) -> None:
        if not armed:
            armed.append(True)
            arm()

    http.event_hooks = {"response": [hook]}


def said(error: BaseException) -> str:
    """All an error says, its traceback included (to check no secret is in it)."""
    return f"{error} {error.args!r}" + "".join(traceback.format_exception(error))


class Rejections:
    """For a fake: `reject(email, message)` has it refuse that person, saying `message`, until
    `accept(email)`. The fake keeps `rejected` (lowercase email to message) and its `_lock`."""

    rejected: dict[str, str]
    _lock: threading.Lock

    def reject(self, email: str, message: str) -> None:
        with self._lock:
            self.rejected[email.lower()] = message

    def accept(self, email: str) -> None:
        with self._lock:
            self.rejected.pop(email.lower(), None)

"""The outbox drain's promises: each message delivered once even when drains overlap, and one
message that can never be delivered parked without holding up the rest."""

from datetime import timedelta

import pytest
from sqlmodel import col, select

from integrations.email import SmtpSender, build_message
from integrations.errors import UnavailableError
from store.db import transaction
from store.models import OutboxMessage
from store.types import utcnow
from tasks.briefs.reminders import deliver_email
from tasks.outbox import claim, deliver_claimed, drain, enqueue


def queue(engine, *addresses: str) -> None:
    with transaction(engine) as session:
        enqueue(
            session,
            [
                {
                    "channel": "email",
                    "destination": "creator",
                    "idempotency_key": f"test:{address}",
                    "subject_type": "test",
                    "subject_id": address,
                    "payload": {"to": address, "subject": "Hello", "text": "Hi", "html": ""},
                }
                for address in addresses
            ],
        )


class Recorder:
    """An adapter that records what it was asked to deliver (the drain is under test)."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.completed: list[str] = []

    def deliver(self, message: OutboxMessage) -> str:
        self.delivered.append(message.payload["to"])
        return f"remote-{len(self.delivered)}"

    def on_sent(self, session, messages: list[OutboxMessage], at) -> None:
        self.completed += [message.payload["to"] for message in messages]


def test_a_drain_whose_lease_ran_out_leaves_its_messages_to_the_drain_that_took_them(engine):
    queue(engine, "a@example.org", "b@example.org", "c@example.org")
    start = utcnow()
    stale = claim(engine, channel="email", limit=10, now=start)  # drain A, then it stalls
    assert len(stale) == 3

    b = Recorder()  # drain B runs after A's lease ended and takes everything over
    later = start + timedelta(minutes=6)
    report = drain(engine, channel="email", deliver=b.deliver, on_sent=b.on_sent, now=lambda: later)
    assert report.sent == 3

    a = Recorder()  # A wakes up and carries on with what it had claimed
    resumed = deliver_claimed(
        engine, stale, deliver=a.deliver, on_sent=a.on_sent, now=lambda: later
    )
    assert (resumed.sent, a.delivered, a.completed) == (0, [], [])
    assert (
        sorted(b.delivered)
        == sorted(b.completed)
        == ["a@example.org", "b@example.org", "c@example.org"]
    )


def test_an_address_no_email_can_carry_is_parked_and_the_rest_go_out(settings, engine):
    queue(engine, "a@example.org", "broken,x@example.org", "c@example.org")
    report = deliver_email(engine, settings, now=utcnow)
    assert (report.sent, report.dead) == (2, 1)
    assert "broken,x@example.org" in report.errors[0] and "cannot make an email" in report.errors[0]
    with transaction(engine, write=False) as session:
        dead = session.exec(select(OutboxMessage).where(col(OutboxMessage.status) == "dead")).one()
    assert dead.payload["to"] == "broken,x@example.org" and dead.last_error
    assert len(list(settings.mailbox.glob("*.eml"))) == 2
    assert deliver_email(engine, settings, now=utcnow).sent == 0  # nothing is tried again


def test_a_password_is_never_sent_unencrypted_to_another_machine():
    sender = SmtpSender(
        host="smtp.example.org", port=25, security="none", username="u", password="s3cret-pw"
    )
    probe = build_message(
        {"to": "a@example.org", "subject": "s", "text": "t"}, sender="r@example.org", key="k"
    )
    with pytest.raises(UnavailableError, match="unencrypted") as refused:
        sender.send(probe)  # refused before any connection is made
    assert "s3cret-pw" not in str(refused.value)

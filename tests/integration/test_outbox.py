"""The outbox drain's promises: each message delivered once even when drains overlap, one
message that can never be delivered parked without holding up the rest, and one delivery path
for senders of one message per call and of many."""

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from integrations.email import SmtpSender, build_message
from integrations.errors import IntegrationError, PermanentError, TransientError, UnavailableError
from store.db import transaction
from store.models import OutboxMessage
from store.types import utcnow
from tasks.drain import (
    Answer,
    Delivered,
    Handler,
    Sender,
    deliver_claimed,
    drain,
    one_at_a_time,
)
from tasks.mail import by_kind, deliver_email
from tasks.outbox import MAX_ATTEMPTS, Claimed, claim, enqueue


def queue(engine, *addresses: str, kind: str = "test") -> None:
    with transaction(engine) as session:
        enqueue(
            session,
            [
                {
                    "channel": "email",
                    "destination": "creator",
                    "idempotency_key": f"test:{address}",
                    "subject_type": kind,
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

    def deliver(self, message: Claimed) -> str:
        self.delivered.append(message.payload["to"])
        return f"remote-{len(self.delivered)}"

    def on_sent(self, session, messages: list[Claimed], at) -> None:
        self.completed += [message.payload["to"] for message in messages]

    @property
    def handler(self) -> Handler:
        return Handler(sent=self.on_sent)


def test_a_drain_whose_lease_ran_out_leaves_its_messages_to_the_drain_that_took_them(engine):
    queue(engine, "a@example.org", "b@example.org", "c@example.org")
    start = utcnow()
    stale = claim(engine, channel="email", limit=10, now=start)  # drain A, then it stalls
    assert len(stale) == 3

    b = Recorder()  # drain B runs after A's lease ended and takes everything over
    later = start + timedelta(minutes=6)
    report = drain(
        engine,
        channel="email",
        sender=one_at_a_time(b.deliver),
        handler=b.handler,
        now=lambda: later,
    )
    assert report.sent == 3

    a = Recorder()  # A wakes up and carries on with what it had claimed
    resumed = deliver_claimed(
        engine, stale, sender=one_at_a_time(a.deliver), handler=a.handler, now=lambda: later
    )
    assert (resumed.sent, a.delivered, a.completed) == (0, [], [])
    assert (
        sorted(b.delivered)
        == sorted(b.completed)
        == ["a@example.org", "b@example.org", "c@example.org"]
    )


def test_a_send_that_outlasts_the_lease_is_never_taken_over_while_its_drain_lives(engine):
    queue(engine, "slow@example.org")
    lease = timedelta(seconds=1)  # renewed every third: a busy machine's stalls are shorter
    started, finish = threading.Event(), threading.Event()
    a = Recorder()

    def slow(message: Claimed) -> str:
        started.set()
        finish.wait(timeout=30)  # a remote taking its time, many leases long
        return a.deliver(message)

    drain_a = threading.Thread(
        target=drain,
        kwargs={
            "engine": engine,
            "channel": "email",
            "sender": one_at_a_time(slow),
            "handler": a.handler,
            "now": utcnow,
            "lease": lease,
        },
    )
    drain_a.start()
    assert started.wait(timeout=30)
    with transaction(engine, write=False) as session:
        first = session.exec(select(OutboxMessage)).one().locked_until
    assert first is not None
    while utcnow() <= first + 2 * lease:  # the lease A took at first has long run out
        finish.wait(0.05)
    b = Recorder()
    taken = drain(engine, channel="email", sender=one_at_a_time(b.deliver), now=utcnow, lease=lease)
    finish.set()
    drain_a.join(timeout=30)
    assert (taken.sent, b.delivered) == (0, [])  # A kept renewing its lease while it sent
    assert a.delivered == a.completed == ["slow@example.org"]


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


class Remote:
    """A remote that records the recipients of each call and each transaction's outcomes.
    An address in `refuse` fails with its error: raised for the whole call when a call carries
    it, or answered for that message alone when `answer_each`. A call carrying
    down@example.org finds the service down, and so does every call after it."""

    def __init__(
        self, refuse: dict[str, IntegrationError] | None = None, *, answer_each: bool = False
    ) -> None:
        self.refuse = refuse or {}
        self.answer_each = answer_each
        self.down = False
        self.calls: list[list[str]] = []
        self.completed: list[list[str]] = []  # the messages marked sent, per transaction
        self.remote_ids: list[str | None] = []  # as the handler saw them
        self.given_up: list[str] = []

    def deliver(self, message: Claimed) -> str | None:
        answer = self.deliver_batch([message])[message.id or 0]
        if isinstance(answer, IntegrationError):
            raise answer
        assert not isinstance(answer, Delivered)  # this fake answers with ids only
        return answer

    def deliver_batch(self, rows: list[Claimed]) -> dict[int, Answer]:
        to = [row.payload["to"] for row in rows]
        self.calls.append(to)
        if self.down or "down@example.org" in to:
            self.down = True
            raise UnavailableError("the service is down")
        refused = [self.refuse[address] for address in to if address in self.refuse]
        if refused and not self.answer_each:
            raise refused[0]
        return {row.id or 0: self.refuse.get(row.payload["to"], f"remote-{row.id}") for row in rows}

    def on_sent(self, session, messages: list[Claimed], at) -> None:
        self.completed.append([message.payload["to"] for message in messages])
        self.remote_ids += [message.remote_id for message in messages]

    def on_dead(self, session, message: Claimed, error: str, at) -> None:
        self.given_up.append(message.payload["to"])

    @property
    def handler(self) -> Handler:
        return Handler(sent=self.on_sent, dead=self.on_dead)


def stored(engine: Engine) -> dict[str, OutboxMessage]:
    """Every message by recipient, as the store holds it now."""
    with transaction(engine, write=False) as session:
        return {m.payload["to"]: m for m in session.exec(select(OutboxMessage))}


def at(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at `moment`."""
    return lambda: moment


def test_one_at_a_time_and_batch_senders_go_through_the_same_drain(engine):
    queue(engine, "a@example.org", "b@example.org")
    single = Remote()
    report = drain(
        engine,
        channel="email",
        sender=one_at_a_time(single.deliver),
        handler=single.handler,
        now=utcnow,
    )
    assert (report.sent, report.errors) == (2, [])
    assert single.calls == single.completed == [["a@example.org"], ["b@example.org"]]

    queue(engine, "c@example.org", "d@example.org", "e@example.org")
    batch = Remote()
    report = drain(
        engine,
        channel="email",
        sender=Sender(batch.deliver_batch),
        handler=batch.handler,
        now=utcnow,
    )
    assert (report.sent, report.errors) == (3, [])
    everyone = ["c@example.org", "d@example.org", "e@example.org"]
    assert batch.calls == batch.completed == [everyone]  # one call, one transaction

    messages = stored(engine)
    assert {m.status for m in messages.values()} == {"sent"}
    assert all(m.remote_id == f"remote-{m.id}" and m.attempts == 1 for m in messages.values())
    assert batch.remote_ids == [messages[address].remote_id for address in everyone]


def test_a_message_to_a_person_withdrawn_after_its_claim_is_not_sent(engine):
    """Someone texts STOP while a drain sends the batch it claimed moments ago: their message,
    withdrawn then, stays withdrawn and never reaches them."""
    from tasks.outbox import cancel

    queue(engine, "a@example.org", "b@example.org", "c@example.org")
    recorder = Recorder()

    def deliver(message: Claimed) -> str:
        if message.payload["to"] == "a@example.org":
            withdrawn = stored(engine)["b@example.org"].id or 0
            with transaction(engine) as session:
                assert cancel(session, [withdrawn], "opted out of email") == 1
        return recorder.deliver(message)

    report = drain(
        engine, channel="email", sender=one_at_a_time(deliver), handler=recorder.handler, now=utcnow
    )
    assert report.sent == 2 and recorder.delivered == ["a@example.org", "c@example.org"]
    withdrawn = stored(engine)["b@example.org"]
    assert (withdrawn.status, withdrawn.last_error) == ("cancelled", "opted out of email")


@pytest.mark.parametrize("whole_batch", [False, True], ids=["one at a time", "batch"])
def test_an_unavailable_service_stops_the_pass_and_releases_its_messages_untouched(
    engine, whole_batch: bool
):
    queue(engine, "a@example.org", "down@example.org", "c@example.org")
    before = stored(engine)
    remote = Remote()
    sender = Sender(remote.deliver_batch) if whole_batch else one_at_a_time(remote.deliver)
    now = utcnow()

    report = drain(engine, channel="email", sender=sender, handler=remote.handler, now=at(now))

    assert report.stopped == "the service is down"
    untouched = ["a@example.org", "down@example.org", "c@example.org"]
    if whole_batch:
        assert remote.calls == [untouched] and report.sent == 0
    else:
        assert remote.calls == [["a@example.org"], ["down@example.org"]], "c is never tried"
        assert report.sent == 1
        untouched = untouched[1:]
    assert (report.dead, report.retrying, remote.given_up) == (0, 0, [])
    after = stored(engine)
    for address in untouched:
        message = after[address]
        assert (message.status, message.attempts, message.last_error) == ("pending", 0, None)
        assert message.available_at == before[address].available_at
        assert message.locked_until is None
    again = claim(engine, channel="email", limit=10, now=now)  # the next pass, at once
    assert sorted(m.payload["to"] for m in again) == sorted(untouched)


@pytest.mark.parametrize("answer", ["accepted", "refused"])
def test_an_outcome_is_recorded_only_while_this_drain_still_holds_the_lease(engine, answer: str):
    queue(engine, "a@example.org")
    start = utcnow()
    later = start + timedelta(minutes=6)
    taken: list[Claimed] = []

    def slow(message: Claimed) -> str:
        # While this drain sends, its lease runs out and another drain takes the message over.
        taken.extend(claim(engine, channel="email", limit=10, now=later))
        if answer == "refused":
            raise PermanentError("550 no such mailbox")
        return "remote-slow"

    first = Remote()
    report = drain(
        engine, channel="email", sender=one_at_a_time(slow), handler=first.handler, now=at(start)
    )

    assert len(taken) == 1
    assert (report.sent, report.dead, report.retrying) == (0, 0, 0)
    assert (first.completed, first.given_up) == ([], [])
    message = stored(engine)["a@example.org"]
    assert (message.status, message.attempts, message.remote_id) == ("pending", 0, None)
    assert message.locked_until == taken[0].locked_until  # still the other drain's

    second = Remote()
    done = deliver_claimed(
        engine, taken, sender=one_at_a_time(second.deliver), handler=second.handler, now=at(later)
    )
    assert done.sent == 1 and second.completed == [["a@example.org"]]
    assert stored(engine)["a@example.org"].remote_id == f"remote-{message.id}"


def test_a_batch_refused_as_a_whole_is_tried_message_by_message(engine):
    queue(engine, "a@example.org", "bad@example.org", "c@example.org")
    remote = Remote({"bad@example.org": PermanentError("400 invalid address")})

    report = drain(
        engine,
        channel="email",
        sender=Sender(remote.deliver_batch),
        handler=remote.handler,
        now=utcnow,
    )

    assert remote.calls == [
        ["a@example.org", "bad@example.org", "c@example.org"],
        ["a@example.org"],
        ["bad@example.org"],
        ["c@example.org"],
    ]
    assert (report.sent, report.dead, report.retrying) == (2, 1, 0)
    assert report.errors == [
        f"message {stored(engine)['bad@example.org'].id} to bad@example.org: 400 invalid address"
    ]
    assert remote.completed == [["a@example.org"], ["c@example.org"]]
    assert remote.given_up == ["bad@example.org"]
    message = stored(engine)["bad@example.org"]
    assert (message.status, message.last_error) == ("dead", "400 invalid address")


def test_a_passing_failure_waits_as_long_as_the_remote_asked_and_is_given_up_at_last(engine):
    queue(engine, "a@example.org")
    asked = timedelta(hours=3)  # longer than any delay of Rally's own
    busy = TransientError("429 slow down", retry_after=asked.total_seconds())
    remote = Remote({"a@example.org": busy}, answer_each=True)
    sender = Sender(remote.deliver_batch)
    now = utcnow()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        report = drain(engine, channel="email", sender=sender, handler=remote.handler, now=at(now))
        message = stored(engine)["a@example.org"]
        assert message.attempts == attempt
        if attempt == MAX_ATTEMPTS:
            break
        assert (report.retrying, report.dead, message.status) == (1, 0, "pending")
        assert message.available_at >= now + asked
        early = drain(
            engine,
            channel="email",
            sender=sender,
            handler=remote.handler,
            now=at(now + asked - timedelta(seconds=1)),
        )
        assert (early.sent, early.retrying, early.dead) == (0, 0, 0), "not tried before then"
        now = message.available_at
    assert (report.retrying, report.dead, message.status) == (0, 1, "dead")
    assert message.last_error == "429 slow down"
    assert remote.given_up == ["a@example.org"]
    assert len(remote.calls) == MAX_ATTEMPTS


def test_each_kind_of_message_is_handed_to_the_handler_of_its_kind(engine):
    queue(engine, "a@example.org", "b@example.org", "bad@example.org", kind="greeting")
    queue(engine, "c@example.org", kind="notice")
    queue(engine, "d@example.org", kind="unknown")
    remote = Remote({"bad@example.org": PermanentError("550 no such mailbox")}, answer_each=True)
    greeting, notice = Remote(), Remote()
    handler = by_kind({"greeting": greeting.handler, "notice": notice.handler})

    report = drain(
        engine, channel="email", sender=Sender(remote.deliver_batch), handler=handler, now=utcnow
    )

    assert (report.sent, report.dead) == (4, 1)
    assert greeting.completed == [["a@example.org", "b@example.org"]]
    assert greeting.given_up == ["bad@example.org"]
    assert (notice.completed, notice.given_up) == ([["c@example.org"]], [])
    assert stored(engine)["d@example.org"].status == "sent"  # a kind without a handler


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_after_a_burst_a_drain_first_brings_the_planner_up_to_date(engine):
    """When PostgreSQL's statistics were taken while nothing waited and thousands of messages
    wait now, the planner expects almost none (and may read and sort every pending message
    for each claim); the drain's first step analyzes the outbox, after which the planner
    expects what waits. Once up to date, nothing more is done, and a process analyzes a store
    at most once in ten minutes."""
    from sqlalchemy import text

    from tasks import outbox
    from tasks.outbox import up_to_date

    def stale() -> None:  # statistics taken when nothing waited, then a burst
        with transaction(engine) as session:
            session.execute(text("UPDATE outbox SET status = 'sent'"))
            session.execute(text("ANALYZE outbox"))
            session.execute(text("UPDATE outbox SET status = 'pending'"))

    queue(engine, *(f"person{i}@example.org" for i in range(3000)))
    stale()
    waiting = "SELECT id FROM outbox WHERE status = 'pending' AND destination = 'creator'"

    def expected() -> float:
        with transaction(engine, write=False) as session:
            plan = session.execute(text(f"EXPLAIN (FORMAT JSON) {waiting}")).scalar_one()
        return float(plan[0]["Plan"]["Plan Rows"])

    assert expected() < 300
    assert up_to_date(engine, channel="email", destination="creator")
    assert 1500 < expected() < 6000
    outbox._analyzed.clear()  # as another process, which has not analyzed it, finds it
    assert not up_to_date(engine, channel="email", destination="creator")
    assert not up_to_date(engine, channel="sms")  # nothing waits there
    stale()
    assert up_to_date(engine, channel="email", destination="creator")
    stale()  # stale again so soon: this process leaves it to autovacuum for a while
    assert not up_to_date(engine, channel="email", destination="creator")
    assert expected() < 300

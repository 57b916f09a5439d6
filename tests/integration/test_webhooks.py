"""Outgoing webhooks: subscriptions made by staff with a secret shown once, events delivered
signed (verified here by the `standardwebhooks` library), in order per subscription, each once
by its webhook-id even when the receiver is down for a while; refusals given up on and
replayed; a receiver failing for days disabled with an email to staff."""

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from config.settings import Settings
from store.db import transaction
from store.types import utcnow
from tasks.due import has_work
from tasks.webhooks.deliver import deliver_webhooks
from tasks.webhooks.events import Event, emit
from tests.conftest import SLUG
from tests.fakes.http_server import serving
from tests.fakes.webhook_receiver import FakeWebhookReceiver


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    yield from serving(FakeWebhookReceiver())


def subscribe(rally, receiver: FakeWebhookReceiver, *events: str) -> dict:
    args = [a for event in events for a in ("--event", event)]
    run = rally("webhooks", "add", SLUG, receiver.endpoint, *args, "--json")
    assert run.code == 0, run.err
    made = json.loads(run.out)
    receiver.secret = made["secret"]
    return made


def campaign_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT id FROM campaigns WHERE slug = :s"), {"s": SLUG}
        ).scalar_one()


def happen(engine: Engine, *events: Event, at: datetime) -> int:
    with transaction(engine) as session:
        return emit(session, campaign_id(engine), events, at=at)


def approved(creative: int, version: int = 1) -> Event:
    return Event(
        "creative.approved",
        key=f"creative:{creative}:approved:{version}",
        subject=f"creative:{creative}",
        collection="creatives",
        data={"creative": creative},
    )


def submitted(creative: int, version: int = 1) -> Event:
    return Event(
        "creative.submitted",
        key=f"creative:{creative}:submitted:{version}",
        subject=f"creative:{creative}",
        collection="creatives",
        data={"creative": creative, "version": version},
    )


def deliver(engine: Engine, settings: Settings, clock: Clock):
    return deliver_webhooks(engine, settings, now=clock)


def test_a_subscription_shows_its_secret_once_and_keeps_it_sealed(
    rally, applied, keyed, engine, receiver
) -> None:
    made = subscribe(rally, receiver, "creative.approved", "lead.created")
    assert made["secret"].startswith("whsec_")
    listed = rally("webhooks", "list", "--json")
    assert listed.code == 0 and made["secret"] not in listed.out
    (row,) = json.loads(listed.out)
    assert (row["url"], row["event_types"], row["state"]) == (
        receiver.endpoint,
        ["creative.approved", "lead.created"],
        "enabled",
    )
    with engine.connect() as conn:
        stored = str(conn.execute(text("SELECT * FROM webhook_subscriptions")).all())
        audit = str(conn.execute(text("SELECT * FROM audit_events")).all())
    secret_bytes = made["secret"].removeprefix("whsec_")
    assert secret_bytes not in stored and secret_bytes not in audit
    assert "webhook.subscribed" in audit


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["http://hooks.example.org/rally"], "must use https"),
        (["ftp://127.0.0.1/x"], "must be an http(s) address"),
        (["https://[hooks.example.org/x"], "is not a URL"),
        (["https://hooks.example.org:99999/x"], "is not a URL"),  # no such port
        (["https://hooks exam.org/x"], "holds spaces or other characters"),
        (["https://n8n:hunter2@hooks.example.org/x"], "must not hold a user name or password"),
        (["https://hooks.example.org/rally", "--event", "lead.made"], "unknown event type"),
    ],
)
def test_a_bad_subscription_is_refused_naming_what_is_wrong(
    rally, applied, keyed, args, said
) -> None:
    run = rally("webhooks", "add", SLUG, *args)
    assert run.code != 0 and said in run.err
    assert json.loads(rally("webhooks", "list", "--json").out) == []


def test_without_a_secret_key_a_subscription_cannot_be_made(rally, applied, receiver) -> None:
    run = rally("webhooks", "add", SLUG, receiver.endpoint)
    assert run.code != 0 and "RALLY_SECRET_KEY" in run.err


def test_deliveries_are_signed_carry_ids_and_a_link_and_only_the_types_asked_for(
    rally, applied, keyed, engine, receiver
) -> None:
    subscribe(rally, receiver, "creative.approved")
    clock = Clock()
    clock.advance(days=-30)  # as in a rehearsal, whose clock is not the real one
    queued = happen(engine, submitted(7), approved(7), at=clock())
    assert queued == 1  # the subscription does not take creative.submitted

    report = deliver(engine, keyed, clock)

    assert (report.sent, report.errors) == (1, [])
    (payload,) = receiver.received
    assert receiver.refused == 0
    assert payload["type"] == "creative.approved"
    assert payload["data"]["creative"] == 7 and payload["data"]["campaign"] == SLUG
    assert payload["data"]["links"]["collection"] == (
        f"{keyed.public_url}/api/v1/campaigns/{SLUG}/creatives"
    )
    request = receiver.requests[-1]
    assert request.headers["webhook-id"].startswith("msg_")
    # the try is stamped with the real time, which receivers compare with theirs
    assert abs(int(request.headers["webhook-timestamp"]) - utcnow().timestamp()) < 60
    assert not has_work("deliver", engine, clock())


def test_a_receiver_down_for_a_while_gets_everything_in_order_each_once(
    rally, applied, keyed, engine, receiver
) -> None:
    subscribe(rally, receiver)
    clock = Clock()
    happen(engine, submitted(1), submitted(2), at=clock())
    receiver.drop_next()  # the first try's connection drops unanswered
    receiver.down = True
    expected = []
    for hour in range(6):  # down for six hours while events go on happening
        happen(engine, approved(1, hour), submitted(2, hour + 2), at=clock())
        expected += [("creative.approved", 1, None), ("creative.submitted", 2, hour + 2)]
        report = deliver(engine, keyed, clock)
        assert report.sent == 0
        assert not has_work("deliver", engine, clock())  # waiting out its backoff
        clock.advance(hours=1)
    listed = json.loads(rally("webhooks", "list", "--json").out)[0]
    assert listed["state"].startswith("failing since") and listed["waiting"] == 14

    receiver.down = False
    clock.advance(minutes=10)  # the longest wait is an hour, give or take a tenth
    assert has_work("deliver", engine, clock())
    report = deliver(engine, keyed, clock)

    assert report.sent == 14 and not report.errors
    assert len(receiver.received) == 14 and receiver.refused == 0
    assert set(receiver.seen.values()) == {1}
    order = [
        (p["type"], p["data"]["creative"], p["data"].get("version")) for p in receiver.received
    ]
    assert order[:2] == [("creative.submitted", 1, 1), ("creative.submitted", 2, 1)]
    assert order[2:] == expected
    listed = json.loads(rally("webhooks", "list", "--json").out)[0]
    assert (listed["state"], listed["waiting"], listed["delivered"]) == ("enabled", 0, 14)


def test_a_refused_delivery_is_given_up_on_and_replayed_with_its_first_id(
    rally, applied, keyed, engine, receiver
) -> None:
    made = subscribe(rally, receiver)
    clock = Clock()
    happen(engine, submitted(3), approved(3), at=clock())
    receiver.fail_next(5, 400, {"error": "no such sheet"})
    for _ in range(5):
        deliver(engine, keyed, clock)
        clock.advance(hours=1)

    # refused five times, the first is given up on; the queue moved on to the second
    assert receiver.types() == ["creative.approved"]
    listed = json.loads(rally("webhooks", "list", "--json").out)[0]
    assert (listed["given_up"], listed["waiting"], listed["delivered"]) == (1, 0, 1)
    first_id = receiver.requests[0].headers["webhook-id"]

    run = rally("webhooks", "replay", str(made["id"]))
    assert run.code == 0 and "1 given up on" in run.out
    deliver(engine, keyed, clock)
    assert receiver.types() == ["creative.approved", "creative.submitted"]
    assert receiver.requests[-1].headers["webhook-id"] == first_id

    run = rally("webhooks", "replay", str(made["id"]), "--since", "2000-01-01T00:00:00")
    assert run.code == 0 and "2 delivered queued again" in run.out
    deliver(engine, keyed, clock)
    assert len(receiver.received) == 2 and sorted(receiver.seen.values()) == [2, 2]


def test_a_receiver_failing_for_days_is_disabled_and_staff_are_emailed(
    rally, applied, keyed, engine, receiver
) -> None:
    made = subscribe(rally, receiver)
    clock = Clock()
    happen(engine, submitted(4), at=clock())
    receiver.down = True
    for _ in range(80):
        deliver(engine, keyed, clock)
        clock.advance(hours=1)
    listed = json.loads(rally("webhooks", "list", "--json").out)[0]
    assert listed["state"].startswith("disabled: no delivery has succeeded for 7")
    assert listed["waiting"] == 1  # kept for when it is enabled again
    tries = len(receiver.requests)
    assert 36 <= tries <= 76  # an hour apart, give or take a tenth, once at the longest wait
    for _ in range(5):
        deliver(engine, keyed, clock)
        clock.advance(hours=1)
    assert len(receiver.requests) == tries  # none once disabled
    with engine.connect() as conn:
        mails = conn.execute(
            text("SELECT payload FROM outbox WHERE channel = 'email' AND subject_type = 'webhook'")
        ).all()
        audit = str(conn.execute(text("SELECT action FROM audit_events")).all())
    texts = [m[0]["text"] if isinstance(m[0], dict) else json.loads(m[0])["text"] for m in mails]
    assert texts and all("rally webhooks enable" in t for t in texts)
    assert "webhook.disabled" in audit

    assert happen(engine, approved(4), at=clock()) == 0  # a disabled subscription gets nothing

    receiver.down = False
    assert rally("webhooks", "enable", str(made["id"])).code == 0
    deliver(engine, keyed, clock)
    assert receiver.types() == ["creative.submitted"]


def test_a_receiver_answering_gone_is_disabled_at_once(
    rally, applied, keyed, engine, receiver
) -> None:
    subscribe(rally, receiver)
    clock = Clock()
    happen(engine, submitted(5), at=clock())
    receiver.fail_next(1, 410)
    deliver(engine, keyed, clock)
    listed = json.loads(rally("webhooks", "list", "--json").out)[0]
    assert listed["state"] == "disabled: the receiver answered 410 Gone"


def test_two_deliverers_at_once_post_each_delivery_once_in_order(
    rally, applied, keyed, engine, receiver
) -> None:
    subscribe(rally, receiver)
    clock = Clock()
    happen(engine, *[submitted(n) for n in range(60)], at=clock())
    start = threading.Barrier(2)

    def deliverer() -> int:
        start.wait()
        report = deliver(engine, keyed, clock)
        assert not report.errors, report.errors
        return report.sent

    with ThreadPoolExecutor(2) as pool:  # result() raises what a deliverer raised
        sent = [future.result() for future in [pool.submit(deliverer) for _ in range(2)]]
    assert sum(sent) == 60
    assert [p["data"]["creative"] for p in receiver.received] == list(range(60))
    assert set(receiver.seen.values()) == {1}


def test_a_removed_subscription_gets_nothing_more(rally, applied, keyed, engine, receiver) -> None:
    made = subscribe(rally, receiver)
    clock = Clock()
    happen(engine, submitted(6), at=clock())
    assert rally("webhooks", "remove", str(made["id"])).code == 0
    assert happen(engine, submitted(7), at=clock()) == 0
    deliver(engine, keyed, clock)
    assert receiver.requests == []
    assert json.loads(rally("webhooks", "list", "--json").out) == []

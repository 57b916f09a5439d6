"""Each event type of the webhook catalogue, emitted by the service path behind it (the page,
the CLI, ingest and the rules, the drains, the sprint's close) and delivered signed to a
receiver: the payload names its ids, a lead's email and name only on the `leads:read` events,
and never a phone, a postal code, a token or a link. A change made again emits nothing more."""

import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import col, select
from tenacity import wait_none

from config.settings import Settings
from store.db import transaction
from store.models import CreativeDraft, ReviewTask
from store.types import utcnow
from tasks.engagement.delivery import deliver_followups
from tasks.engagement.events import ingest
from tasks.engagement.processing import process_pending
from tasks.leads.sync import sync_leads
from tasks.review.creatives import Submission, submit
from tasks.review.decisions import Decision, decide
from tasks.sprint.state import finish_week
from tasks.webhooks.deliver import deliver_webhooks
from tasks.webhooks.events import EVENT_TYPES
from tests.conftest import SLUG
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.helpers import generate
from web.app import create_app

T0 = utcnow().replace(microsecond=0) - timedelta(days=1)  # before what the CLI does now
LATER = utcnow() + timedelta(days=3650)  # after every event these tests make happen
PUBLIC_URL = "https://rally.example.org"
MAYA = "maya.votes.pa"
DANA = "dana.okafor@keystoneyouthvote.example.org"  # internal review
COUNSEL = "counsel@keystoneyouthvote.example.org"  # legal review
LEADS_READ = {t for t, (scope, _) in EVENT_TYPES.items() if scope == "leads:read"}
CAPTION = (
    "#ad Paid for by Keystone Youth Vote Fund. Register in two minutes, code MAYAVOTESPA."
    " Not authorized by any candidate or candidate's committee."
)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.")
_ids = itertools.count(1)


@pytest.fixture
def receiver(rally, keyed: Settings) -> Iterator[FakeWebhookReceiver]:
    """A receiver subscribed to every event type of the campaign."""
    with FakeWebhookReceiver() as fake:
        run = rally("webhooks", "add", SLUG, fake.endpoint, "--json")
        assert run.code == 0, run.err
        fake.secret = json.loads(run.out)["secret"]
        yield fake


def delivered(engine: Engine, settings: Settings, receiver: FakeWebhookReceiver) -> list[dict]:
    """Deliver what waits, and every payload the receiver has, each checked for what it may
    carry."""
    report = deliver_webhooks(engine, settings, now=lambda: LATER)
    assert report.errors == [] and receiver.refused == 0
    for payload in receiver.received:
        assert payload["data"]["campaign"] == SLUG
        assert payload["data"]["links"]["collection"].startswith(
            f"{settings.public_url}/api/v1/campaigns/{SLUG}/"
        )
        # Not the times: "555" of a phone number turns up in a stamp's microseconds.
        said = json.dumps(
            {k: v for k, v in payload["data"].items() if k != "links" and not k.endswith("at")}
        )
        for never in ("555", "+1", "19104", "token", "http", "tiktok.com", "/briefs/"):
            assert never not in said, (payload["type"], never)
        if payload["type"] not in LEADS_READ:
            assert not EMAIL.search(said), payload  # no email of a lead, a creator or staff
    return receiver.received


def of_type(payloads: list[dict], kind: str) -> list[dict[str, Any]]:
    return [p["data"] for p in payloads if p["type"] == kind]


# --- the service paths, as their own tests drive them ----------------------------------------


def signup(engine: Engine, now: datetime, external_id: str | None = None, **contact) -> None:
    """A signup carried by an event, through ingest and the rules."""
    record = {
        "source": "web",
        "external_id": external_id or f"signup-{next(_ids)}",
        "type": "signup",
        "creator": MAYA,
        "time": now.isoformat(),
        "payload": {"contact": {"consent": {}} | contact},
    }
    assert ingest(engine, [("test:1", record)], now=now).errors == []
    process_pending(engine, now=now, public_url=PUBLIC_URL)


def text_in(engine: Engine, now: datetime, phone: str, text: str) -> None:
    record = {
        "source": "sms",
        "external_id": f"sms-{next(_ids)}",
        "type": "dm",
        "campaign": SLUG,
        "text": text,
        "time": now.isoformat(),
        "payload": {"contact": {"phone": phone}},
    }
    assert ingest(engine, [("test:1", record)], now=now).errors == []
    process_pending(engine, now=now, public_url=PUBLIC_URL)


def submitted(engine: Engine, at: datetime = T0) -> int:
    with transaction(engine) as session:
        return submit(
            session,
            slug=SLUG,
            handle=MAYA,
            submission=Submission(CAPTION, duration_seconds=20),
            submitted_by=f"creator:@{MAYA}",
            now=at,
        ).creative_id


def open_task(engine: Engine, creative: int) -> int:
    with transaction(engine, write=False) as session:
        task = session.exec(
            select(ReviewTask)
            .join(CreativeDraft, col(CreativeDraft.id) == col(ReviewTask.draft_id))
            .where(CreativeDraft.creative_id == creative, ReviewTask.status == "open")
        ).one()
        return task.id or 0


def decided(engine: Engine, task: int, decision: str, who: str, at: datetime = T0) -> Decision:
    with transaction(engine) as session:
        return decide(
            session,
            task_id=task,
            decision=decision,
            approver=who,
            now=at,
            note="" if decision == "approve" else "not for this campaign",
            confirmed=["all"],
        )


# --- each event type --------------------------------------------------------------------------


def test_a_creator_acknowledging_their_brief_on_its_page_is_told_once(
    rally, running, keyed, engine, receiver
) -> None:
    generate(keyed, engine, SLUG)
    rows = json.loads(rally("briefs", "status", SLUG, "--json").out)
    token = next(r["link"] for r in rows if r["handle"] == MAYA).split("/briefs/")[1]
    client = TestClient(create_app(keyed))
    for _ in range(2):  # a second click changes nothing
        done = client.post(
            f"/briefs/{token}/acknowledge", data={"version": "1"}, follow_redirects=False
        )
        assert done.status_code == 303

    payloads = delivered(engine, keyed, receiver)
    (ack,) = of_type(payloads, "brief.acknowledged")
    assert (ack["creator"], ack["version"]) == (MAYA, 1) and isinstance(ack["brief"], int)
    assert ack["at"].endswith("Z")
    assert ack["links"]["collection"].endswith(f"/campaigns/{SLUG}/briefs")


def test_a_creative_submitted_approved_posted_and_another_rejected(
    rally, applied, keyed, engine, receiver
) -> None:
    first = submitted(engine)
    assert decided(engine, open_task(engine, first), "approve", DANA).next_tier == "legal"
    assert decided(engine, open_task(engine, first), "approve", COUNSEL).next_tier is None
    url = f"https://www.tiktok.com/@{MAYA}/video/7311"
    assert rally("creatives", "posted", first, url).code == 0
    assert rally("creatives", "posted", first, url).code == 0  # recorded again: no new post
    later = utcnow() + timedelta(minutes=1)  # after the post, recorded at the real time
    second = submitted(engine, later)
    decided(engine, open_task(engine, second), "reject", DANA, later)

    told = delivered(engine, keyed, receiver)
    (earned,) = of_type(told, "payment.earned")  # the approval earned half the first fee
    assert earned["posting"] == f"earned:creative:{first}:approved"
    assert (earned["owed_cents"], earned["currency"]) == (40_000, "USD")
    assert earned["links"]["collection"].endswith(f"/campaigns/{SLUG}/payments")
    payloads = [p for p in told if p["type"].startswith("creative.")]
    order = [(p["type"], p["data"]["creative"]) for p in payloads]
    assert order == [
        ("creative.submitted", first),
        ("creative.approved", first),
        ("creative.posted", first),
        ("creative.submitted", second),
        ("creative.rejected", second),
    ]
    for data in (p["data"] for p in payloads):
        assert data["creator"] == MAYA and data["version"] == 1
        assert data["links"]["collection"].endswith(f"/campaigns/{SLUG}/creatives")
    by_type = {p["type"]: p["data"] for p in payloads if p["data"]["creative"] == first}
    assert by_type["creative.submitted"]["status"] == "in_review"
    assert by_type["creative.submitted"]["waiting_on"] == "internal"
    assert (by_type["creative.approved"]["status"], by_type["creative.approved"]["tier"]) == (
        "approved",
        "legal",
    )
    assert by_type["creative.posted"]["status"] == "posted"  # where is for the API to say
    (rejected,) = of_type(payloads, "creative.rejected")
    assert (rejected["status"], rejected["tier"]) == ("rejected", "internal")


def test_a_signup_is_a_lead_with_its_consent_and_a_stop_withdraws_it(
    applied, keyed, engine, receiver
) -> None:
    now = utcnow().replace(microsecond=0)
    signup(
        engine,
        now,
        name="Ana Diaz",
        email="ana@example.org",
        phone="215-555-0101",
        zip="19104",
        consent={"email": "yes", "sms": "yes"},
    )
    text_in(engine, now + timedelta(minutes=1), "215-555-0101", "STOP")

    payloads = delivered(engine, keyed, receiver)
    assert [p["type"] for p in payloads] == [
        "lead.created",
        "consent.changed",
        "consent.changed",
        "consent.changed",
    ]
    (lead,) = of_type(payloads, "lead.created")
    assert (lead["email"], lead["name"]) == ("ana@example.org", "Ana Diaz")
    assert lead["links"]["collection"].endswith(f"/campaigns/{SLUG}/leads")
    changes = [(c["lead"], c["channel"], c["status"]) for c in of_type(payloads, "consent.changed")]
    assert changes == [
        (lead["lead"], "email", "granted"),
        (lead["lead"], "sms", "granted"),
        (lead["lead"], "sms", "revoked"),
    ]
    assert {c["email"] for c in of_type(payloads, "consent.changed")} == {"ana@example.org"}


def test_a_lead_synced_to_a_destination_is_told_with_the_destination(
    applied, keyed, engine, receiver
) -> None:
    now = utcnow().replace(microsecond=0)
    signup(engine, now, name="Lee Park", email="lee@example.org", phone="2155550142")
    signup(engine, now, name="Kim Ro", email="kim@example.org")
    reports = sync_leads(engine, keyed, now=lambda: now + timedelta(seconds=1), wait=wait_none())
    assert reports[f"{SLUG}/export"].sent == 2

    payloads = delivered(engine, keyed, receiver)
    created = {d["email"]: d["lead"] for d in of_type(payloads, "lead.created")}
    synced = of_type(payloads, "lead.synced")
    assert sorted(d["lead"] for d in synced) == sorted(created.values())
    assert {(d["destination"], d["type"]) for d in synced} == {("export", "csv")}


def test_a_follow_up_sent_is_told_once_with_its_rule_and_channel(
    applied, keyed, engine, receiver
) -> None:
    at = datetime(2027, 2, 3, 17, 0, tzinfo=UTC)
    record = {
        "source": "tiktok",
        "external_id": "comment-1",
        "type": "comment",
        "actor": "fan",
        "creator": MAYA,
        "video": "7001",
        "text": "Love this!",
        "time": at.isoformat(),
    }
    assert ingest(engine, [("test:1", record)], now=at).errors == []
    process_pending(engine, now=at, public_url=PUBLIC_URL)
    first = deliver_followups(engine, keyed, now=lambda: at + timedelta(minutes=5))
    deliver_followups(engine, keyed, now=lambda: at + timedelta(minutes=10))
    assert first["tiktok_reply"].sent == 1

    payloads = delivered(engine, keyed, receiver)
    (sent,) = of_type(payloads, "followup.sent")
    assert (sent["rule"], sent["channel"]) == ("thank_commenters", "reply")
    assert isinstance(sent["followup"], int) and isinstance(sent["lead"], int)
    assert sent["links"]["collection"].endswith(f"/campaigns/{SLUG}/followups")


def test_closing_weeks_tells_of_each_week_and_each_milestone_missed(
    rally, applied, keyed, engine, receiver
) -> None:
    assert rally("sprint", "start", SLUG).code == 0
    for week in (1, 2, 2):  # week 2 closed twice, as a second machine would
        with transaction(engine) as session:
            finish_week(session, SLUG, week, now=T0, actor="staff:test")
    assert rally("sprint", "milestone", SLUG, "strategy", "missed", "--note", "late").code == 0
    assert rally("sprint", "milestone", SLUG, "strategy", "missed").code == 0  # no change

    payloads = delivered(engine, keyed, receiver)
    assert [p["type"] for p in payloads] == [
        "sprint.week_closed",
        "milestone.missed",
        "sprint.week_closed",
        "milestone.missed",
    ]
    weeks = of_type(payloads, "sprint.week_closed")
    assert [(w["week"], w["finished"]) for w in weeks] == [(1, False), (2, False)]
    assert weeks[1]["milestones"] == [{"key": "briefs_acknowledged", "status": "missed"}]
    auto, marked = of_type(payloads, "milestone.missed")
    assert (auto["milestone"], auto["week"]) == ("briefs_acknowledged", 2)
    assert auto["outcome"] == {"acknowledged": 0, "briefs": 0, "share": 0.0}
    assert marked["milestone"] == "strategy" and "outcome" not in marked  # staff's note stays
    assert all(w["links"]["collection"].endswith(f"/campaigns/{SLUG}/sprint") for w in weeks)


def test_a_change_made_again_or_redelivered_emits_once(applied, keyed, engine, receiver) -> None:
    now = utcnow().replace(microsecond=0)
    for _ in range(2):  # the same signup event redelivered is stored once
        signup(engine, now, "form-1", email="sam@example.org", consent={"email": "yes"})
    signup(engine, now + timedelta(minutes=1), email="SAM@example.org", name="Sam Lee")
    creative = submitted(engine)
    internal = open_task(engine, creative)
    assert decided(engine, internal, "approve", DANA).applied
    legal = open_task(engine, creative)
    for applied in (True, False):  # the last tier's approval sent twice counts once
        assert decided(engine, legal, "approve", COUNSEL).applied is applied

    payloads = delivered(engine, keyed, receiver)
    assert sorted(p["type"] for p in payloads) == [
        "consent.changed",
        "creative.approved",
        "creative.submitted",
        "lead.created",
        "payment.earned",  # once, as the approval counted once
    ]
    assert set(receiver.seen.values()) == {1}


def test_a_subscription_added_mid_transaction_hears_what_is_emitted_after_it(
    applied, keyed, engine
) -> None:
    """Emitting reads the campaign's subscriptions once a transaction; adding one in the same
    transaction makes the next emit read them again."""
    from store.crypto import Sealer
    from store.models import Campaign
    from tasks.webhooks.events import Event, emit
    from tasks.webhooks.subscriptions import add_subscription, update_subscription

    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        assert campaign.id is not None

        def told(n: int) -> int:
            event = Event("lead.created", f"lead:{n}:created", f"lead:{n}", "leads", {"lead": n})
            return emit(session, campaign.id or 0, [event], at=T0)

        assert told(1) == 0  # nobody listens yet
        made = add_subscription(
            session, campaign, url="https://hooks.example.org/rally", event_types=["lead.created"],
            description="", sealer=Sealer(keyed.secret_key.get_secret_value()),
            actor="staff:test", now=T0,
        )  # fmt: skip
        assert told(2) == 1
        update_subscription(session, made.subscription.id or 0, enabled=False, actor="t", now=T0)
        assert told(3) == 0

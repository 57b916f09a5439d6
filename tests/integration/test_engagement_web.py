"""The public's ways in, over HTTP: TikTok's signed webhooks in the shapes TikTok sends them
(accepted, forged, stale, replayed, the account's own echoes, attributed to campaigns), creators'
`/t/<code>` tracking links and the campaign signup page `/join/<slug>`."""

import csv
import html
import itertools
import json
import re
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import col, select
from tenacity import wait_none

from integrations.tiktok import sign
from store.db import transaction
from store.models import (
    ConsentRecord,
    ConsentStatus,
    Contact,
    ContactConsent,
    Creative,
    CreativeStatus,
    Creator,
    EngagementEvent,
    FollowUp,
    OutboxMessage,
    RateWindow,
    RosterMember,
    TikTokAccount,
)
from tasks.engagement.delivery import deliver_followups
from tasks.engagement.events import ingest, new_event
from tasks.engagement.processing import process_pending
from tasks.engagement.writer import EventWriter
from tasks.leads.sync import sync_leads
from tasks.mail import deliver_email
from tests.conftest import SLUG
from tests.fakes.http_server import serving
from tests.fakes.sms_api import FakeSms
from tests.integration import test_email_delivery
from web.app import create_app

smtp = test_email_delivery.smtp  # a real SMTP server (aiosmtpd), for the confirmation email
SECRET = "webhook-secret"
CLIENT_KEY = "rally-app"
T0 = datetime(2027, 2, 3, 17, 0, tzinfo=UTC)
BUSINESS = "-000bizOpenId7Qx"  # the business account the webhooks are about
FAN = "Vd1cZ3bq8Cw7kd0n5ZpY2gC2c1x8Z3m+Q0Qk1lW4q2E="  # a fan's unique_identifier


def comment_update(comment_id: int, video_id: object = 7001, **content: object) -> bytes:
    """A `comment.update` body as TikTok sends it: ids as JSON numbers, `content` a JSON string."""
    fields = {
        "comment_id": comment_id,
        "video_id": video_id,
        "comment_type": "comment",
        "comment_action": "insert",
        "unique_identifier": FAN,
        "timestamp": 1801587590,
    }
    return json.dumps(
        {
            "client_key": CLIENT_KEY,
            "event": "comment.update",
            "create_time": 1801587600,
            "user_openid": BUSINESS,
            "content": json.dumps(fields | content),
        }
    ).encode()


BODY = comment_update(7301234567890123456)


def signature(body: bytes, t: int, secret: str = SECRET) -> str:
    return sign(body, secret, t)


def now() -> int:
    """The app's time in the `hooked` app: signatures are checked on the app's clock."""
    return int(T0.timestamp())


def webhook(client: TestClient, body: bytes = BODY, *, header: str | None = "sign", t=None):
    if header == "sign":
        header = signature(body, now() if t is None else t)
    headers = {"TikTok-Signature": header} if header is not None else {}
    return client.post("/webhooks/tiktok", content=body, headers=headers)


def tiktok_events(engine) -> list[EngagementEvent]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(EngagementEvent).where(EngagementEvent.source == "tiktok")))


@pytest.fixture
def hooked(settings) -> TestClient:
    """An app with TikTok's client secret set, on a clock that stands still at T0."""
    configured = settings.model_copy(
        update={"tiktok_client_secret": SecretStr(SECRET), "tiktok_client_key": CLIENT_KEY}
    )
    return TestClient(create_app(configured, clock=lambda: T0))


@pytest.fixture
def web(settings, applied) -> TestClient:
    return TestClient(create_app(settings, clock=lambda: T0))


def maya(engine) -> RosterMember:
    with transaction(engine, write=False) as session:
        return session.exec(
            select(RosterMember)
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(Creator.handle == "maya.votes.pa")
        ).one()


def test_a_signed_webhook_is_stored_and_answered_200(hooked, engine):
    answer = webhook(hooked)
    assert answer.status_code == 200, answer.text
    [stored] = tiktok_events(engine)
    assert (stored.external_id, stored.type, stored.actor, stored.video_id, stored.text) == (
        "7301234567890123456:insert",
        "comment",
        FAN,  # the fan, not the business account the envelope names
        "7001",
        None,
    )
    assert stored.payload["comment_id"] == "7301234567890123456"
    assert stored.deliveries == 1 and stored.processed_at is None


BAD_HEADERS = {  # name -> the TikTok-Signature header sent, given the time now
    "another-secret": lambda t: signature(BODY, t, "not-our-secret"),
    "another-body": lambda t: signature(comment_update(1), t),
    "missing": lambda t: None,
    "empty": lambda t: "",
    "malformed": lambda t: f"t={t},s=xyz",
}


@pytest.mark.parametrize("bad", BAD_HEADERS)
def test_a_webhook_without_a_good_signature_is_refused_401(hooked, engine, bad):
    answer = webhook(hooked, header=BAD_HEADERS[bad](now()))
    assert answer.status_code == 401
    assert tiktok_events(engine) == []


@pytest.mark.parametrize("offset", [-301, -3600, 301, 3600], ids=["stale", "old", "ahead", "far"])
def test_a_webhook_signed_outside_five_minutes_is_refused_401(hooked, engine, offset):
    answer = webhook(hooked, t=now() + offset)
    assert answer.status_code == 401
    assert tiktok_events(engine) == []


def test_a_webhook_signed_within_five_minutes_is_accepted(hooked, engine):
    assert webhook(hooked, t=now() - 240).status_code == 200
    assert len(tiktok_events(engine)) == 1


def test_without_a_client_secret_webhooks_answer_503(settings, engine):
    client = TestClient(create_app(settings, clock=lambda: datetime.now(UTC)))
    assert webhook(client).status_code == 503
    assert tiktok_events(engine) == []


def test_a_replayed_webhook_is_stored_once_and_counted(hooked, engine):
    assert webhook(hooked, t=now() - 10).status_code == 200
    assert webhook(hooked).status_code == 200  # the same body, signed afresh
    later = json.dumps(json.loads(BODY) | {"create_time": 1801590000}).encode()
    assert webhook(hooked, later, t=now() - 5).status_code == 200  # a retry with its own time
    [stored] = tiktok_events(engine)
    assert stored.deliveries == 3


def test_a_signed_body_that_is_not_json_is_refused_400(hooked, engine):
    answer = webhook(hooked, b"{not json")
    assert answer.status_code == 400
    assert tiktok_events(engine) == []


def test_a_notification_for_another_app_is_refused_400(hooked, engine):
    body = json.dumps(json.loads(BODY) | {"client_key": "someone-else"}).encode()
    answer = webhook(hooked, body)
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": "the notification is for another app"},
    )
    assert tiktok_events(engine) == []


def test_a_notification_of_another_kind_is_kept_with_its_plain_text(hooked, engine):
    body = json.dumps(
        {"event": "video.publish", "user_openid": "open-9", "content": "just words"}
    ).encode()
    assert webhook(hooked, body).status_code == 200
    [stored] = tiktok_events(engine)
    assert (stored.type, stored.actor, stored.text) == ("platform", None, "just words")
    assert stored.payload["content"] == {"text": "just words"}
    assert stored.payload["business_id"] == "open-9"


def test_the_accounts_own_comments_echoes_and_read_receipts_are_answered_and_not_stored(
    hooked, engine
):
    own = comment_update(7301, unique_identifier=BUSINESS)  # Rally's reply, sent back
    sent = message_event("im_send_msg", 1, "Thanks!", sender=BUSINESS, role="BUSINESS_ACCOUNT")
    read = message_event("im_mark_read_msg", 2, "")
    for body in (own, sent, read):
        answer = webhook(hooked, body)
        assert answer.status_code == 200 and "ignored" in answer.json()
    assert tiktok_events(engine) == []


def test_a_tracking_link_records_the_click_and_redirects_with_utm_tags(web, engine):
    member = maya(engine)
    answer = web.get(
        f"/t/{member.tracking_code}?utm_source=tiktok&utm_term=bio&other=x",
        follow_redirects=False,
    )
    assert answer.status_code == 302
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == (
        "https://firstvotepa.example.org/register"
    )
    tags = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert tags["utm_campaign"] == SLUG and tags["utm_content"] == "maya.votes.pa"
    assert tags["utm_source"] == "tiktok"

    with transaction(engine, write=False) as session:
        [click] = session.exec(select(EngagementEvent)).all()
    assert (click.type, click.member_id, click.occurred_at) == ("link_click", member.id, T0)
    assert click.payload["utm_source"] == "tiktok" and click.payload["utm_term"] == "bio"
    assert "other" not in click.payload


def test_an_unknown_tracking_code_is_404_with_a_page_for_the_public(web, engine):
    answer = web.get("/t/nosuchcode", follow_redirects=False)
    assert answer.status_code == 404
    assert "This link doesn't lead anywhere" in answer.text
    assert "brief" not in answer.text  # whoever clicked it never saw one
    with transaction(engine, write=False) as session:
        assert session.exec(select(EngagementEvent)).all() == []


SIGNUP = {
    "name": "Pat  Lee",
    "email": " Pat.Lee@Example.ORG ",
    "phone": "(215) 555-0123",
    "zip": "19121",
    "consent_email": "yes",
}


def test_the_signup_page_shows_its_form(web):
    page = web.get(f"/join/{SLUG}")
    assert page.status_code == 200
    for field in ("name", "email", "phone", "zip", "consent_email", "consent_sms"):
        assert f'name="{field}"' in page.text


def test_a_signup_creates_one_lead_with_its_consent_and_source(web, engine):
    member = maya(engine)
    for _ in range(2):  # the same person signing up twice is one lead
        answer = web.post(f"/join/{SLUG}", data=SIGNUP | {"code": member.source_code.lower()})
        assert answer.status_code == 200, answer.text

    with transaction(engine, write=False) as session:
        [lead] = session.exec(select(Contact)).all()
        consent = dict(
            session.exec(
                select(ContactConsent.channel, ContactConsent.status).where(
                    ContactConsent.contact_id == lead.id
                )
            ).all()
        )
        signups = session.exec(select(EngagementEvent)).all()
    assert (lead.email_normalized, lead.phone_normalized) == ("pat.lee@example.org", "+12155550123")
    assert (lead.given_name, lead.family_name, lead.postal_code) == ("Pat", "Lee", "19121")
    assert consent == {"email": ConsentStatus.PENDING}  # until they confirm it
    assert lead.first_source_code == lead.last_source_code == member.source_code
    assert lead.first_member_id == lead.last_member_id == member.id
    assert [(e.type, e.member_id, e.contact_id) for e in signups] == [
        ("signup", member.id, lead.id)
    ] * 2


def test_control_characters_from_the_form_are_neither_stored_nor_printed(web, engine, rally):
    name = "Pat\x00 \x1b[31mLee\x07\u202e"
    answer = web.post(f"/join/{SLUG}", data=SIGNUP | {"name": name, "zip": "191\x0021"})
    assert answer.status_code == 200, answer.text
    with transaction(engine, write=False) as session:
        [lead] = session.exec(select(Contact)).all()
    assert (lead.given_name, lead.family_name, lead.postal_code) == ("Pat", "[31mLee", "19121")
    listed = rally("leads", "list", SLUG)
    assert listed.code == 0 and not any(ch in listed.out for ch in "\x00\x1b\x07\u202e")


@pytest.mark.parametrize(
    "email", ["pat@nowhere", "pat(1)@example.org", "pat@example.org\\", "p\x00t@example.org"]
)
def test_a_signup_with_a_bad_email_shows_the_problem_beside_it(web, engine, email):
    """Addresses mail systems read otherwise (a comment, a backslash, a control) are refused
    too: each would be a lead of its own whose mail goes elsewhere or nowhere."""
    answer = web.post(f"/join/{SLUG}", data=SIGNUP | {"email": email})
    assert answer.status_code == 400
    text = answer.text
    problem = text.index("That does not look like an email address.")
    assert text.index('name="email"') < problem < text.index('name="phone"')
    if email == "pat@nowhere":
        assert 'value="pat@nowhere"' in text  # what they typed stays in the form
    with transaction(engine, write=False) as session:
        assert session.exec(select(Contact)).all() == []


def test_an_unknown_campaign_has_no_signup_page(web):
    assert web.get("/join/no-such-campaign").status_code == 404
    assert web.post("/join/no-such-campaign", data=SIGNUP).status_code == 404


def test_a_signup_queues_its_lead_once_also_when_the_rules_see_it(web, engine):
    assert web.post(f"/join/{SLUG}", data=SIGNUP).status_code == 200
    process_pending(engine, now=T0, public_url="https://rally.example.org")
    with transaction(engine, write=False) as session:
        [lead] = session.exec(select(Contact)).all()
        [signup] = session.exec(select(EngagementEvent)).all()
        queued = session.exec(select(OutboxMessage).where(OutboxMessage.channel == "lead")).all()
    assert signup.processed_at is not None and signup.contact_id == lead.id
    assert [(m.destination.split(":")[1], m.subject_id, m.status) for m in queued] == [
        ("export", str(lead.id), "pending")
    ]


def message_event(
    event: str, n: int, body: str, *, sender: str = FAN, role: str = "PERSONAL_ACCOUNT",
    conversation: str = "conv-1", handle: str = "fan", **fields: object,
) -> bytes:  # fmt: skip
    """An `im_*` body as TikTok sends it: the message's content a JSON string, times in ms."""
    content: dict[str, object] = {
        "conversation_id": conversation,
        "message_id": f"msg-{n}",
        "type": "text",
        "text": {"body": body},
        "from": handle,
        "from_user": {"id": sender, "role": role},
        "to": "campaign.account",
        "to_user": {"id": BUSINESS, "role": "BUSINESS_ACCOUNT"},
        "timestamp": (1801587600 + n) * 1000,
    } | fields
    return json.dumps(
        {
            "client_key": CLIENT_KEY,
            "event": event,
            "create_time": 1801587600 + n,
            "user_openid": BUSINESS,
            "content": json.dumps(content),
        }
    ).encode()


def test_live_comments_and_dms_reach_the_campaigns_rules(hooked, rally, applied, engine):
    member = maya(engine)
    with transaction(engine) as session:  # maya's approved video, posted: its id is known
        session.add(
            Creative(
                campaign_id=member.campaign_id,
                member_id=member.id or 0,
                title="Two minutes",
                status=CreativeStatus.POSTED,
                platform_video_id="7301",
            )
        )
    comment = comment_update(7311, video_id=7301)
    elsewhere = comment_update(7312, video_id=9999, unique_identifier="other-fan-" + "x" * 40)
    dm = message_event("im_receive_msg", 3, "How can I volunteer?", sender="fan3-" + "y" * 40)
    assert all(webhook(hooked, body).status_code == 200 for body in (comment, elsewhere, dm))
    by_id = {e.external_id: e for e in tiktok_events(engine)}
    on_video = by_id["7311:insert"]
    assert (on_video.campaign_id, on_video.member_id) == (member.campaign_id, member.id)
    assert by_id["7312:insert"].campaign_id is None  # a video no campaign posted
    assert by_id["msg-3"].campaign_id is None  # no live sprint: no campaign to give a DM to

    assert rally("sprint", "start", SLUG).code == 0
    again = message_event(
        "im_receive_msg", 4, "How can I help?", sender="fan4-" + "z" * 40, conversation="conv-4"
    )
    assert webhook(hooked, again).status_code == 200
    assert {e.external_id: e for e in tiktok_events(engine)}["msg-4"].campaign_id == (
        member.campaign_id
    )

    process_pending(engine, now=T0, public_url="https://rally.example.org")
    with transaction(engine, write=False) as session:
        fired = session.exec(select(FollowUp.event_id, FollowUp.rule_id)).all()
    events = {e.external_id: e.id for e in tiktok_events(engine)}
    rules_for = {key: {r for e, r in fired if e == events[key]} for key in events}
    assert "thank_commenters" in rules_for["7311:insert"]  # the live comment fired the rules
    assert "volunteer_interest_dm" in rules_for["msg-4"]  # and so did the live DM
    assert rules_for["7312:insert"] == set()  # nothing for a video no campaign posted
    with transaction(engine, write=False) as session:
        [queued] = session.exec(
            select(OutboxMessage).where(OutboxMessage.channel == "tiktok_dm")
        ).all()
    assert queued.payload["recipient"] == "conv-4"  # answered in the conversation they opened
    assert queued.payload["business_id"] == BUSINESS


def test_a_dm_goes_to_its_conversations_campaign_then_its_accounts(hooked, rally, engine, applied):
    """The account a DM came to names its campaign (and the creator, for a creator's own
    account); a conversation keeps the campaign its first message got."""
    member = maya(engine)
    with transaction(engine) as session:
        session.add(
            TikTokAccount(
                business_id=BUSINESS,
                campaign_id=member.campaign_id,
                member_id=member.id,
                access_token="sealed",
                refresh_token="sealed",
                access_expires_at=T0,
                refresh_expires_at=T0,
            )
        )
    first = message_event("im_receive_msg", 1, "hi", conversation="conv-m")
    assert webhook(hooked, first).status_code == 200
    with transaction(engine) as session:  # the account is handed to no campaign any more
        account = session.get(TikTokAccount, BUSINESS)
        assert account is not None
        account.campaign_id = account.member_id = None
    later = message_event("im_receive_msg", 2, "still there?", conversation="conv-m")
    other = message_event("im_receive_msg", 3, "hello", conversation="conv-n")
    assert all(webhook(hooked, body).status_code == 200 for body in (later, other))

    places = {e.external_id: (e.campaign_id, e.member_id) for e in tiktok_events(engine)}
    assert places == {
        "msg-1": (member.campaign_id, member.id),  # the creator's own account
        "msg-2": (member.campaign_id, member.id),  # the conversation's
        "msg-3": (None, None),  # neither, and no live sprint
    }


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (comment_update(1, video_id={"id": 1}), "content.video_id: an id expected"),
        (comment_update(1, unique_identifier=["fan"]), "content.unique_identifier: text"),
        (comment_update(1, comment_action=None), "content.comment_action: not an action"),
        (message_event("im_receive_msg", 1, "", text={"body": 7}), "content.text.body: text"),
    ],
)
def test_a_signed_body_with_a_field_of_the_wrong_kind_is_refused_400(hooked, engine, body, said):
    answer = webhook(hooked, body)
    assert answer.status_code == 400 and said in answer.text
    assert tiktok_events(engine) == []


def test_an_impossible_time_or_a_deep_body_is_refused_400_and_a_huge_one_413(hooked, engine):
    late = comment_update(1, timestamp=1e20)
    assert webhook(hooked, late).status_code == 400
    huge_number = comment_update(1, timestamp=10**400)  # no float can hold it
    assert webhook(hooked, huge_number).status_code == 400
    # valid JSON, but no text the store can keep: TikTok must not be told to try again
    refused = webhook(hooked, comment_update(1, unique_identifier="fan\ud800"))
    assert refused.status_code == 400 and "surrogate" in refused.text
    deep = b'{"event": "x", "content": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    assert webhook(hooked, deep).status_code == 400
    huge = json.dumps({"event": "comment.update", "content": "x" * 100_000}).encode()
    assert webhook(hooked, huge).status_code == 413
    seconds = comment_update(2, timestamp=1801587600)
    ms = comment_update(3, timestamp=1801587600123)  # milliseconds, as messages have them
    assert webhook(hooked, seconds).status_code == webhook(hooked, ms).status_code == 200
    assert [e.occurred_at.year for e in tiktok_events(engine)] == [2027, 2027]


def test_a_bad_row_in_a_group_commit_costs_only_its_own_request(settings, applied, engine):
    writer = EventWriter(engine)
    rows = [
        new_event(
            source="rally",
            external_id=f"click-{n}",
            type="link_click",
            occurred_at=T0,
            received_at=T0,
            payload={},
        )
        for n in range(3)
    ]
    bad = rows[1] | {"external_id": None}  # refused by the store
    group: list[tuple[dict, Future[bool]]] = [(row, Future()) for row in (rows[0], bad, rows[2])]
    writer._commit(group)  # one group, as a burst of requests makes it

    assert group[0][1].result() and group[2][1].result()
    assert group[1][1].exception() is not None
    with transaction(engine, write=False) as session:
        stored = session.exec(select(EngagementEvent.external_id)).all()
    assert sorted(stored) == ["click-0", "click-2"]


# --- the signup page: double opt-in, limits, the hidden field, its copy -----------------------

PAT = "pat.lee@example.org"
PAT_PHONE = "+12155550123"
MIN = timedelta(minutes=1)
_texts = itertools.count(1)


class Clock:
    """The app's clock, which a test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def app(settings, applied, clock):
    return create_app(settings, clock=clock)


@pytest.fixture
def page(app) -> TestClient:
    return TestClient(app)


def visitor(app, address: str) -> TestClient:
    """A browser at another network address."""
    return TestClient(app, client=(address, 40000))


def requests_to_confirm(engine, channel: str | None = None) -> list[OutboxMessage]:
    with transaction(engine, write=False) as session:
        query = select(OutboxMessage).where(
            OutboxMessage.subject_type == "consent",
            col(OutboxMessage.idempotency_key).startswith("confirm:"),
        )
        if channel:
            query = query.where(OutboxMessage.channel == channel)
        return list(session.exec(query.order_by(col(OutboxMessage.id))))


def confirm_path(text: str) -> str:
    found = re.search(r"https?://\S+(/join/\S+/confirm/\S+)", text)
    assert found is not None, text
    return found[1]


def consent_by_channel(engine, email: str | None = PAT, phone: str | None = None) -> dict:
    with transaction(engine, write=False) as session:
        found = Contact.email_normalized == email if email else Contact.phone_normalized == phone
        contact = session.exec(select(Contact).where(found)).first()
        if contact is None:
            return {}
        return dict(
            session.exec(
                select(ContactConsent.channel, ContactConsent.status).where(
                    ContactConsent.contact_id == contact.id
                )
            ).all()
        )


def decided(engine) -> dict[str, tuple[str, str | None]]:
    with transaction(engine, write=False) as session:
        rows = session.exec(select(FollowUp.rule_id, FollowUp.status, FollowUp.reason)).all()
    return {rule: (status, reason) for rule, status, reason in rows}


def text_in(engine, phone: str, text: str, at: datetime, *, then_rules: bool = True) -> None:
    """A text in from `phone` to the campaign's number, then (unless told not to) the rules'
    pass."""
    record = {
        "source": "sms",
        "external_id": f"sms-in-{next(_texts)}",
        "type": "dm",
        "campaign": SLUG,
        "text": text,
        "time": at.isoformat(),
        "payload": {"contact": {"phone": phone}},
    }
    assert ingest(engine, [("sms", record)], now=at).errors == []
    if then_rules:
        process_pending(engine, now=at, public_url="https://rally.example.org")


def process(engine, at: datetime) -> None:
    process_pending(engine, now=at, public_url="https://rally.example.org")


@pytest.fixture
def provider() -> Iterator[FakeSms]:
    yield from serving(FakeSms())


def with_sms(settings, sms: FakeSms):
    return settings.model_copy(
        update={
            "sms_api_url": sms.url,
            "sms_account_sid": sms.account_sid,
            "sms_auth_token": SecretStr(sms.auth_token),
            "sms_from": next(iter(sms.senders)),
        }
    )


def test_consent_from_the_page_waits_for_the_person_and_only_the_requests_to_confirm_go(
    page, engine, clock, smtp, provider
):
    assert page.post(f"/join/{SLUG}", data=SIGNUP | {"consent_sms": "yes"}).status_code == 200
    assert consent_by_channel(engine) == {"email": "pending", "sms": "pending"}
    process(engine, T0)
    welcome = decided(engine)
    assert welcome["welcome_signup_email"][0] == welcome["welcome_signup_sms"][0] == "withheld"
    assert str(welcome["welcome_signup_email"][1]).startswith("unconfirmed email")
    assert str(welcome["welcome_signup_sms"][1]).startswith("unconfirmed sms")

    sms_settings = with_sms(smtp.settings, provider)
    later = T0 + 10 * MIN
    assert deliver_email(engine, smtp.settings, now=lambda: later).sent == 1
    assert deliver_followups(engine, sms_settings, now=lambda: later)["sms"].sent == 1
    [asked] = smtp.inbox.to(PAT)
    assert asked["Subject"] == "Confirm your email for First Vote PA 2027"
    body = asked.get_body(("plain",)).get_content()
    assert "registration deadlines, voting reminders and volunteer shifts" in body
    [text] = provider.messages
    assert text["to"] == PAT_PHONE
    assert text["body"] == (
        "First Vote PA: Reply YES to get our texts. Up to 4 msgs/month. "
        "Msg & data rates may apply. Reply HELP for help, STOP to cancel."
    )
    [stored] = requests_to_confirm(engine, "email")
    assert "/confirm/" not in stored.payload["text"]  # the store keeps no usable link

    path = confirm_path(body)
    assert "Confirm my email" in page.get(path).text  # opening the link confirms nothing
    assert consent_by_channel(engine)["email"] == "pending"
    assert "Your email is confirmed" in page.post(path).text
    assert consent_by_channel(engine) == {"email": "granted", "sms": "pending"}

    process(engine, later)  # the welcome email is decided again, and goes
    assert decided(engine)["welcome_signup_email"][0] == "queued"
    assert decided(engine)["welcome_signup_sms"][0] == "withheld"
    assert deliver_email(engine, smtp.settings, now=lambda: later).sent == 1
    assert [m["Subject"] for m in smtp.inbox.to(PAT)][1:] == ["Welcome to First Vote PA 2027"]
    assert deliver_followups(engine, sms_settings, now=lambda: later)["sms"].sent == 0

    yes_at = later + MIN
    text_in(engine, PAT_PHONE, "Yes!", yes_at)
    assert consent_by_channel(engine) == {"email": "granted", "sms": "granted"}
    assert decided(engine)["welcome_signup_sms"][0] == "queued"
    deliver_followups(engine, sms_settings, now=lambda: yes_at + 10 * MIN)
    assert [m["body"] for m in provider.messages][1:] == [
        "First Vote PA: You're subscribed. Up to 4 msgs/month. Msg & data rates may apply. "
        "Reply HELP for help, STOP to cancel.",
        "First Vote PA 2027: thanks for signing up, Pat! Reply STOP to opt out.",
    ]
    assert len(smtp.inbox.to(PAT)) == 2 and len(provider.messages) == 3  # nothing twice


def test_a_confirmation_link_confirms_only_when_posted_and_only_once(page, engine, clock):
    assert page.post(f"/join/{SLUG}", data=SIGNUP).status_code == 200
    [asked] = requests_to_confirm(engine)
    path = confirm_path(asked.payload["text"])
    for _ in range(2):
        shown = page.get(path)
        assert shown.status_code == 200 and 'id="confirm"' in shown.text
    assert consent_by_channel(engine) == {"email": "pending"}

    assert page.post(path).status_code == 200
    assert consent_by_channel(engine) == {"email": "granted"}
    stop = {
        "source": "email",
        "external_id": "reply-1",
        "type": "reply",
        "campaign": SLUG,
        "text": "unsubscribe",
        "time": T0.isoformat(),
        "payload": {"contact": {"email": PAT}},
    }
    assert ingest(engine, [("email", stop)], now=T0).errors == []
    process(engine, T0)
    assert consent_by_channel(engine) == {"email": "revoked"}

    again = page.post(path)  # the link is spent: it never undoes the STOP
    assert again.status_code == 200 and "Already confirmed" in again.text
    assert consent_by_channel(engine) == {"email": "revoked"}
    assert "Already confirmed" in page.get(path).text


def test_an_expired_or_forged_link_is_refused_with_a_page_that_says_so(page, engine, clock):
    assert page.post(f"/join/{SLUG}", data=SIGNUP).status_code == 200
    [asked] = requests_to_confirm(engine)
    path = confirm_path(asked.payload["text"])
    token = path.rsplit("/", 1)[1]

    forged = path.replace(token, secrets.token_urlsafe(32))
    for answer in (page.get(forged), page.post(forged)):
        assert answer.status_code == 404 and "This link doesn't work" in answer.text
    elsewhere = path.replace(f"/join/{SLUG}/", "/join/no-such-campaign/")
    assert page.post(elsewhere).status_code == 404
    assert page.post(path.replace(token, "x" * 5000)).status_code == 404

    clock.now = T0 + timedelta(days=7, minutes=1)
    for answer in (page.get(path), page.post(path)):
        assert answer.status_code == 410 and "This link has expired" in answer.text
        assert f'href="/join/{SLUG}"' in answer.text  # where to get a new one
    assert consent_by_channel(engine) == {"email": "pending"}


def test_yes_or_start_from_the_phone_confirms_texts_and_a_yes_from_anyone_else_does_not(
    app, engine
):
    phones = {
        "+12155550101": "\uff39\uff25\uff33",  # YES in full-width letters
        "+12155550102": "start",
        "+12155550103": "yes I'll come",
    }
    for i, phone in enumerate(phones):
        form = {"name": f"Person {i}", "phone": phone, "consent_sms": "yes"}
        assert visitor(app, f"198.51.100.{i}").post(f"/join/{SLUG}", data=form).status_code == 200
    for phone, said in phones.items():
        text_in(engine, phone, said, T0 + MIN)
    text_in(engine, "+12155550199", "YES", T0 + MIN)  # no signup behind it

    status = {p: consent_by_channel(engine, None, p) for p in phones}
    assert status == {
        "+12155550101": {"sms": "granted"},
        "+12155550102": {"sms": "granted"},
        "+12155550103": {"sms": "pending"},  # a sentence is no YES
    }
    assert consent_by_channel(engine, None, "+12155550199") == {}
    with transaction(engine, write=False) as session:
        answers = session.exec(
            select(OutboxMessage.payload).where(
                OutboxMessage.subject_type == "consent",
                col(OutboxMessage.idempotency_key).startswith("consent:"),
            )
        ).all()
    assert sorted(a["to"] for a in answers) == ["+12155550101", "+12155550102"]
    assert all(a["text"].startswith("First Vote PA: You're subscribed.") for a in answers)


def test_a_yes_the_rules_see_with_the_signup_itself_still_lets_the_welcome_text_go(app, engine):
    form = {"name": "Jo", "phone": "2155550150", "consent_sms": "yes"}
    assert visitor(app, "198.51.100.50").post(f"/join/{SLUG}", data=form).status_code == 200
    text_in(engine, "+12155550150", "YES", T0, then_rules=False)
    process(engine, T0)  # one pass: the signup is withheld, then the YES confirms

    assert consent_by_channel(engine, None, "+12155550150") == {"sms": "granted"}
    assert decided(engine)["welcome_signup_sms"][0] == "queued"


def test_help_by_text_is_answered_with_who_texts_and_where_to_find_help(app, engine):
    form = {"name": "Lee", "phone": "2155550140", "consent_sms": "yes"}
    assert visitor(app, "198.51.100.40").post(f"/join/{SLUG}", data=form).status_code == 200
    text_in(engine, "+12155550140", "Help", T0 + MIN)
    text_in(engine, "+12155550141", "HELP?", T0 + MIN)  # no signup: the campaign it texted
    text_in(engine, "+12155550142", "help me register", T0 + MIN)  # a question, not HELP

    with transaction(engine, write=False) as session:
        answers = session.exec(
            select(OutboxMessage.payload).where(
                col(OutboxMessage.idempotency_key).startswith("consent:sms")
            )
        ).all()
    assert {a["to"]: a["text"] for a in answers} == {
        phone: "First Vote PA: For help, visit https://firstvotepa.example.org. "
        "Up to 4 msgs/month. Msg & data rates may apply. Reply STOP to cancel."
        for phone in ("+12155550140", "+12155550141")
    }
    assert consent_by_channel(engine, None, "+12155550140") == {"sms": "pending"}


def test_a_pending_lead_syncs_without_consent_and_as_subscribed_once_confirmed(
    page, engine, settings
):
    assert page.post(f"/join/{SLUG}", data=SIGNUP).status_code == 200

    def exported() -> dict[str, str]:
        sync_leads(engine, settings, now=lambda: T0 + MIN, wait=wait_none())
        with (settings.exports / SLUG / "export.csv").open(newline="") as file:
            [row] = list(csv.DictReader(file))
        return row

    assert exported()["email_status"] == ""  # pending is not subscribed
    [asked] = requests_to_confirm(engine)
    assert page.post(confirm_path(asked.payload["text"])).status_code == 200
    assert exported()["email_status"] == "subscribed"


def test_signups_past_the_limit_from_one_client_get_429_and_send_nothing(app, engine):
    page = visitor(app, "203.0.113.7")
    for i in range(5):
        form = SIGNUP | {"email": f"p{i}@example.org", "phone": ""}
        answer = page.post(f"/join/{SLUG}", data=form)
        assert answer.status_code == 200, answer.text
    refused = page.post(f"/join/{SLUG}", data=SIGNUP | {"email": "p5@example.org", "phone": ""})
    assert refused.status_code == 429
    assert "Too many signups from this connection" in refused.text
    assert 590 < int(refused.headers["Retry-After"]) <= 602  # 10 minutes, to the window's 512th
    assert 'value="p5@example.org"' in refused.text  # what they typed stays in the form

    with transaction(engine, write=False) as session:
        emails = session.exec(select(Contact.email_normalized)).all()
        events = session.exec(select(EngagementEvent)).all()
    assert sorted(map(str, emails)) == [f"p{i}@example.org" for i in range(5)]
    assert len(events) == 5 and len(requests_to_confirm(engine)) == 5

    other = visitor(app, "203.0.113.8").post(f"/join/{SLUG}", data=SIGNUP)
    assert other.status_code == 200  # another network address has its own count


def test_ipv6_visitors_count_by_their_64_block(app, engine):
    for i in range(1, 7):  # one household's or phone's block hands out many addresses
        form = {"name": "V", "email": f"v{i}@example.org", "consent_email": "yes"}
        answer = visitor(app, f"2001:db8:0:1::{i}").post(f"/join/{SLUG}", data=form)
        assert answer.status_code == (200 if i <= 5 else 429), i
    form = {"name": "W", "email": "w@example.org", "consent_email": "yes"}
    assert visitor(app, "2001:db8:0:2::1").post(f"/join/{SLUG}", data=form).status_code == 200


def test_one_address_is_asked_to_confirm_once_a_day_and_signs_up_three_times(app, engine, clock):
    for i in range(2):
        answer = visitor(app, f"192.0.2.{i}").post(f"/join/{SLUG}", data=SIGNUP)
        assert answer.status_code == 200
    assert len(requests_to_confirm(engine)) == 1  # the repeat asks nothing again

    clock.now = T0 + timedelta(days=1, minutes=1)
    assert visitor(app, "192.0.2.2").post(f"/join/{SLUG}", data=SIGNUP).status_code == 200
    assert len(requests_to_confirm(engine)) == 2  # a day later: a fresh link

    refused = visitor(app, "192.0.2.3").post(f"/join/{SLUG}", data=SIGNUP)
    assert refused.status_code == 429
    assert "Too many signups for this email or phone" in refused.text
    by_phone = visitor(app, "192.0.2.4").post(
        f"/join/{SLUG}", data=SIGNUP | {"email": "someone.else@example.org"}
    )
    assert by_phone.status_code == 429  # the same phone, with another email
    assert len(requests_to_confirm(engine)) == 2


def test_one_person_signing_up_from_many_places_at_once_is_one_contact_counted_once_each(
    app, engine
):
    """Signups take no turns with other changes: what keeps them apart is their person's own
    lock and the limit's own row, which this checks with a dozen at the same moment."""
    start = threading.Barrier(12)

    def sign_up_from(i: int) -> int:
        page = visitor(app, f"198.51.100.{i}")
        start.wait()
        return page.post(f"/join/{SLUG}", data=SIGNUP).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(sign_up_from, range(12)))
    assert statuses == [200] * 3 + [429] * 9  # three a day for one email or phone
    with transaction(engine, write=False) as session:
        contacts = session.exec(select(Contact)).all()
        signups = session.exec(select(EngagementEvent).where(EngagementEvent.type == "signup"))
        consents = session.exec(select(ContactConsent)).all()
        assert len(list(signups)) == 3
    assert [c.email_normalized for c in contacts] == [PAT]
    assert [(c.channel, c.status) for c in consents] == [("email", "pending")]
    assert len(requests_to_confirm(engine)) == 1


def test_a_form_that_fills_the_hidden_field_is_thanked_and_recorded_nowhere(page, engine):
    answer = page.post(f"/join/{SLUG}", data=SIGNUP | {"website": "http://spam.example"})
    assert answer.status_code == 200 and "Check your email" in answer.text
    with transaction(engine, write=False) as session:
        for model in (Contact, ContactConsent, EngagementEvent, OutboxMessage, RateWindow):
            assert session.exec(select(model)).all() == [], model.__name__


def test_a_form_too_large_or_with_too_many_fields_is_refused(page, engine):
    assert page.post(f"/join/{SLUG}", data=SIGNUP | {"name": "x" * 10_000}).status_code == 413
    many = SIGNUP | {f"extra{i}": "x" for i in range(30)}
    assert page.post(f"/join/{SLUG}", data=many).status_code == 400
    with transaction(engine, write=False) as session:
        assert session.exec(select(Contact)).all() == []


def test_the_signup_page_shows_the_public_intro_and_the_carriers_disclosure(page):
    text = html.unescape(page.get(f"/join/{SLUG}").text)
    assert "Your first vote counts. Sign up and we'll remind you of the deadlines" in text
    assert "Register 4,000 first-time voters" not in text  # the objective is for staff
    sms = text[text.index('name="consent_sms"') : text.index("</fieldset>")]
    for words in (
        "recurring automated text messages from First Vote PA",
        "Up to 4 msgs/month.",
        "Msg & data rates may apply.",
        "Reply HELP for help, STOP to cancel.",
        '<a href="https://firstvotepa.example.org/privacy">Privacy policy</a>',
    ):
        assert words in sms, words
    assert "Email me about registration deadlines, voting reminders and volunteer shifts" in text
    trap = re.search(r'<div class="hp" aria-hidden="true">.*?</div>', text)
    assert trap is not None
    assert all(a in trap[0] for a in ('name="website"', 'tabindex="-1"', 'autocomplete="off"'))


def test_without_public_copy_the_page_names_the_campaign_and_never_its_objective(
    rally, engine, example, settings
):
    campaign = example / "campaign.yaml"
    text = campaign.read_text()
    start = text.index("signup:")
    campaign.write_text(text[:start] + text[text.index("policy:", start) :])
    assert rally("campaign", "apply", campaign).code == 0
    page = TestClient(create_app(settings, clock=lambda: T0)).get(f"/join/{SLUG}").text
    assert "Sign up to hear from First Vote PA 2027." in page
    assert "Register 4,000" not in page
    assert "messages from First Vote PA 2027" in page and "Msg frequency varies." in page
    assert "Privacy policy" not in page


def test_the_thank_you_page_says_what_to_do_next(page):
    both = page.post(f"/join/{SLUG}", data=SIGNUP | {"consent_sms": "yes"}).text
    assert "Check your email" in both and f"We sent a link to <strong>{PAT}</strong>" in both
    assert "Reply YES to our text" in both and "(215) 555-0123" in both
    assert '<a href="https://firstvotepa.example.org">firstvotepa.example.org</a>' in both
    assert "You're in. Every week until the deadline" in html.unescape(both)  # its own words
    register = "https://www.pavoterservices.pa.gov/pages/VoterRegistrationApplication.aspx"
    assert f'<a class="button" href="{register}">Register to vote (2 minutes)</a>' in both
    assert 'href="https://firstvotepa.example.org/privacy"' in both
    neither = page.post(f"/join/{SLUG}", data={"name": "Kim", "email": "kim@example.org"}).text
    assert "Check your email" not in neither and "You're signed up" in neither


def consent_record(rally, who: str) -> list[dict]:
    shown = rally("leads", "show", who, "--json")
    assert shown.code == 0, shown.err
    return [
        {k: r[k] for k in ("channel", "status", "source", "wording", "origin")}
        for r in json.loads(shown.out)["consent_record"]
    ]


def test_each_consent_is_on_the_record_with_its_words_source_and_origin(
    app, engine, clock, rally, tmp_path
):
    form = SIGNUP | {"phone": "+12155550123", "consent_sms": "yes"}
    assert visitor(app, "203.0.113.7").post(f"/join/{SLUG}", data=form).status_code == 200
    shown = re.sub(r"<[^>]+>", " ", visitor(app, "203.0.113.7").get(f"/join/{SLUG}").text)
    page_text = " ".join(html.unescape(shown).split())
    [link] = requests_to_confirm(engine, "email")
    assert visitor(app, "203.0.113.9").post(confirm_path(link.payload["text"])).status_code == 200
    text_in(engine, "+12155550123", "YES", T0 + MIN)
    text_in(engine, "+12155550123", "STOP texting me", T0 + 2 * MIN)

    record = consent_record(rally, PAT)
    assert [(r["channel"], r["status"], r["source"]) for r in record] == [
        ("email", "pending", f"join:{SLUG}"),
        ("sms", "pending", f"join:{SLUG}"),
        ("email", "granted", "email link"),
        ("sms", "granted", record[3]["source"]),
        ("sms", "revoked", record[4]["source"]),
    ]
    assert {r["origin"] for r in record[:2]} == {"203.0.113.7"}  # the form's network address
    assert record[2]["origin"] == "203.0.113.9"
    assert record[3]["source"].startswith("sms:") and record[3]["wording"] == "YES"
    assert record[4]["wording"] == "STOP texting me" and record[4]["origin"] == "+12155550123"
    # The words kept are the words the page showed beside each box.
    for said in (record[0]["wording"], record[1]["wording"]):
        assert said.split(" Privacy policy: ")[0] in page_text
    assert (
        "Msg & data rates may apply. Reply HELP for help, STOP to cancel." in record[1]["wording"]
    )

    exported = tmp_path / "consent.jsonl"
    run = rally("audit", "export", "--consent", "--out", exported)
    assert run.code == 0 and run.err == f"5 consent records exported to {exported}\n"
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [(line["channel"], line["status"]) for line in lines] == [
        (r["channel"], r["status"]) for r in record
    ]

    assert (
        rally("leads", "forget", PAT).code == 0
    )  # what came from them goes; the page's words stay
    with transaction(engine, write=False) as session:
        kept = session.exec(select(ConsentRecord).order_by(col(ConsentRecord.id))).all()
    assert {r.origin for r in kept} == {None}
    assert [r.wording is not None for r in kept] == [True, True, True, False, False]


def test_a_stop_by_dm_and_a_file_import_are_on_the_record_too(hooked, rally, engine, applied):
    signup = {
        "source": "import",
        "external_id": "crm-row-1",
        "type": "signup",
        "campaign": SLUG,
        "time": T0.isoformat(),
        "payload": {"contact": {"name": "Lee Park", "email": "lee@example.org",
                                "consent": {"email": True}}},
    }  # fmt: skip
    assert ingest(engine, [("contacts.jsonl", signup)], now=T0).errors == []
    process(engine, T0)
    [imported] = consent_record(rally, "lee@example.org")
    assert (imported["channel"], imported["status"], imported["source"]) == (
        "email", "granted", "import:crm-row-1",
    )  # fmt: skip
    stop = {
        "source": "tiktok",
        "external_id": "dm-stop-1",
        "type": "dm",
        "campaign": SLUG,
        "actor": "fan9",
        "text": "STOP",
        "time": T0.isoformat(),
    }
    assert ingest(engine, [("dms.jsonl", stop)], now=T0).errors == []
    process(engine, T0)
    with transaction(engine, write=False) as session:
        by_dm = session.exec(select(ConsentRecord).where(ConsentRecord.channel == "dm")).one()
    assert (by_dm.status, by_dm.wording, by_dm.origin) == ("revoked", "STOP", "fan9")
    assert by_dm.source == "tiktok:dm-stop-1"

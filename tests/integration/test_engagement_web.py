"""The public's ways in, over HTTP: TikTok's signed webhooks in the shapes TikTok sends them
(accepted, forged, stale, replayed, the account's own echoes, attributed to campaigns), creators'
`/t/<code>` tracking links and the campaign signup page `/join/<slug>`."""

import json
from concurrent.futures import Future
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import col, select

from integrations.tiktok import sign
from store.db import transaction
from store.models import (
    ConsentStatus,
    Contact,
    ContactConsent,
    Creative,
    CreativeStatus,
    Creator,
    EngagementEvent,
    FollowUp,
    OutboxMessage,
    RosterMember,
    TikTokAccount,
)
from tasks.engagement.events import new_event
from tasks.engagement.processing import process_pending
from tasks.engagement.writer import EventWriter
from tests.conftest import SLUG
from web.app import create_app

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


def test_an_unknown_tracking_code_is_404(web, engine):
    assert web.get("/t/nosuchcode", follow_redirects=False).status_code == 404
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
    assert consent == {"email": ConsentStatus.GRANTED}
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


def test_a_signup_with_a_bad_email_shows_the_problem_beside_it(web, engine):
    answer = web.post(f"/join/{SLUG}", data=SIGNUP | {"email": "pat@nowhere"})
    assert answer.status_code == 400
    text = answer.text
    problem = text.index("That does not look like an email address.")
    assert text.index('name="email"') < problem < text.index('name="phone"')
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

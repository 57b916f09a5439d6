"""Engagement over real HTTP against the local TikTok and SMS fakes: a business account connected
by OAuth (its tokens sealed, refreshed before they expire and when TikTok says they have),
comments and replies polled from a stored cursor through throttling and failures, TikTok's
webhooks through the signed endpoint to the campaign's rules, video metrics, and follow-ups
delivered as comment replies, DMs and texts, each exactly once and within TikTok's limits.
Retries never really sleep: tenacity's naps are recorded and move the fake's manual clock
instead."""

from collections.abc import Iterator
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pytest
import tenacity
import tenacity.nap
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, col, select
from tenacity.wait import wait_base

from config.settings import Settings
from integrations.tiktok import TikTokBusiness, sign
from store.db import transaction
from store.models import (
    Campaign,
    Creative,
    CreativeStatus,
    Creator,
    EngagementEvent,
    FollowUp,
    MetricSnapshot,
    OutboxMessage,
    PollCursor,
    RosterMember,
    TikTokAccount,
)
from tasks.drain import DrainReport
from tasks.engagement.accounts import connect
from tasks.engagement.delivery import deliver_followups
from tasks.engagement.events import ingest
from tasks.engagement.poll import SOURCE, PollReport, poll_comments, poll_metrics, poll_tiktok
from tasks.engagement.processing import process_pending
from tasks.review.creatives import posted
from tests.conftest import SLUG
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.sms_api import FakeSms
from tests.fakes.tiktok_api import FakeTikTok, unique_identifier
from web.app import create_app

NOW = datetime(2027, 2, 10, 17, 0, tzinfo=UTC)  # noon in Philadelphia: no quiet hours
LATER = NOW + timedelta(minutes=10)  # past every default rule's delay (2 min reply, 5 min sms)
VIDEO, OTHER = "7311111111111111111", "7322222222222222222"
LIST = "/open_api/v1.3/business/comment/list/"
REPLY = "/open_api/v1.3/business/comment/reply/create/"
CTA = "Tap the link in my bio and register in two minutes."
REDIRECT = "https://rally.example.org/tiktok/connected"
SECRET_KEY = "test-secret-key-for-sealing-tokens-0123"
NO_WAIT = tenacity.wait_none()
M = TypeVar("M", bound=SQLModel)


@dataclass(frozen=True)
class Video:
    video_id: str
    campaign_id: int
    member_id: int
    creative_id: int
    handle: str


def members(engine: Engine, count: int) -> list[tuple[int, int, str]]:
    """(campaign id, member id, handle) of the first `count` creators outside the holdout."""
    with transaction(engine, write=False) as session:
        rows = session.exec(
            select(Campaign.id, RosterMember.id, Creator.handle)
            .join(RosterMember, col(RosterMember.campaign_id) == col(Campaign.id))
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(Campaign.slug == SLUG, col(RosterMember.holdout).is_(False))
            .order_by(col(RosterMember.id))
            .limit(count)
        ).all()
    return [(c or 0, m or 0, h) for c, m, h in rows]


@dataclass
class Rig:
    """The example campaign with two posted videos, the fake TikTok with the campaign's
    account connected to Rally (by OAuth, at NOW), and shortcuts."""

    engine: Engine
    settings: Settings  # with the fake's app, its redirect URI and a secret key
    api: FakeTikTok
    http: httpx.Client
    tiktok: TikTokBusiness  # the account, with the token the fake issued at its start
    videos: list[Video]

    def poll(self, tiktok: TikTokBusiness | None = None, wait: wait_base = NO_WAIT) -> PollReport:
        return poll_comments(self.engine, tiktok or self.tiktok, now=lambda: NOW, wait=wait)

    def poll_and_process(self) -> None:
        report = self.poll()
        assert (report.stopped, report.errors) == (None, [])
        process_pending(self.engine, now=NOW, public_url=self.settings.public_url)

    def deliver(self, at: datetime = LATER, sms: FakeSms | None = None) -> dict[str, DrainReport]:
        """Deliver with the connected account (and SMS through `sms` when given)."""
        live = self.settings
        if sms is not None:
            live = live.model_copy(
                update={
                    "sms_api_url": sms.url,
                    "sms_account_sid": sms.account_sid,
                    "sms_auth_token": SecretStr(sms.auth_token),
                    "sms_from": next(iter(sms.senders)),
                }
            )
        return deliver_followups(self.engine, live, now=lambda: at, client=self.http)

    def rows(self, model: type[M], *where: Any) -> list[M]:
        with transaction(self.engine, write=False) as session:
            key = model.__table__.primary_key  # type: ignore[attr-defined]
            return list(session.exec(select(model).where(*where).order_by(*key)))

    def comments(self) -> list[str]:
        """The comment ids of the stored events, in the order they were stored."""
        return [e.external_id.removesuffix(":insert") for e in self.rows(EngagementEvent)]

    def cursor(self, video_id: str) -> str | None:
        with transaction(self.engine, write=False) as session:
            row = session.get(PollCursor, (SOURCE, video_id))
            return row.cursor if row else None

    def statuses(self, rule_id: str) -> list[str]:
        return [f.status for f in self.rows(FollowUp, FollowUp.rule_id == rule_id)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(clock: ManualClock) -> Iterator[FakeTikTok]:
    yield from serving(FakeTikTok(clock=clock))


@pytest.fixture
def provider() -> Iterator[FakeSms]:
    yield from serving(FakeSms())


def tiktok_settings(settings: Settings, api: FakeTikTok) -> Settings:
    return settings.model_copy(
        update={
            "secret_key": SecretStr(SECRET_KEY),
            "tiktok_client_key": api.client_key,
            "tiktok_client_secret": SecretStr(api.client_secret),
            "tiktok_api_url": api.api_url,
            "tiktok_redirect_uri": REDIRECT,
            "public_url": "https://rally.example.org",
        }
    )


@pytest.fixture
def rig(applied: Any, engine: Engine, settings: Settings, api: FakeTikTok) -> Iterator[Rig]:
    """Two posted creatives are inserted as Creative rows with their video ids set: the review
    path (submit, three approval tiers) is not what these tests are about, and `posted(...)`
    records no video id (see the last test)."""
    made = []
    with transaction(engine) as session:
        for video_id, (campaign_id, member_id, handle) in zip(
            (VIDEO, OTHER), members(engine, 2), strict=True
        ):
            creative = Creative(
                campaign_id=campaign_id,
                member_id=member_id,
                title=f"Video by @{handle}",
                status=CreativeStatus.POSTED,
                platform_video_id=video_id,
                posted_url=f"https://www.tiktok.com/@{handle}/video/{video_id}",
                posted_at=NOW - timedelta(days=1),
            )
            session.add(creative)
            session.flush()
            made.append(Video(video_id, campaign_id, member_id, creative.id or 0, handle))
            api.add_video(video_id)
    live = tiktok_settings(settings, api)
    with httpx.Client(timeout=5) as http:
        connect(engine, live, http, api.authorize(), now=NOW, actor="staff:t", campaign=SLUG)
        tiktok = TikTokBusiness(
            http, access_token=api.access_token, business_id=api.business_id, base_url=api.api_url
        )
        yield Rig(engine, live, api, http, tiktok, made)


@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> list[float]:
    """Every sleep tenacity takes between attempts, which moves the fake's clock instead."""
    taken: list[float] = []

    def nap(seconds: float) -> None:
        taken.append(seconds)
        clock.advance(seconds)

    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=nap))
    return taken


# -- polling -----------------------------------------------------------------------------------


def test_comments_are_stored_once_and_polled_again_from_the_stored_cursor(rig: Rig) -> None:
    api = rig.api
    first = [api.add_comment(VIDEO, f"comment {i}", f"fan{i}") for i in range(65)]

    report = rig.poll()

    assert (report.videos, report.pages, report.new, report.stopped) == (2, 4, 65, None)
    assert rig.comments() == first
    videos = [r for r in api.requests_to(LIST) if r.query["video_id"] == VIDEO]
    assert [r.query.get("cursor", "0") for r in videos] == ["0", "30", "60"]
    assert rig.cursor(VIDEO) == "65"
    e, video = rig.rows(EngagementEvent)[7], rig.videos[0]
    assert (e.external_id, e.type, e.text, e.video_id) == (
        f"{first[7]}:insert",  # the id its comment.update webhook gives it
        "comment",
        "comment 7",
        VIDEO,
    )
    assert (e.actor, e.payload["handle"]) == (unique_identifier("fan7"), "fan7")
    assert (e.campaign_id, e.member_id, e.deliveries) == (video.campaign_id, video.member_id, 1)

    seen = len(api.requests)
    new = [api.add_comment(VIDEO, f"late comment {i}", f"late{i}") for i in range(3)]
    report = rig.poll()

    again = [r.query["cursor"] for r in api.requests[seen:] if r.query["video_id"] == VIDEO]
    assert again == ["65"]  # from the stored cursor, not from the start
    assert (report.comments, report.new) == (3, 3)
    assert rig.comments() == first + new
    assert rig.cursor(VIDEO) == "68"

    with transaction(rig.engine) as session:  # as if a crash lost the last pages' cursor
        kept = session.get(PollCursor, (SOURCE, VIDEO))
        assert kept is not None
        kept.cursor = "30"
        session.add(kept)
    report = rig.poll()

    assert (report.comments, report.new) == (38, 0)
    assert rig.comments() == first + new  # no duplicates
    assert [e.deliveries for e in rig.rows(EngagementEvent)] == [1] * 30 + [2] * 38
    assert rig.cursor(VIDEO) == "68"


@pytest.mark.parametrize("trouble", ["200-40100", "429", "503"])
def test_throttled_or_failing_calls_are_retried_until_every_comment_is_stored(
    rig: Rig, naps: list[float], trouble: str
) -> None:
    api = rig.api
    ids = [api.add_comment(VIDEO, f"comment {i}", f"fan{i}") for i in range(65)]
    if trouble == "503":
        api.fail_next(2, 503)
    else:  # one request a second: each later page (and the other video) is throttled first
        api.throttle_mode = "429" if trouble == "429" else "200-40100"
        api.rate_limit(1, per=1.0)

    report = rig.poll(wait=tenacity.wait_fixed(0.5))

    assert (report.errors, report.stopped) == ([], None)
    assert rig.comments() == ids
    assert rig.cursor(VIDEO) == "65"
    # 4 pages in all. 40100 has no Retry-After: the backoff (0.5 s, twice per throttled page);
    # a 429's Retry-After (1 s) is honoured instead of the backoff.
    assert naps == {"200-40100": [0.5] * 6, "429": [1.0] * 3, "503": [0.5] * 2}[trouble]
    assert len(api.requests_to(LIST)) == 4 + len(naps)


def test_a_refused_token_stops_the_pass_and_keeps_the_cursor(rig: Rig) -> None:
    api = rig.api
    ids = [api.add_comment(VIDEO, f"comment {i}", f"fan{i}") for i in range(5)]
    rig.poll()
    api.add_comment(VIDEO, "one more", "late.fan")
    api.add_comment(OTHER, "and here", "other.fan")
    revoked = TikTokBusiness(
        rig.http, access_token="revoked", business_id=api.business_id, base_url=api.api_url
    )
    seen = len(api.requests)

    report = rig.poll(revoked)

    assert report.stopped is not None
    assert "refuses our access token" in report.stopped and "40105" in report.stopped
    assert len(api.requests) == seen + 1  # not retried, and no other video tried
    assert (report.new, report.comments) == (0, 0)
    assert rig.comments() == ids
    assert rig.cursor(VIDEO) == "5"


def test_metrics_are_one_snapshot_per_posted_video_with_tiktoks_numbers(rig: Rig) -> None:
    numbers = {VIDEO: (12_300, 810, 42, 17, 9_900), OTHER: (5_000, 300, 9, 4, 4_100)}
    for video_id, (views, likes, comments, shares, reach) in numbers.items():
        counts: dict[str, Any] = dict(
            video_views=views, likes=likes, comments=comments, shares=shares
        )
        rig.api.add_video(
            video_id, **counts, reach=reach, average_time_watched=8.25, full_video_watched_rate=0.31
        )
    rig.api.add_video("7399999999999999999", video_views=1)  # the account's, not the campaign's

    report = poll_metrics(rig.engine, rig.tiktok, now=NOW, wait=NO_WAIT)

    assert (report.snapshots, report.errors) == (2, [])
    snapshots = {s.video_id: s for s in rig.rows(MetricSnapshot)}
    assert set(snapshots) == {VIDEO, OTHER}
    for video in rig.videos:
        s = snapshots[video.video_id]
        assert (s.views, s.likes, s.comments, s.shares, s.reach) == numbers[video.video_id]
        assert (s.average_watch_seconds, s.full_watch_rate, s.captured_at) == (8.25, 0.31, NOW)
        assert (s.campaign_id, s.member_id, s.creative_id) == astuple(video)[1:4]


def test_a_posted_video_gone_from_tiktok_is_flagged_to_staff_once_and_restored_when_back(
    rig: Rig,
) -> None:
    del rig.api.videos[OTHER]  # taken down, or deleted or made private by its creator

    first = poll_metrics(rig.engine, rig.tiktok, now=NOW, wait=NO_WAIT)
    again = poll_metrics(rig.engine, rig.tiktok, now=NOW + timedelta(hours=1), wait=NO_WAIT)

    assert (first.taken_down, again.taken_down, first.errors) == ([OTHER], [], [])
    statuses = {c.platform_video_id: c.status for c in rig.rows(Creative)}
    assert statuses == {VIDEO: CreativeStatus.POSTED, OTHER: CreativeStatus.TAKEN_DOWN}
    alerts = [m for m in rig.rows(OutboxMessage) if m.subject_type == "takedown"]
    assert sorted(m.payload["to"] for m in alerts) == [
        "dana.okafor@keystoneyouthvote.example.org",
        "li.chen@keystoneyouthvote.example.org",
    ]  # the campaign's staff (its internal reviewers), each once
    handle = next(v.handle for v in rig.videos if v.video_id == OTHER)
    assert f"@{handle}" in alerts[0].payload["text"]

    rig.api.add_video(OTHER, video_views=5)  # made public again
    back = poll_metrics(rig.engine, rig.tiktok, now=NOW + timedelta(hours=2), wait=NO_WAIT)
    assert back.taken_down == [] and back.snapshots == 2
    assert {c.status for c in rig.rows(Creative)} == {CreativeStatus.POSTED}
    assert len([m for m in rig.rows(OutboxMessage) if m.subject_type == "takedown"]) == 2


# -- delivery ----------------------------------------------------------------------------------


def test_every_commenter_gets_one_reply_on_tiktok_and_never_a_second(rig: Rig) -> None:
    api = rig.api
    first = {name: api.add_comment(VIDEO, f"love it! {name}", name) for name in ("ana", "ben")}
    api.add_comment(VIDEO, "me again!", "ana")  # a second comment: still one reply to ana
    first["dev.r"] = api.add_comment(OTHER, "registered!", "dev.r")
    rig.poll_and_process()

    reports = rig.deliver()

    assert (reports["tiktok_reply"].sent, reports["tiktok_reply"].errors) == (3, [])
    where = {"ana": VIDEO, "ben": VIDEO, "dev.r": OTHER}
    assert sorted((r["video_id"], r["comment_id"], r["text"]) for r in api.replies) == sorted(
        (where[name], comment, f"Thank you @{name}! 💙 {CTA}") for name, comment in first.items()
    )
    assert rig.statuses("thank_commenters") == ["sent"] * 3

    rig.poll_and_process()  # our own replies are no new comments
    assert rig.deliver(LATER + timedelta(hours=1))["tiktok_reply"].sent == 0
    assert len(api.requests_to(REPLY)) == 3
    assert {r.headers["access-token"] for r in api.requests_to(REPLY)} != {api.access_token}


def test_a_dm_about_volunteering_is_answered_in_that_conversation(rig: Rig) -> None:
    rig.api.open_conversation("conv-hana-1")
    record = {
        "source": "tiktok",
        "external_id": "dm-1",
        "type": "dm",
        "actor": "@hana.helps",
        "creator": rig.videos[0].handle,
        "text": "How can I help? I'd love to volunteer",
        "time": "2027-02-10T16:30:00Z",
        "payload": {"conversation_id": "conv-hana-1"},
    }
    assert ingest(rig.engine, [("dm", record)], now=NOW).stored == 1
    rig.poll_and_process()

    reports = rig.deliver()

    assert (reports["tiktok_dm"].sent, reports["tiktok_dm"].errors) == (1, [])
    (message,) = rig.api.messages
    assert message["recipient"] == "conv-hana-1"
    assert message["text"]["body"] == (
        "Thanks for wanting to help, @hana.helps! Sign up here and we'll be in touch about a "
        f"shift that suits you: {rig.settings.public_url}/join/{SLUG}"
    )
    assert rig.statuses("volunteer_interest_dm") == ["sent"]
    rig.deliver(LATER + timedelta(hours=1))
    assert len(rig.api.messages) == 1


def signup(external_id: str, name: str, phone: str) -> tuple[str, dict[str, Any]]:
    contact = {"name": name, "phone": phone, "zip": "19121", "consent": {"sms": True}}
    record = {
        "source": "web",
        "external_id": external_id,
        "type": "signup",
        "campaign": SLUG,
        "time": "2027-02-10T16:40:00Z",
        "payload": {"form": f"/join/{SLUG}", "contact": contact},
    }
    return external_id, record


@pytest.fixture
def texted(rig: Rig, provider: FakeSms) -> DrainReport:
    """Two signups who agreed to texts, the carrier has STOPped the second's number; the first
    delivery's SMS report."""
    provider.mark_stopped("+12155550199")
    records = [signup("s-1", "Rosa Diaz", "(215) 555-0123"), signup("s-2", "Sam Lee", "2155550199")]
    assert ingest(rig.engine, records, now=NOW).stored == 2
    rig.poll_and_process()
    return rig.deliver(sms=provider)["sms"]


def test_a_signup_who_agreed_to_texts_gets_one_and_a_stopped_number_is_not_retried(
    rig: Rig, provider: FakeSms, texted: DrainReport
) -> None:
    assert (texted.sent, texted.dead, texted.retrying) == (1, 1, 0)
    (text,) = provider.messages
    assert (text["to"], text["from"], text["body"]) == (
        "+12155550123",
        "+15005550006",
        "First Vote PA 2027: thanks for signing up, Rosa! Reply STOP to opt out.",
    )
    (dead,) = rig.rows(OutboxMessage, OutboxMessage.status == "dead")
    assert (dead.channel, dead.payload["to"], dead.attempts) == ("sms", "+12155550199", 1)
    assert "Attempt to send to unsubscribed recipient" in (dead.last_error or "")
    assert "21610" in (dead.last_error or "")

    rig.deliver(LATER + timedelta(days=1), sms=provider)
    assert len(provider.requests) == 2  # one each: nothing resent, nothing retried


def test_a_text_the_provider_refused_leaves_its_follow_up_saying_why(
    rig: Rig, texted: DrainReport
) -> None:
    # "A follow-up that was not sent keeps the reason" (README): a dead message must not leave
    # its follow-up looking queued forever (as `rally events status` counts it).
    sent, refused = rig.rows(FollowUp, FollowUp.rule_id == "welcome_signup_sms")
    assert sent.status == "sent"
    assert refused.status not in ("queued", "sent")
    assert "unsubscribed recipient" in (refused.reason or "")


def test_a_reply_that_fails_twice_with_503_is_sent_once(rig: Rig, naps: list[float]) -> None:
    comment = rig.api.add_comment(VIDEO, "so true", "zoe")
    rig.poll_and_process()
    rig.api.fail_next(2, 503)

    assert rig.deliver()["tiktok_reply"].sent == 1

    assert [r.status for r in rig.api.requests_to(REPLY)] == [503, 503, 200]
    assert len(naps) == 2  # retried at once, with tenacity's short backoff
    (reply,) = rig.api.replies
    assert (reply["comment_id"], reply["text"]) == (comment, f"Thank you @zoe! 💙 {CTA}")
    (row,) = rig.rows(OutboxMessage, OutboxMessage.channel == "tiktok_reply")
    assert (row.status, row.remote_id) == ("sent", reply["reply_id"])
    assert rig.statuses("thank_commenters") == ["sent"]
    rig.deliver(LATER + timedelta(hours=1))
    assert len(rig.api.requests_to(REPLY)) == 3


# -- gaps found while writing these tests ------------------------------------------------------


def test_a_video_gone_from_tiktok_does_not_stop_polling_the_others(rig: Rig) -> None:
    del rig.api.videos[OTHER]  # deleted on TikTok: comment/list answers 40002, video_id invalid
    comment = rig.api.add_comment(VIDEO, "still here", "fan")

    report = rig.poll()

    assert rig.comments() == [comment]
    assert any(OTHER in error for error in report.errors)
    assert report.stopped is None


def test_a_creative_posted_with_its_tiktok_url_has_its_comments_polled(rig: Rig) -> None:
    # The service layer's way to record a posting (`rally creatives posted ID URL`); the
    # creative is inserted approved because the three review tiers are not the point here.
    campaign_id, member_id, handle = members(rig.engine, 3)[2]
    video_id = "7333333333333333333"
    with transaction(rig.engine) as session:
        creative = Creative(
            campaign_id=campaign_id, member_id=member_id, title="Hi", status=CreativeStatus.APPROVED
        )
        session.add(creative)
        session.flush()
        url = f"https://www.tiktok.com/@{handle}/video/{video_id}"
        assert posted(session, creative_id=creative.id or 0, url=url, actor="staff:t", now=NOW)
    comment = rig.api.add_comment(video_id, "first!", "early.bird")

    rig.poll()

    assert video_id in {r.query["video_id"] for r in rig.api.requests_to(LIST)}
    assert rig.comments() == [comment]


# -- tokens ------------------------------------------------------------------------------------

TOKEN = "/open_api/v1.3/tt_user/oauth2/refresh_token/"


def account(rig: Rig) -> TikTokAccount:
    (row,) = rig.rows(TikTokAccount)
    return row


def test_the_connected_accounts_tokens_are_kept_sealed(rig: Rig) -> None:
    row = account(rig)
    issued = [token for token, grant in rig.api.grants.items() if token != rig.api.access_token]
    assert len(issued) == 1 and len(rig.api.refresh_tokens) == 1
    stored = repr(row.model_dump())
    assert issued[0] not in stored and next(iter(rig.api.refresh_tokens)) not in stored
    assert (row.business_id, row.access_expires_at) == (
        rig.api.business_id,
        NOW + timedelta(days=1),
    )
    assert row.refresh_expires_at == NOW + timedelta(days=365)
    assert "comment.list.manage" in row.scopes


def test_a_token_that_expires_mid_poll_is_refreshed_and_the_poll_finishes(rig: Rig) -> None:
    api = rig.api
    ids = [api.add_comment(VIDEO, f"comment {i}", f"fan{i}") for i in range(65)]
    other = api.add_comment(OTHER, "and here", "other.fan")
    api.expire_access_tokens(after_requests=2)  # TikTok's day ends after two pages
    before = account(rig)

    report = poll_tiktok(rig.engine, rig.settings, now=lambda: NOW + timedelta(hours=1))

    assert (report.stopped, report.errors, report.new) == (None, [], 66)
    assert rig.comments() == [*ids, other]
    assert len(api.requests_to(TOKEN)) == 1
    codes = [r.status for r in api.requests if r.path == LIST]
    assert len(codes) == 5  # 3 pages + 1 refused as expired and asked again, + the other video
    after = account(rig)
    assert after.access_token != before.access_token and after.refresh_token != before.refresh_token
    assert after.refreshed_at == NOW + timedelta(hours=1)
    assert after.access_expires_at == NOW + timedelta(hours=1, days=1)
    assert report.snapshots == 2  # and the metrics after, with the new token


def test_a_token_about_to_expire_is_refreshed_before_it_is_used(rig: Rig) -> None:
    rig.api.add_comment(VIDEO, "hi", "fan")
    almost = NOW + timedelta(hours=23, minutes=55)

    report = poll_tiktok(rig.engine, rig.settings, now=lambda: almost)

    assert (report.errors, report.new) == ([], 1)
    assert [r.path for r in rig.api.requests][-4:-2] == [TOKEN, LIST]  # refreshed first
    assert all(r.status == 200 for r in rig.api.requests_to(LIST))
    assert account(rig).access_expires_at == almost + timedelta(days=1)


def test_a_refresh_token_tiktok_refuses_stops_the_pass_saying_to_connect_again(rig: Rig) -> None:
    rig.api.refresh_tokens.clear()  # revoked, say
    rig.api.expire_access_tokens()
    rig.api.add_comment(VIDEO, "hi", "fan")

    report = poll_tiktok(rig.engine, rig.settings, now=lambda: NOW + timedelta(hours=2))

    assert report.stopped is not None and "rally tiktok connect" in report.stopped
    assert "40107" in report.stopped and rig.comments() == []


# -- webhooks to the rules ---------------------------------------------------------------------

T_NOW = int(NOW.timestamp())


@pytest.fixture
def web(rig: Rig) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(create_app(rig.settings, clock=lambda: NOW)) as client:
        yield client


def hook(web: Any, rig: Rig, body: bytes, *, signed_at: int = T_NOW) -> dict[str, Any]:
    secret = rig.settings.tiktok_client_secret.get_secret_value()
    answer = web.post(
        "/webhooks/tiktok",
        content=body,
        headers={"TikTok-Signature": sign(body, secret, signed_at)},
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_live_webhooks_fire_the_rules_and_the_answers_reach_tiktok_once(rig: Rig, web: Any) -> None:
    api = rig.api
    comment = api.add_comment(VIDEO, "love this", "ana.votes")  # on TikTok, then its webhook
    dm = api.message_received("conv-hana", "How can I volunteer?", "hana.helps", at=T_NOW - 60)
    for body in (api.comment_update(comment), dm):
        assert hook(web, rig, body) == {"ok": True}
    assert hook(web, rig, dm, signed_at=T_NOW - 30) == {"ok": True}  # redelivered, signed anew

    stored = {e.type: e for e in rig.rows(EngagementEvent)}
    assert set(stored) == {"comment", "dm"} and stored["dm"].deliveries == 2
    assert (stored["comment"].campaign_id, stored["comment"].member_id) == astuple(rig.videos[0])[
        1:3
    ]
    assert stored["dm"].campaign_id == rig.videos[0].campaign_id  # the account is the campaign's
    process_pending(rig.engine, now=NOW, public_url=rig.settings.public_url)
    reports = rig.deliver()

    assert (reports["tiktok_reply"].sent, reports["tiktok_dm"].sent) == (1, 1)
    (reply,) = api.replies
    assert (reply["video_id"], reply["comment_id"]) == (VIDEO, comment)
    assert reply["text"] == f"Thank you! 💙 {CTA}"  # the webhook names no handle: no @id
    (message,) = api.messages
    assert message["recipient"] == "conv-hana"
    assert message["text"]["body"].startswith("Thanks for wanting to help, @hana.helps!")

    echoes = [api.comment_update(reply["reply_id"]), api.message_echo(message, at=T_NOW + 700)]
    for echo in echoes:  # Rally's own reply and DM, as TikTok sends them back
        assert hook(web, rig, echo)["ignored"].startswith("the account's own")
    read = api.envelope("im_mark_read_msg", {"conversation_id": "conv-hana"}, T_NOW + 800)
    assert hook(web, rig, read) == {"ok": True, "ignored": "a read receipt"}
    assert len(rig.rows(EngagementEvent)) == 2
    process_pending(rig.engine, now=LATER, public_url=rig.settings.public_url)
    again = rig.deliver(LATER + timedelta(hours=1))
    assert (again["tiktok_reply"].sent, again["tiktok_dm"].sent) == (0, 0)
    assert len(rig.rows(FollowUp)) == len({(f.rule_id, f.contact_id) for f in rig.rows(FollowUp)})


KEYWORD_REPLY = """
name: Keyword replies
rules:
  - {id: helpers, when: {types: [comment], keywords: [volunteer]}, action: reply,
     message: "Thanks {{ actor.greeting }}, sign up at {{ links.join }}"}
"""


def test_a_comment_its_webhook_brought_without_text_gets_it_from_the_poll_and_the_rules_look_again(
    rig: Rig, web: Any, rally: Any, example: Any
) -> None:
    (example / "rules.yaml").write_text(KEYWORD_REPLY)
    campaign = example / "campaign.yaml"
    campaign.write_text(campaign.read_text().replace("followups: default", "followups: rules.yaml"))
    assert rally("campaign", "apply", campaign).code == 0
    comment = rig.api.add_comment(VIDEO, "I want to volunteer!", "vol.unteer")
    hook(web, rig, rig.api.comment_update(comment))
    process_pending(rig.engine, now=NOW, public_url=rig.settings.public_url)
    assert rig.rows(FollowUp) == []  # no text yet: the keyword cannot match

    rig.poll_and_process()

    (event,) = rig.rows(EngagementEvent)
    assert (event.external_id, event.text, event.deliveries) == (
        f"{comment}:insert",
        "I want to volunteer!",
        2,
    )
    assert rig.statuses("helpers") == ["queued"]
    rig.deliver()
    assert rig.api.replies[0]["text"].startswith("Thanks @vol.unteer, sign up at")


def test_polling_reads_the_replies_in_each_thread_but_not_the_accounts_own(rig: Rig) -> None:
    api = rig.api
    top = api.add_comment(VIDEO, "who else is registering?", "asker")
    fan = api.add_comment(VIDEO, "me! just did", "answerer", parent_comment_id=top)
    api.add_comment(VIDEO, "Love to see it", "campaign.account", parent_comment_id=top,
                    author=api.business_id)  # fmt: skip

    report = rig.poll()

    assert rig.comments() == [top, fan]
    assert [e.type for e in rig.rows(EngagementEvent)] == ["comment", "reply"]
    assert report.comments == 2
    assert len(api.requests_to("/open_api/v1.3/business/comment/reply/list/")) == 1


# -- TikTok's limits ---------------------------------------------------------------------------

LIMITS = """
name: Limits
rules:
  - {id: long_reply, when: {types: [comment]}, action: reply,
     message: "{{ campaign.call_to_action }} {{ campaign.call_to_action }}
       {{ campaign.call_to_action }}"}
  - {id: slow_dm, when: {types: [dm], keywords: [late]}, action: dm, delay_minutes: 2890,
     message: "Sorry for the wait!"}
  - {id: quick_dm, when: {types: [dm], keywords: [soon]}, action: dm, message: "Hello!"}
"""


def test_what_tiktok_would_refuse_is_withheld_or_failed_with_the_reason(
    rig: Rig, web: Any, rally: Any, example: Any
) -> None:
    (example / "rules.yaml").write_text(LIMITS)
    campaign = example / "campaign.yaml"
    campaign.write_text(campaign.read_text().replace("followups: default", "followups: rules.yaml"))
    assert rally("campaign", "apply", campaign).code == 0
    api = rig.api
    hook(web, rig, api.comment_update(api.add_comment(VIDEO, "hi", "fan1")))
    hook(web, rig, api.message_received("conv-1", "reply when you're late", "fan2", at=T_NOW))
    hook(web, rig, api.message_received("conv-2", "answer soon", "fan3", at=T_NOW - 10))
    process_pending(rig.engine, now=NOW, public_url=rig.settings.public_url)

    (long,) = rig.rows(FollowUp, FollowUp.rule_id == "long_reply")
    assert (long.status, long.reason) == (
        "withheld",
        f"too long: a TikTok reply takes at most 150 characters (this one has {3 * len(CTA) + 2})",
    )
    (slow,) = rig.rows(FollowUp, FollowUp.rule_id == "slow_dm")
    assert slow.status == "withheld" and (slow.reason or "").startswith(
        "too late: TikTok lets a business answer a DM only within 48 hours"
    )
    with transaction(rig.engine) as session:  # the account turns out to be registered in Germany
        session.get(TikTokAccount, api.business_id).region = "DE"  # type: ignore[union-attr]
    assert rig.deliver()["tiktok_dm"].dead == 1
    (quick,) = rig.rows(FollowUp, FollowUp.rule_id == "quick_dm")
    assert quick.status == "failed"
    assert "EEA, Switzerland or the UK (this account: DE)" in (quick.reason or "")
    assert api.requests_to("/open_api/v1.3/business/message/send/") == []


def test_a_dm_whose_48_hours_ran_out_in_the_outbox_is_not_sent(rig: Rig, web: Any) -> None:
    api = rig.api
    hook(web, rig, api.message_received("conv-1", "how can I help", "fan2", at=T_NOW - 60))
    process_pending(rig.engine, now=NOW, public_url=rig.settings.public_url)

    reports = rig.deliver(at=NOW + timedelta(hours=49))  # the delivery was down two days

    assert reports["tiktok_dm"].dead == 1 and api.messages == []
    (late,) = rig.rows(FollowUp, FollowUp.rule_id == "volunteer_interest_dm")
    assert late.status == "failed" and "window closed" in (late.reason or "")


# -- several accounts --------------------------------------------------------------------------

MAYA_BUSINESS = "biz-open-id-maya"


def test_a_creator_who_connected_their_own_account_is_read_and_answered_with_it(
    rig: Rig, web: Any
) -> None:
    api, (campaigns, creators) = rig.api, rig.videos
    api.add_video(creators.video_id, business_id=MAYA_BUSINESS)  # the creator's own account
    own = api.authorize(business_id=MAYA_BUSINESS)
    connect(rig.engine, rig.settings, rig.http, own, now=NOW, actor="staff:t", campaign=SLUG,
            creator=creators.handle)  # fmt: skip
    first = api.add_comment(campaigns.video_id, "on the campaign's", "fan1")
    second = api.add_comment(creators.video_id, "on the creator's", "fan2")

    report = poll_tiktok(rig.engine, rig.settings, now=lambda: NOW)
    hook(web, rig, api.comment_update(api.add_comment(creators.video_id, "live", "fan3")))
    process_pending(rig.engine, now=NOW, public_url=rig.settings.public_url)
    rig.deliver()

    assert (report.errors, report.new, report.snapshots) == ([], 2, 2)
    assert rig.comments()[:2] == [first, second]
    whose = {r.query["video_id"]: r.query["business_id"] for r in api.requests_to(LIST)}
    assert whose == {campaigns.video_id: api.business_id, creators.video_id: MAYA_BUSINESS}
    tokens = {t: g.business_id for t, g in api.grants.items()}
    answered = {
        r.json["comment_id"]: (r.json["business_id"], tokens[r.headers["access-token"]])
        for r in api.requests_to(REPLY)
    }
    assert len(answered) == 3
    assert answered[first] == (api.business_id, api.business_id)
    assert {answered[c] for c in answered if c != first} == {(MAYA_BUSINESS, MAYA_BUSINESS)}


def test_tokens_rally_cannot_open_leave_the_messages_waiting(rig: Rig) -> None:
    rig.api.add_comment(VIDEO, "hi", "fan")
    rig.poll_and_process()
    rig.settings = rig.settings.model_copy(
        update={"secret_key": SecretStr("another-secret-key-than-the-one-that-sealed")}
    )

    report = rig.deliver()["tiktok_reply"]

    assert (report.sent, report.dead) == (0, 0)
    assert report.stopped is not None and "RALLY_SECRET_KEY" in report.stopped
    assert [m.status for m in rig.rows(OutboxMessage)] == ["pending"]
    assert rig.api.requests_to(REPLY) == []


def test_comments_polled_before_the_upgrade_keep_counting_once_with_their_webhooks(
    empty_store_url: str,
) -> None:
    """A store upgraded to 0014: a comment the poll stored under its bare id takes the id its
    comment.update webhook gives it; nothing else is renamed."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from store.db import MIGRATIONS, engine_for, upgrade

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    before = ScriptDirectory.from_config(config).get_revision("0014").down_revision
    engine = engine_for(empty_store_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, str(before))
    rows = [  # (source, external id, type, payload)
        ("tiktok", "7301", "comment", {"comment_id": "7301"}),  # polled
        ("tiktok", "7302", "reply", {"comment_id": "7302", "parent_comment_id": "7301"}),
        ("tiktok", "ev-1", "comment", {"comment_id": "7303"}),  # from a file, its own id
        ("tiktok", "msg-1", "dm", {"conversation_id": "c"}),
        ("rally", "7304", "comment", {"comment_id": "7304"}),
    ]
    table = EngagementEvent.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"source": s, "external_id": e, "type": t, "payload": p, "deliveries": 1,
                 "occurred_at": NOW, "received_at": NOW}
                for s, e, t, p in rows
            ],
        )  # fmt: skip
    upgrade(engine)
    with engine.connect() as conn:
        ids = conn.execute(sa_select(table.c.external_id).order_by(table.c.id)).scalars().all()
    assert ids == ["7301:insert", "7302:insert", "ev-1", "msg-1", "7304"]
    engine.dispose()

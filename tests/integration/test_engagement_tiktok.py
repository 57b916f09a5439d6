"""Engagement over real HTTP against the local TikTok and SMS fakes: comments polled from a stored
cursor through throttling and failures, video metrics, and follow-ups delivered as comment
replies, DMs and texts, each exactly once. Retries never really sleep: tenacity's naps are
recorded and move the fake's manual clock instead."""

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
from sqlmodel import SQLModel, col, select
from tenacity.wait import wait_base

from config.settings import Settings
from integrations.tiktok import TikTokBusiness
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
)
from tasks.drain import DrainReport
from tasks.engagement.delivery import deliver_followups
from tasks.engagement.events import ingest
from tasks.engagement.poll import SOURCE, PollReport, poll_comments, poll_metrics
from tasks.engagement.processing import process_pending
from tasks.review.creatives import posted
from tests.conftest import SLUG
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.sms_api import FakeSms
from tests.fakes.tiktok_api import FakeTikTok

NOW = datetime(2027, 2, 10, 17, 0, tzinfo=UTC)  # noon in Philadelphia: no quiet hours
LATER = NOW + timedelta(minutes=10)  # past every default rule's delay (2 min reply, 5 min sms)
VIDEO, OTHER = "7311111111111111111", "7322222222222222222"
LIST = "/open_api/v1.3/business/comment/list/"
REPLY = "/open_api/v1.3/business/comment/reply/create/"
CTA = "Tap the link in my bio and register in two minutes."
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
    """The example campaign with two posted videos, the fake TikTok, and shortcuts."""

    engine: Engine
    settings: Settings
    api: FakeTikTok
    http: httpx.Client
    tiktok: TikTokBusiness
    videos: list[Video]

    def poll(self, tiktok: TikTokBusiness | None = None, wait: wait_base = NO_WAIT) -> PollReport:
        return poll_comments(self.engine, tiktok or self.tiktok, now=lambda: NOW, wait=wait)

    def poll_and_process(self) -> None:
        report = self.poll()
        assert (report.stopped, report.errors) == (None, [])
        process_pending(self.engine, now=NOW, public_url=self.settings.public_url)

    def deliver(self, at: datetime = LATER, sms: FakeSms | None = None) -> dict[str, DrainReport]:
        """Deliver with credentials for the fakes (SMS through `sms` when given)."""
        changes: dict[str, Any] = {
            "tiktok_access_token": SecretStr(self.api.access_token),
            "tiktok_business_id": self.api.business_id,
            "tiktok_api_url": self.api.api_url,
        }
        if sms is not None:
            changes |= {
                "sms_api_url": sms.url,
                "sms_account_sid": sms.account_sid,
                "sms_auth_token": SecretStr(sms.auth_token),
                "sms_from": next(iter(sms.senders)),
            }
        live = self.settings.model_copy(update=changes)
        return deliver_followups(self.engine, live, now=lambda: at, client=self.http)

    def rows(self, model: type[M], *where: Any) -> list[M]:
        with transaction(self.engine, write=False) as session:
            key = model.__table__.primary_key  # type: ignore[attr-defined]
            return list(session.exec(select(model).where(*where).order_by(*key)))

    def comments(self) -> list[str]:
        """The external ids of the stored events, in the order they were stored."""
        return [e.external_id for e in self.rows(EngagementEvent)]

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
    with httpx.Client(timeout=5) as http:
        tiktok = TikTokBusiness(
            http, access_token=api.access_token, business_id=api.business_id, base_url=api.api_url
        )
        yield Rig(engine, settings, api, http, tiktok, made)


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
    pages = [r.query["cursor"] for r in api.requests_to(LIST) if r.query["video_id"] == VIDEO]
    assert pages == ["0", "30", "60"]
    assert rig.cursor(VIDEO) == "65"
    e, video = rig.rows(EngagementEvent)[7], rig.videos[0]
    assert (e.type, e.actor, e.text, e.video_id) == ("comment", "fan7", "comment 7", VIDEO)
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
        counts = dict(video_views=views, likes=likes, comments=comments, shares=shares)
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

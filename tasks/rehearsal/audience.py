"""The audience of a rehearsal: each posted video's views, likes, comments and shares week by
week (as the platform would report them), and the people behind them that Rally meets one by
one: commenters, a few who DM, visitors of the tracking links, and signups.

The platform's counters stand for the whole audience; Rally meets a `sample` of the people
(one in ten by default) one by one, as events, follow-ups and leads, so a large rehearsal stays
quick. Clicks and signups in the counters are the whole audience's too.

Benchmark rates: a video reaches 5-40% of its creator's followers, most of it in its first two
weeks; engagement is 5-10% of views (comments 6% of it), link clicks 0.5-1.5% of views, and
2-5% of clicks sign up. Commenters sign up too, more of them when Rally follows up with them
than in the holdout, which is the lift the report should find.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from store.db import transaction
from store.models import Creative, CreativeStatus, MetricSnapshot, SprintRun
from tasks.campaigns.campaign import get_campaign
from tasks.engagement.events import ingest
from tasks.rehearsal.people import Person, roster, spec_of, stream
from tasks.rehearsal.simulate import COMMENTS, DMS, FAMILY, GIVEN

CUMULATIVE = (0.55, 0.80, 0.92, 0.97, 1.0)  # share of a video's views by its age in weeks
COMMENTER_SIGNUP = 0.06  # a commenter Rally follows up with
HOLDOUT_SIGNUP = 0.03  # a commenter in the holdout, who gets no follow-up


@dataclass(frozen=True)
class Video:
    """A video's lifetime numbers, drawn once from its own stream."""

    views: int
    engagement: float
    like_share: float
    ctr: float
    conversion: float
    full_watch_rate: float
    average_watch_seconds: float

    @classmethod
    def draw(cls, seed: int, video_id: str, followers: int) -> "Video":
        rng = stream(seed, "video", video_id)
        return cls(
            views=int(followers * rng.uniform(0.05, 0.40)),
            engagement=rng.uniform(0.05, 0.10),
            like_share=rng.uniform(0.80, 0.88),
            ctr=rng.uniform(0.005, 0.015),
            conversion=rng.uniform(0.02, 0.05),
            full_watch_rate=rng.uniform(0.15, 0.35),
            average_watch_seconds=rng.uniform(8, 20),
        )


def _share_by(age_weeks: int) -> float:
    return CUMULATIVE[min(age_weeks, len(CUMULATIVE)) - 1] if age_weeks > 0 else 0.0


@dataclass
class Posted:
    person: Person
    video_id: str
    creative_id: int
    posted_at: datetime


def audience_week(
    engine: Engine, slug: str, week: int, seed: int, *, start: datetime, end: datetime
) -> dict[str, int]:
    """This week's events from every posted video, stored like any other source's, and each
    video's counters at the end of the week."""
    with transaction(engine, write=False) as session:
        campaign = get_campaign(session, slug)
        spec = spec_of(campaign)
        people = {p.member_id: p for p in roster(session, campaign, spec)}
        rows = session.exec(
            select(Creative)
            .where(
                Creative.campaign_id == campaign.id,
                Creative.status == CreativeStatus.POSTED,
                col(Creative.posted_at) < end,
            )
            .order_by(col(Creative.id))
        ).all()
        videos = [
            Posted(people[c.member_id], c.platform_video_id or "", c.id or 0, c.posted_at)
            for c in rows
            if c.member_id in people and c.posted_at is not None
        ]
        campaign_id = campaign.id or 0
        run = session.exec(select(SprintRun).where(SprintRun.campaign_id == campaign_id)).one()
        sample = run.sample
    pool = max(1000, sum(p.followers for p in people.values()) // 200)
    snapshots: list[MetricSnapshot] = []
    events: list[dict[str, Any]] = []
    for posted in videos:
        counted, snapshot = _video_week(slug, week, seed, posted, (start, end), pool, sample)
        events.extend(counted)
        snapshot.campaign_id = campaign_id
        snapshots.append(snapshot)
    report = ingest(engine, (("rehearsal", e) for e in events), now=end)
    with transaction(engine) as session:
        session.add_all(snapshots)
    return {"videos": len(videos), "events": report.stored, "errors": len(report.errors)}


def _video_week(
    slug: str,
    week: int,
    seed: int,
    posted: Posted,
    bounds: tuple[datetime, datetime],
    pool: int,
    sample: float,
) -> tuple[list[dict[str, Any]], MetricSnapshot]:
    start, end = bounds
    video = Video.draw(seed, posted.video_id, posted.person.followers)
    age = (end - posted.posted_at).days // 7 + 1  # weeks it has been up by the end of this one
    views_before = int(video.views * _share_by(age - 1))
    views_now = int(video.views * _share_by(age))
    rng = stream(seed, "audience", posted.video_id, week)
    since = max(start, posted.posted_at)
    totals, before = _counters(video, views_now, posted), _counters(video, views_before, posted)
    new = {k: totals[k] - before[k] for k in ("comments", "clicks")}
    met = {k: _count(rng, n * sample) for k, n in new.items()}
    events = list(_people(rng, slug, posted, video, met, (since, end), pool, week))
    snapshot = MetricSnapshot(
        campaign_id=0,
        member_id=posted.person.member_id,
        creative_id=posted.creative_id,
        video_id=posted.video_id,
        captured_at=end,
        views=views_now,
        reach=int(views_now * 0.8),
        likes=totals["likes"],
        comments=totals["comments"],
        shares=totals["shares"],
        clicks=totals["clicks"],
        signups=totals["signups"],
        full_watch_rate=round(video.full_watch_rate, 4),
        average_watch_seconds=round(video.average_watch_seconds, 2),
        spend_cents=0,  # organic: what the creator earns is spend in the payments ledger
    )
    return events, snapshot


def _counters(video: Video, views: int, posted: Posted) -> dict[str, int]:
    """The whole audience's counters once a video has `views`."""
    engaged = views * video.engagement
    comments = int(engaged * 0.06)
    likes = int(engaged * video.like_share)
    clicks = int(views * video.ctr)
    odds = HOLDOUT_SIGNUP if posted.person.holdout else COMMENTER_SIGNUP
    return {
        "likes": likes,
        "comments": comments,
        "shares": int(engaged) - likes - comments,
        "clicks": clicks,
        "signups": int(clicks * video.conversion + comments * odds),
    }


def _count(rng: random.Random, expected: float) -> int:
    """A whole number whose average is `expected`."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _people(
    rng: random.Random,
    slug: str,
    posted: Posted,
    video: Video,
    met: dict[str, int],
    bounds: tuple[datetime, datetime],
    pool: int,
    week: int,
) -> Iterator[dict[str, Any]]:
    """The people Rally meets one by one: `met` commenters and link clicks."""
    since, end = bounds
    person, vid = posted.person, posted.video_id
    base = {"campaign": slug, "creator": person.handle, "video": vid}
    span = max((end - since).total_seconds(), 60.0)

    def moment() -> datetime:
        return since + timedelta(seconds=rng.uniform(0, span - 1))

    for i in range(met["comments"]):
        fan, at = f"fan{rng.randrange(10**7):07d}", moment()
        key = f"{vid}-w{week}-c{i}"
        yield {
            **base,
            "source": "tiktok",
            "external_id": key,
            "type": "comment",
            "actor": fan,
            "text": rng.choice(COMMENTS),
            "time": at.isoformat(),
        }
        if rng.random() < 0.03:
            yield {
                **base,
                "source": "tiktok",
                "external_id": f"{key}-dm",
                "type": "dm",
                "actor": fan,
                "text": rng.choice(DMS),
                "time": _before(end, at + timedelta(minutes=rng.uniform(1, 120))),
            }
        odds = HOLDOUT_SIGNUP if person.holdout else COMMENTER_SIGNUP
        if rng.random() < odds:
            when = _before(end, at + timedelta(hours=rng.uniform(1, 48)))
            yield _signup(rng, base, person, f"{key}-signup", fan, when)
    for i in range(met["clicks"]):
        visitor, at = f"v{rng.randrange(pool):07d}", moment()
        yield {
            **base,
            "source": "rally",
            "external_id": f"{vid}-w{week}-k{i}",
            "type": "link_click",
            "actor": visitor,
            "time": at.isoformat(),
        }
        if rng.random() < video.conversion:
            when = _before(end, at + timedelta(minutes=rng.uniform(1, 30)))
            yield _signup(rng, base, person, f"{vid}-w{week}-s{i}", visitor, when)


def _before(end: datetime, at: datetime) -> str:
    return min(at, end - timedelta(seconds=1)).isoformat()


def _signup(
    rng: random.Random, base: dict[str, Any], person: Person, key: str, actor: str, when: str
) -> dict[str, Any]:
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    return {
        **base,
        "source": "web",
        "external_id": key,
        "type": "signup",
        "actor": actor,
        "time": when,
        "contact": {
            "name": f"{given} {family}",
            "email": f"{given.lower()}.{family.lower()}.{actor}@example.org",
            "phone": f"+1215{rng.randrange(10**7):07d}" if rng.random() < 0.6 else None,
            "zip": f"19{rng.randrange(100, 200):03d}",
            "source_code": person.source_code,
            "consent": {"email": rng.random() < 0.85, "sms": rng.random() < 0.45},
        },
    }

"""A campaign's numbers read from the store, in the shapes `measurement` works on.

Platform counters (views, reach, likes, comments, shares, watch rates, spend) come from metric
snapshots, which are cumulative: a week's figure is the growth since the last snapshot before
it. Clicks and signups are Rally's own: tracking-link clicks and signup events. In a
rehearsal, where Rally meets only a sample of the simulated audience one by one, the simulated
platform's counters carry the whole audience's clicks and signups instead.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from store.models import (
    Boost,
    Campaign,
    Creative,
    Creator,
    EngagementEvent,
    LedgerEntry,
    MetricSnapshot,
    PaidMetrics,
    RosterMember,
    SprintRun,
)
from tasks.payments.ledger import FEES
from tasks.reporting.measurement import Signup, Totals, Touch


@dataclass(frozen=True)
class Member:
    handle: str
    segment: str
    holdout: bool


@dataclass
class CampaignNumbers:
    """Totals by week, creator, segment and video up to `weeks`, and the raw material of
    attribution and lift."""

    weeks: int
    members: dict[int, Member]
    by_week: dict[int, Totals] = field(default_factory=dict)
    by_creator_week: dict[str, list[Totals]] = field(default_factory=dict)
    by_segment: dict[str, Totals] = field(default_factory=dict)
    by_video: dict[str, Totals] = field(default_factory=dict)
    creator_of_video: dict[str, str] = field(default_factory=dict)
    signups: list[Signup] = field(default_factory=list)
    touches: list[Touch] = field(default_factory=list)
    # (conversions, size) of commenters on treated and held-out creators' videos
    treated: tuple[int, int] = (0, 0)
    held_out: tuple[int, int] = (0, 0)
    # where the spend came from: "ledger" (creator fees earned), "platform" (paid media in the
    # platforms' metrics), "boosts" (Spark Ads, from their pulled paid figures)
    spend_from: list[str] = field(default_factory=list)

    @property
    def total(self) -> Totals:
        return sum(self.by_week.values(), Totals())


def week_of(start: date, moment: datetime | date) -> int:
    """The sprint week a moment falls in; a snapshot taken at midnight closing a week counts
    for the week it closes."""
    if isinstance(moment, datetime):
        moment = (moment.astimezone(UTC) - timedelta(microseconds=1)).date()
    return (moment - start).days // 7 + 1


def read_numbers(session: Session, campaign: Campaign, *, weeks: int) -> CampaignNumbers:
    start = campaign.start_date
    members = _members(session, campaign.id or 0)
    numbers = CampaignNumbers(weeks, members)
    cells: dict[tuple[int, int, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    end = datetime.combine(start + timedelta(weeks=weeks), datetime.min.time(), UTC)
    _snapshot_growth(session, campaign.id or 0, start, weeks, end, cells, numbers)
    if any(cell["spend"] for cell in cells.values()):
        numbers.spend_from.append("platform")
    if _ledger_spend(session, campaign.id or 0, start, weeks, end, cells):
        numbers.spend_from.append("ledger")
    if _boost_spend(session, campaign.id or 0, start, weeks, end, cells):
        numbers.spend_from.append("boosts")
    run = session.exec(select(SprintRun).where(SprintRun.campaign_id == campaign.id)).first()
    if run is None or run.mode != "rehearsal":
        _own_counts(session, campaign.id or 0, start, weeks, end, cells)
    for (week, member_id, video), values in cells.items():
        counted: dict[str, Any] = {k: v if k in FLOATS else int(v) for k, v in values.items()}
        totals = Totals(**counted)
        member = members.get(member_id, Member("(unknown)", "(none)", False))
        numbers.by_week[week] = numbers.by_week.get(week, Totals()) + totals
        row = numbers.by_creator_week.setdefault(member.handle, [Totals()] * weeks)
        row[week - 1] = row[week - 1] + totals
        numbers.by_segment[member.segment] = (
            numbers.by_segment.get(member.segment, Totals()) + totals
        )
        if video:
            numbers.by_video[video] = numbers.by_video.get(video, Totals()) + totals
            numbers.creator_of_video[video] = member.handle
    for member in members.values():
        numbers.by_creator_week.setdefault(member.handle, [Totals()] * weeks)
    for week in range(1, weeks + 1):
        numbers.by_week.setdefault(week, Totals())
    _attribution(session, campaign.id or 0, end, numbers)
    _lift(session, campaign.id or 0, end, numbers)
    return numbers


FLOATS = {"full_watches", "spend"}


def _members(session: Session, campaign_id: int) -> dict[int, Member]:
    rows = session.execute(
        sa_select(
            col(RosterMember.id),
            col(Creator.handle),
            col(RosterMember.segment),
            col(RosterMember.holdout),
        )
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(col(RosterMember.campaign_id) == campaign_id)
    )
    return {i: Member(h, s or "(none)", bool(o)) for i, h, s, o in rows}


def _snapshot_growth(
    session: Session,
    campaign_id: int,
    start: date,
    weeks: int,
    end: datetime,
    cells: dict[tuple[int, int, str], dict[str, float]],
    numbers: CampaignNumbers,
) -> None:
    """Each video's last snapshot of each week, less the one before it."""
    s = MetricSnapshot
    rows = session.execute(
        sa_select(
            col(s.member_id),
            col(s.video_id),
            col(s.captured_at),
            col(s.views),
            col(s.reach),
            col(s.likes),
            col(s.comments),
            col(s.shares),
            col(s.full_watch_rate),
            col(s.spend_cents),
            col(s.clicks),
            col(s.signups),
        )
        .where(col(s.campaign_id) == campaign_id, col(s.captured_at) <= end)
        .order_by(col(s.video_id), col(s.captured_at))
    ).all()
    last: dict[tuple[str, int], tuple[Any, ...]] = {}
    for found in rows:
        week = week_of(start, found[2])
        if 1 <= week <= weeks:
            last[(found[1], week)] = tuple(found)
    previous: dict[str, tuple[Any, ...]] = {}
    for (video, week), row in sorted(last.items()):
        member_id, _, _, views, reach, likes, comments, shares, watch_rate, spend, *own = row
        before = previous.get(video)
        b = before or (None, None, None, 0, 0, 0, 0, 0, None, 0, 0, 0)
        cell = cells[(week, member_id or 0, video)]
        grown = views - b[3]
        cell["views"] += grown
        cell["reach"] += reach - b[4]
        cell["likes"] += likes - b[5]
        cell["comments"] += comments - b[6]
        cell["shares"] += shares - b[7]
        cell["full_watches"] += grown * (watch_rate or 0.0)
        cell["spend"] += (spend - b[9]) / 100
        cell["clicks"] += own[0] - b[10]
        cell["signups"] += own[1] - b[11]
        previous[video] = row


def _ledger_spend(
    session: Session,
    campaign_id: int,
    start: date,
    weeks: int,
    end: datetime,
    cells: dict[tuple[int, int, str], dict[str, float]],
) -> bool:
    """What each creator earned by week, from the payments ledger (its `fees` account, net of
    reversals): the campaign's real spend on creators, not their planned rates. Whether
    there was any."""
    e = LedgerEntry
    day = func.date(e.created_at)
    rows = session.execute(
        sa_select(day, col(e.member_id), func.sum(col(e.amount_cents)))
        .where(col(e.campaign_id) == campaign_id, col(e.account) == FEES, col(e.created_at) < end)
        .group_by(day, col(e.member_id))
    ).all()
    return _spend_by_day(rows, start, weeks, cells)


def _spend_by_day(
    rows: Sequence[Any],
    start: date,
    weeks: int,
    cells: dict[tuple[int, int, str], dict[str, float]],
) -> bool:
    """Spend as (day, member, cents) rows counted to each day's week (spend before or after
    the sprint to its first or last week); whether there was any."""
    for when, member_id, cents in rows:
        when = date.fromisoformat(when) if isinstance(when, str) else when
        week = min(max(week_of(start, when), 1), weeks)
        cells[(week, member_id, "")]["spend"] += cents / 100
    return bool(rows)


def _boost_spend(
    session: Session,
    campaign_id: int,
    start: date,
    weeks: int,
    end: datetime,
    cells: dict[tuple[int, int, str], dict[str, float]],
) -> bool:
    """What Spark Ads boosts spent by day, from their pulled paid figures, counted to the
    boosted creator's week: paid reach is spend on that creator's work. Whether there was any."""
    rows = session.execute(
        sa_select(col(PaidMetrics.day), col(Creative.member_id), col(PaidMetrics.spend_cents))
        .join(Boost, col(Boost.id) == col(PaidMetrics.boost_id))
        .join(Creative, col(Creative.id) == col(Boost.creative_id))
        .where(col(Boost.campaign_id) == campaign_id, col(PaidMetrics.day) < end.date())
    ).all()
    return _spend_by_day(rows, start, weeks, cells)


def _own_counts(
    session: Session,
    campaign_id: int,
    start: date,
    weeks: int,
    end: datetime,
    cells: dict[tuple[int, int, str], dict[str, float]],
) -> None:
    """Tracking-link clicks and signups by day, member and video."""
    e = EngagementEvent
    day = func.date(e.occurred_at)
    rows = session.execute(
        sa_select(day, col(e.member_id), col(e.video_id), col(e.type), func.count())
        .where(
            col(e.campaign_id) == campaign_id,
            col(e.type).in_(("link_click", "signup")),
            col(e.occurred_at) < end,
        )
        .group_by(day, col(e.member_id), col(e.video_id), col(e.type))
    ).all()
    for when, member_id, video, kind, count in rows:
        when = date.fromisoformat(when) if isinstance(when, str) else when
        week = week_of(start, when)
        if 1 <= week <= weeks:
            name = "clicks" if kind == "link_click" else "signups"
            cells[(week, member_id or 0, video or "")][name] += count


def _attribution(
    session: Session, campaign_id: int, end: datetime, numbers: CampaignNumbers
) -> None:
    """Signups with the form's source code, and the tracking-link clicks of the same people."""
    e = EngagementEvent
    handles = {i: m.handle for i, m in numbers.members.items()}
    signed = (
        sa_select(col(e.actor), col(e.occurred_at), col(e.member_id), col(e.video_id))
        .where(col(e.campaign_id) == campaign_id, col(e.type) == "signup", col(e.occurred_at) < end)
        .order_by(col(e.id))
    )
    for actor, at, member_id, video in session.execute(signed):
        person = actor or f"signup:{at.isoformat()}"
        numbers.signups.append(Signup(person, at, handles.get(member_id), video))
    people = (
        sa_select(col(e.actor))
        .where(col(e.campaign_id) == campaign_id, col(e.type) == "signup")
        .scalar_subquery()
    )
    clicks = (
        sa_select(col(e.actor), col(e.occurred_at), col(e.member_id), col(e.video_id))
        .where(
            col(e.campaign_id) == campaign_id,
            col(e.type) == "link_click",
            col(e.occurred_at) < end,
            col(e.actor).in_(people),
        )
        .order_by(col(e.id))
    )
    for actor, at, member_id, video in session.execute(clicks):
        if member_id in handles:
            numbers.touches.append(Touch(actor, at, handles[member_id], video))


def _lift(session: Session, campaign_id: int, end: datetime, numbers: CampaignNumbers) -> None:
    """Commenters on held-out creators' videos get no follow-ups: how many of each group went
    on to sign up."""
    e = EngagementEvent
    where = (col(e.campaign_id) == campaign_id, col(e.occurred_at) < end)
    signed = set(
        session.execute(
            sa_select(col(e.actor)).where(*where, col(e.type) == "signup").distinct()
        ).scalars()
    )
    groups: dict[bool, set[str]] = {True: set(), False: set()}
    commenters = sa_select(col(e.member_id), col(e.actor)).where(
        *where, col(e.type) == "comment", col(e.actor).is_not(None)
    )
    for member_id, actor in session.execute(commenters.distinct()):
        member = numbers.members.get(member_id)
        if member is not None:
            groups[member.holdout].add(actor)
    numbers.treated = (len(groups[False] & signed), len(groups[False]))
    numbers.held_out = (len(groups[True] & signed), len(groups[True]))

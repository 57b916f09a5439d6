"""Polling TikTok for what webhooks miss or leave out: comments on the campaigns' posted
videos and the replies to them (from a persisted cursor, so a restart resumes where the last
poll stopped), and video metrics. Each video is read with the account it is on (its creator's,
its campaign's, or the one for every campaign: `Accounts.for_video`).

Each page of comments is stored with its cursor in one transaction: a crash repeats at most a
page, whose comments are then counted as redeliveries. A comment is stored under the id its
`comment.update` webhook gives it (`<comment_id>:insert`), so the two count once; the webhook
carries no text, so a comment it brought first gets its text here, and the rules look at it
again. The account's own comments (Rally's replies) are not events. Throttling (429, or HTTP
200 with a throttling code) and passing failures are retried with backoff, honouring
Retry-After when TikTok gives one; a video that keeps failing is left for the next poll, and a
refused token stops the pass.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, bindparam, func, update
from sqlmodel import Session, col, select
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from config.settings import Settings
from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.http import http_client
from integrations.tiktok import Comment, CommentPage, TikTokBusiness, VideoMetrics
from store.audit import Change, record
from store.db import transaction
from store.models import (
    Campaign,
    Creative,
    CreativeStatus,
    Creator,
    EngagementEvent,
    MetricSnapshot,
    PollCursor,
    RosterMember,
)
from tasks.campaigns.campaign import campaign_spec, staff
from tasks.engagement.accounts import Accounts
from tasks.engagement.events import new_event, store_events
from tasks.outbox import enqueue, wait_for_remote, worth_retrying_now

SOURCE = "tiktok_comments"
MAX_PAGES = 50  # per video and poll: one busy video cannot starve the others
MAX_REPLY_PAGES = 10  # per comment and poll
# The client of the account a posted video (campaign id, member id) is on; None: no account.
Clients = Callable[[int, int], TikTokBusiness | None]


@dataclass
class PollReport:
    videos: int = 0
    pages: int = 0
    comments: int = 0
    new: int = 0
    snapshots: int = 0
    taken_down: list[str] = field(default_factory=list)  # posted videos gone from TikTok
    errors: list[str] = field(default_factory=list)
    stopped: str | None = None


def _retrying(wait: wait_base | None) -> Retrying:
    return Retrying(
        retry=retry_if_exception(worth_retrying_now),
        stop=stop_after_attempt(5),
        wait=wait_for_remote(wait or wait_exponential_jitter(initial=1, max=30)),
        reraise=True,
    )


def posted_videos(engine: Engine) -> list[tuple[str, int, int, int | None]]:
    """(video id, campaign id, member id, creative id) of every posted creative, oldest
    creative first: every poll goes through them in the same order."""
    with transaction(engine, write=False) as session:
        rows = session.exec(
            select(
                Creative.platform_video_id, Creative.campaign_id, Creative.member_id, Creative.id
            )
            .where(col(Creative.platform_video_id).is_not(None))
            .order_by(col(Creative.id))
        ).all()
    return [(str(v), c, m, i) for v, c, m, i in rows if v]


def clients_of(tiktok: TikTokBusiness | Clients) -> Clients:
    """One account for every video, or the given choice per video."""
    if isinstance(tiktok, TikTokBusiness):
        return lambda campaign_id, member_id: tiktok
    return tiktok


def poll_comments(
    engine: Engine,
    tiktok: TikTokBusiness | Clients,
    *,
    now: Callable[[], datetime],
    wait: wait_base | None = None,
) -> PollReport:
    report = PollReport()
    retrying = _retrying(wait)
    clients = clients_of(tiktok)
    for video_id, campaign_id, member_id, _ in posted_videos(engine):
        report.videos += 1
        try:
            client = clients(campaign_id, member_id)
            if client is None:
                report.errors.append(f"video {video_id}: no connected TikTok account is its")
                continue
            _poll_video(engine, client, retrying, video_id, campaign_id, member_id, now, report)
        except UnavailableError as exc:
            report.errors.append(str(exc))
            report.stopped = str(exc)
            break
        except TransientError as exc:
            report.errors.append(f"video {video_id}: {exc} (left for the next poll)")
        except PermanentError as exc:  # this video only (deleted, say): the others go on
            report.errors.append(f"video {video_id}: {exc}")
    return report


def _poll_video(
    engine: Engine,
    tiktok: TikTokBusiness,
    retrying: Retrying,
    video_id: str,
    campaign_id: int,
    member_id: int,
    now: Callable[[], datetime],
    report: PollReport,
) -> None:
    with transaction(engine, write=False) as session:
        kept = session.get(PollCursor, (SOURCE, video_id))
    cursor = int(kept.cursor) if kept else 0
    for _ in range(MAX_PAGES):
        page: CommentPage = retrying(tiktok.comments, video_id, cursor=cursor)
        found = list(page.comments)
        for comment in page.comments:
            if comment.replies:
                found += _replies(tiktok, retrying, video_id, comment.comment_id)
        at = now()
        rows = [
            _comment_row(c, campaign_id, member_id, tiktok.business_id, at)
            for c in found
            if not (c.owner or c.author == tiktok.business_id)  # the account's own
        ]
        with transaction(engine) as session:
            new, _ = store_events(session, rows)
            _fill_text(session, rows)
            session.merge(
                PollCursor(source=SOURCE, key=video_id, cursor=str(page.cursor), updated_at=at)
            )
        report.pages += 1
        report.comments += len(rows)
        report.new += new
        if not page.has_more or page.cursor == cursor:
            return
        cursor = page.cursor


def _replies(
    tiktok: TikTokBusiness, retrying: Retrying, video_id: str, comment_id: str
) -> list[Comment]:
    """Every reply to one comment (the comment list has none of them)."""
    found: list[Comment] = []
    cursor = 0
    for _ in range(MAX_REPLY_PAGES):
        page: CommentPage = retrying(tiktok.replies, video_id, comment_id, cursor=cursor)
        found += page.comments
        if not page.has_more or page.cursor == cursor:
            break
        cursor = page.cursor
    return found


def _comment_row(
    comment: Comment, campaign_id: int, member_id: int, business_id: str, at: datetime
) -> dict[str, Any]:
    return new_event(
        source="tiktok",
        external_id=f"{comment.comment_id}:insert",
        type="reply" if comment.parent_comment_id else "comment",
        occurred_at=comment.created_at,
        received_at=at,
        campaign_id=campaign_id,
        member_id=member_id,
        actor=comment.author or comment.username or None,
        video_id=comment.video_id,
        text=comment.text,
        payload=comment.raw
        | {"comment_id": comment.comment_id, "business_id": business_id}
        | {"handle": comment.username or None},
    )


def _fill_text(session: Session, rows: list[dict[str, Any]]) -> None:
    """A comment its webhook brought first has no text: it gets the poll's (and the poll's
    record of it), and waits for the rules again, which now can read it."""
    texts = [r for r in rows if r["text"]]
    if not texts:
        return
    table = EngagementEvent.__table__  # type: ignore[attr-defined]
    session.execute(
        update(table)
        .where(
            table.c.source == "tiktok",
            table.c.external_id == bindparam("b_id"),
            table.c.text.is_(None),
        )
        .values(text=bindparam("b_text"), payload=bindparam("b_payload"), processed_at=None),
        [{"b_id": r["external_id"], "b_text": r["text"], "b_payload": r["payload"]} for r in texts],
    )


def poll_metrics(
    engine: Engine,
    tiktok: TikTokBusiness | Clients,
    *,
    now: datetime,
    wait: wait_base | None = None,
) -> PollReport:
    """A snapshot of every posted video's counters (for KPIs and scorecards), asked of the
    account each video is on. A video its account no longer returns is taken down; videos of
    an account that could not be asked are left as they were."""
    report = PollReport()
    videos = {v: (c, m, i) for v, c, m, i in posted_videos(engine)}
    if not videos:
        return report
    clients = clients_of(tiktok)
    by_account: dict[str, tuple[TikTokBusiness, list[str]]] = {}
    for video, (campaign_id, member_id, _) in videos.items():
        try:
            client = clients(campaign_id, member_id)
        except UnavailableError as exc:  # its token cannot be refreshed: nothing is measured
            report.errors.append(str(exc))
            report.stopped = str(exc)
            return report
        if client is None:
            report.errors.append(f"video {video}: no connected TikTok account is its")
            continue
        by_account.setdefault(client.business_id, (client, []))[1].append(video)
    metrics: list[VideoMetrics] = []
    asked: dict[str, tuple[int, int, int | None]] = {}
    for client, ids in by_account.values():
        try:
            metrics += _retrying(wait)(client.videos, ids)
        except TransientError as exc:
            report.errors.append(str(exc))
            report.stopped = str(exc)
            continue
        asked |= {v: videos[v] for v in ids}
    with transaction(engine) as session:
        for m in metrics:
            campaign_id, member_id, creative_id = videos[m.video_id]
            session.add(
                MetricSnapshot(
                    campaign_id=campaign_id,
                    member_id=member_id,
                    creative_id=creative_id,
                    video_id=m.video_id,
                    captured_at=now,
                    views=m.views,
                    reach=m.reach,
                    likes=m.likes,
                    comments=m.comments,
                    shares=m.shares,
                    full_watch_rate=m.full_watch_rate,
                    average_watch_seconds=m.average_watch_seconds,
                )
            )
            report.snapshots += 1
        returned = {m.video_id for m in metrics}
        report.taken_down = takedowns(session, asked, returned, now=now)
    report.videos = len(videos)
    return report


def takedowns(
    session: Session,
    videos: dict[str, tuple[int, int, int | None]],
    returned: set[str],
    *,
    now: datetime,
) -> list[str]:
    """Posted videos TikTok no longer returns are marked taken down, audited, and the campaign's
    staff emailed, once per takedown; one that is back is marked posted again. The videos newly
    taken down."""
    ids = [creative for _, _, creative in videos.values() if creative is not None]
    rows = session.exec(
        select(Creative, Creator, Campaign)
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .join(Campaign, col(Campaign.id) == col(Creative.campaign_id))
        .where(
            col(Creative.id).in_(ids),
            col(Creative.status).in_([CreativeStatus.POSTED, CreativeStatus.TAKEN_DOWN]),
        )
    ).all()
    gone = []
    for creative, creator, campaign in rows:
        video = creative.platform_video_id or ""
        here = video in returned
        if here == (creative.status == CreativeStatus.POSTED):
            continue
        creative.status = CreativeStatus.POSTED if here else CreativeStatus.TAKEN_DOWN
        creative.updated_at = now
        session.add(creative)
        what = "is back on TikTok" if here else "is no longer on TikTok"
        summary = f"video {video} of @{creator.handle} on {campaign.slug} {what}"
        action = "creative.restored" if here else "creative.taken_down"
        record(session, [Change("rally", action, "creative", creative.id or 0, summary)])
        if here:
            continue
        gone.append(video)
        text = (
            f'The video "{creative.title}" by @{creator.handle} for {campaign.name} is no longer '
            f"on TikTok (first missed at {now:%Y-%m-%d %H:%M} UTC): taken down by TikTok, or "
            f"deleted or made private by the creator.\n\nIt was at {creative.posted_url or video}. "
            "Ask the creator what happened; if it goes up again, record the new link with "
            f"'rally creatives posted {creative.id} URL'.\n"
        )
        enqueue(
            session,
            [
                {
                    "channel": "email",
                    "destination": "staff",
                    "idempotency_key": f"takedown:{creative.id}:{now:%Y%m%dT%H%M%S}:{person}",
                    "subject_type": "takedown",
                    "subject_id": str(creative.id),
                    "payload": {
                        "to": person,
                        "subject": f"{campaign.name}: @{creator.handle}'s video is gone",
                        "text": text,
                    },
                }
                for person in staff(campaign_spec(campaign))
            ],
        )
    return gone


METRICS_EVERY = timedelta(hours=1)


def poll_tiktok(engine: Engine, settings: Settings, *, now: Callable[[], datetime]) -> PollReport:
    """Comments each time, metrics at most hourly, with each connected account; nothing when
    none is connected."""
    with http_client(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
        accounts = Accounts(engine, settings, http, now=now)
        if not accounts:
            return PollReport()

        def clients(campaign_id: int, member_id: int) -> TikTokBusiness | None:
            business_id = accounts.for_video(campaign_id, member_id)
            return accounts.client(business_id) if business_id else None

        report = poll_comments(engine, clients, now=now)
        with transaction(engine, write=False) as session:
            last = session.exec(select(func.max(MetricSnapshot.captured_at))).one()
        if report.stopped is None and (last is None or now() - last >= METRICS_EVERY):
            metrics = poll_metrics(engine, clients, now=now())
            report.snapshots, report.errors = metrics.snapshots, report.errors + metrics.errors
    return report

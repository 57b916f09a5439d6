"""Polling TikTok for what has no webhook: comments on the campaign's posted videos (from a
persisted cursor, so a restart resumes where the last poll stopped) and video metrics.

Each page of comments is stored with its cursor in one transaction: a crash repeats at most a
page, whose comments are then counted as redeliveries. Throttling (429, or HTTP 200 with code
40100) and passing failures are retried with backoff, honouring Retry-After when TikTok gives
one; a video that keeps failing is left for the next poll, and a refused token stops the pass.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from config.settings import Settings
from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.tiktok import Comment, CommentPage, TikTokBusiness
from store.audit import Change, record
from store.db import transaction
from store.models import (
    Campaign,
    Creative,
    CreativeStatus,
    Creator,
    MetricSnapshot,
    PollCursor,
    RosterMember,
)
from tasks.campaigns.campaign import campaign_spec, staff
from tasks.engagement.events import new_event, store_events
from tasks.outbox import enqueue, wait_for_remote, worth_retrying_now

SOURCE = "tiktok_comments"
MAX_PAGES = 50  # per video and poll: one busy video cannot starve the others


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
    """(video id, campaign id, member id, creative id) of every posted creative."""
    with transaction(engine, write=False) as session:
        rows = session.exec(
            select(
                Creative.platform_video_id, Creative.campaign_id, Creative.member_id, Creative.id
            ).where(col(Creative.platform_video_id).is_not(None))
        ).all()
    return [(str(v), c, m, i) for v, c, m, i in rows if v]


def poll_comments(
    engine: Engine,
    tiktok: TikTokBusiness,
    *,
    now: Callable[[], datetime],
    wait: wait_base | None = None,
) -> PollReport:
    report = PollReport()
    retrying = _retrying(wait)
    for video_id, campaign_id, member_id, _ in posted_videos(engine):
        report.videos += 1
        try:
            _poll_video(engine, tiktok, retrying, video_id, campaign_id, member_id, now, report)
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
        at = now()
        rows = [_comment_row(c, campaign_id, member_id, at) for c in page.comments]
        with transaction(engine) as session:
            new, _ = store_events(session, rows)
            session.merge(
                PollCursor(source=SOURCE, key=video_id, cursor=str(page.cursor), updated_at=at)
            )
        report.pages += 1
        report.comments += len(rows)
        report.new += new
        if not page.has_more or page.cursor == cursor:
            return
        cursor = page.cursor


def _comment_row(
    comment: Comment, campaign_id: int, member_id: int, at: datetime
) -> dict[str, Any]:
    return new_event(
        source="tiktok",
        external_id=comment.comment_id,
        type="reply" if comment.parent_comment_id else "comment",
        occurred_at=comment.created_at,
        received_at=at,
        campaign_id=campaign_id,
        member_id=member_id,
        actor=comment.username or None,
        video_id=comment.video_id,
        text=comment.text,
        payload=comment.raw,
    )


def poll_metrics(
    engine: Engine, tiktok: TikTokBusiness, *, now: datetime, wait: wait_base | None = None
) -> PollReport:
    """A snapshot of every posted video's counters (for KPIs and scorecards)."""
    report = PollReport()
    videos = {v: (c, m, i) for v, c, m, i in posted_videos(engine)}
    if not videos:
        return report
    try:
        metrics = _retrying(wait)(tiktok.videos, list(videos))
    except TransientError as exc:
        report.errors.append(str(exc))
        report.stopped = str(exc)
        return report
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
        report.taken_down = takedowns(session, videos, returned, now=now)
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
    """Comments each time, metrics at most hourly; nothing when no TikTok token is set."""
    token = settings.tiktok_access_token.get_secret_value()
    if not token:
        return PollReport()
    with httpx.Client(timeout=httpx.Timeout(15.0, connect=5.0)) as client:
        tiktok = TikTokBusiness(
            client,
            access_token=token,
            business_id=settings.tiktok_business_id,
            base_url=settings.tiktok_api_url,
        )
        report = poll_comments(engine, tiktok, now=now)
        with transaction(engine, write=False) as session:
            last = session.exec(select(func.max(MetricSnapshot.captured_at))).one()
        if report.stopped is None and (last is None or now() - last >= METRICS_EVERY):
            metrics = poll_metrics(engine, tiktok, now=now())
            report.snapshots, report.errors = metrics.snapshots, report.errors + metrics.errors
    return report

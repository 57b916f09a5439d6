"""Approvers' comments on the version under review, each optionally at a moment of its video
("0:12"), kept in the store, recorded in the audit log like decisions, and shown to the task's
other approvers beside that version in the video's order."""

import re
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.errors import RallyError
from store.audit import Change, record
from store.models import ReviewComment, ReviewStatus, ReviewTask
from tasks.review.creatives import MAX_SECONDS
from tasks.review.routing import local_time, task_context

MAX_COMMENT_CHARS = 2000
TIME = re.compile(r"(\d{1,2}):([0-5]\d)")


class CommentRefused(RallyError):
    """A comment Rally will not keep; `field` names the form field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def clock_time(seconds: float) -> str:
    """Seconds into a video as people write them: 75 -> "1:15"."""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def parse_time(text: str, *, duration: float | None) -> int | None:
    """A moment of the video from "m:ss" or "mm:ss" (None when left empty), within its
    length when that is known (else within the longest video a draft may have)."""
    text = text.strip()
    if not text:
        return None
    match = TIME.fullmatch(text)
    if match is None:
        raise CommentRefused(
            "time", f'Time: "{text[:12]}" is not a time like 0:45 (minutes:seconds)'
        )
    seconds = int(match[1]) * 60 + int(match[2])
    end = duration if duration is not None else MAX_SECONDS
    if seconds > end:
        raise CommentRefused(
            "time", f"Time: {text} is past the end of the video ({clock_time(end)})"
        )
    return seconds


def add_comment(
    session: Session, *, task_id: int, author: str, body: str, at: str, now: datetime
) -> ReviewComment:
    """Keep an approver's comment on the version task `task_id` reviews, and audit it. The
    caller has checked that `author` is one of the task's approvers."""
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise CommentRefused("comment", f"no review task {task_id}")
    draft, creative, _spec = task_context(session, task)
    if task.status == ReviewStatus.CANCELLED or draft.version != creative.current_version:
        raise CommentRefused(
            "comment",
            f"Version {draft.version} was replaced by version {creative.current_version}: "
            "comment on that one",
        )
    text = body.strip()
    if not text:
        raise CommentRefused("comment", "Comment: write what you noticed")
    if len(text) > MAX_COMMENT_CHARS:
        raise CommentRefused(
            "comment",
            f"Comment: {len(text)} characters is too long (at most {MAX_COMMENT_CHARS})",
        )
    seconds = parse_time(at, duration=draft.duration_seconds)
    comment = ReviewComment(
        task_id=task_id,
        draft_id=draft.id or 0,
        author=author.strip().lower(),
        at_seconds=seconds,
        body=text,
        created_at=now,
    )
    session.add(comment)
    session.flush()
    where = f" at {clock_time(seconds)}" if seconds is not None else ""
    summary = (
        f"{task.tier} review of creative {creative.id} v{draft.version}: "
        f"comment{where} by {comment.author}"
    )
    details = {"comment": comment.id, "version": draft.version, "at_seconds": seconds, "text": text}
    record(
        session,
        [Change(comment.author, "review.comment", "review_task", task_id, summary, details)],
    )
    return comment


def comments_on(session: Session, draft_id: int, spec: CampaignSpec) -> list[dict[str, Any]]:
    """A version's comments from every tier, in the video's order (those at no particular
    moment after), each with when it was written in the campaign's time zone."""
    rows = session.exec(
        select(ReviewComment, ReviewTask.tier)
        .join(ReviewTask, col(ReviewTask.id) == col(ReviewComment.task_id))
        .where(ReviewComment.draft_id == draft_id)
    ).all()
    ordered = sorted(
        rows,
        key=lambda r: (r[0].at_seconds is None, r[0].at_seconds or 0, r[0].created_at, r[0].id),
    )
    return [
        {
            "author": c.author,
            "tier": tier,
            "at_seconds": c.at_seconds,
            "at": clock_time(c.at_seconds) if c.at_seconds is not None else None,
            "body": c.body,
            "written": local_time(c.created_at, spec),
        }
        for c, tier in ordered
    ]

"""What the public sends in one request at a time, as event rows for the event writer: a click
on a creator's `/t/<code>` link and a TikTok webhook notification."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from integrations.tiktok import WebhookNotification
from store.models import Campaign, Creative, Creator, RosterMember
from tasks.campaigns.campaign import campaign_spec, running_live_sprints
from tasks.campaigns.tracking import tracking_url
from tasks.engagement.events import new_event

UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


@dataclass(frozen=True)
class LinkTarget:
    """Where a tracking code leads: its campaign, the creator's place on it, and the landing
    page with the creator's UTM tags."""

    campaign_id: int
    member_id: int
    landing_url: str


def link_target(session: Session, code: str) -> LinkTarget | None:
    """The target of a creator's tracking code; None for a code no roster gave out."""
    row = session.exec(
        select(Campaign, RosterMember.id, Creator.platform, Creator.handle)
        .join(RosterMember, col(RosterMember.campaign_id) == col(Campaign.id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(RosterMember.tracking_code == code)
    ).first()
    if row is None:
        return None
    campaign, member_id, platform, handle = row
    landing = tracking_url(campaign_spec(campaign), platform, handle)
    return LinkTarget(campaign.id or 0, member_id or 0, landing)


def click_event(
    target: LinkTarget, code: str, query: Mapping[str, str], *, now: datetime
) -> dict[str, Any]:
    """The `link_click` row of one click, with the UTM tags the visitor's link carried."""
    return new_event(
        source="rally",
        external_id=uuid.uuid4().hex,
        type="link_click",
        occurred_at=now,
        received_at=now,
        campaign_id=target.campaign_id,
        member_id=target.member_id,
        payload={"code": code, **{k: v for k, v in query.items() if k in UTM}},
    )


def attribute(session: Session, rows: list[dict[str, Any]]) -> None:
    """Give TikTok's notifications their campaign, which TikTok does not name: a comment's is
    the posted creative's whose video it is on (and its creator's place on the roster); a
    message names no video, so it goes to the one live sprint when only one is running, and
    stays unattributed (stored, but no rule fires) when there are several or none. One query
    per group of rows, and none when every row knows its campaign."""
    loose = [r for r in rows if r.get("source") == "tiktok" and r.get("campaign_id") is None]
    if not loose:
        return
    videos = {str(r["video_id"]) for r in loose if r.get("video_id")}
    posted: dict[str, tuple[int, int]] = {}
    if videos:
        posted = {
            str(video): (campaign_id, member_id)
            for video, campaign_id, member_id in session.exec(
                select(Creative.platform_video_id, Creative.campaign_id, Creative.member_id).where(
                    col(Creative.platform_video_id).in_(videos)
                )
            )
        }
    live: list[int] = []
    if any(not r.get("video_id") for r in loose):
        live = [campaign_id for campaign_id, _ in running_live_sprints(session)]
    for row in loose:
        found = posted.get(str(row.get("video_id") or ""))
        if found is not None:
            row["campaign_id"], row["member_id"] = found
        elif not row.get("video_id") and len(live) == 1:
            row["campaign_id"] = live[0]


def webhook_event(notification: WebhookNotification, *, received_at: datetime) -> dict[str, Any]:
    """The row of a TikTok notification (read by `integrations.tiktok.parse_webhook`)."""
    return new_event(
        source="tiktok",
        external_id=notification.external_id,
        type=notification.type,
        occurred_at=notification.occurred_at,
        received_at=received_at,
        actor=notification.actor,
        video_id=notification.video_id,
        text=notification.text,
        payload=notification.payload,
    )

"""What the public sends in one request at a time, as event rows for the event writer: a click
on a creator's `/t/<code>` link and a TikTok webhook notification."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from integrations.tiktok import WebhookNotification
from store.models import Campaign, Creator, RosterMember
from tasks.campaigns.campaign import campaign_spec
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

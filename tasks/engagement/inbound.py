"""What the public sends in one request at a time, as event rows for the event writer: a click
on a creator's `/t/<code>` link and a TikTok webhook notification (and the campaign each
notification is about, found by the writer for a whole group at once: `attribute`)."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from integrations.tiktok import WebhookNotification
from store.bulk import with_defaults
from store.models import (
    Campaign,
    Creative,
    Creator,
    RosterMember,
    TikTokAccount,
    TikTokConversation,
)
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
    """Give TikTok's notifications their campaign, which TikTok does not name. A comment's is
    the posted creative's whose video it is on (and its creator's place on the roster). A
    message names no video: it goes to its conversation's campaign if an earlier message of it
    had one, else to the campaign (and creator) whose TikTok account received it, else to the
    one live sprint when only one is running; otherwise it stays unattributed (stored, but no
    rule fires). A conversation keeps the campaign its first attributed message found. A few
    queries per group of rows, and none when every row knows its campaign."""
    loose = [r for r in rows if r.get("source") == "tiktok" and r.get("campaign_id") is None]
    if not loose:
        return
    videos = {str(r["video_id"]) for r in loose if r.get("video_id")}
    posted: dict[str, tuple[int, int | None]] = {}
    if videos:
        posted = {
            str(video): (campaign_id, member_id)
            for video, campaign_id, member_id in session.exec(
                select(Creative.platform_video_id, Creative.campaign_id, Creative.member_id).where(
                    col(Creative.platform_video_id).in_(videos)
                )
            )
        }
    for row in loose:
        found = posted.get(str(row.get("video_id") or ""))
        if found is not None:
            row["campaign_id"], row["member_id"] = found
    messages = [r for r in loose if not r.get("video_id")]
    if messages:
        _attribute_messages(session, messages)


def _attribute_messages(session: Session, rows: list[dict[str, Any]]) -> None:
    def payload(row: dict[str, Any], name: str) -> str | None:
        value = (row.get("payload") or {}).get(name)
        return str(value) if value else None

    conversations = {c for r in rows if (c := payload(r, "conversation_id"))}
    known: dict[str, tuple[int, int | None]] = {}
    if conversations:
        known = {
            c: (campaign_id, member_id)
            for c, campaign_id, member_id in session.exec(
                select(
                    TikTokConversation.conversation_id,
                    TikTokConversation.campaign_id,
                    TikTokConversation.member_id,
                ).where(col(TikTokConversation.conversation_id).in_(conversations))
            )
        }
    accounts = {b for r in rows if (b := payload(r, "business_id"))}
    owners: dict[str, tuple[int, int | None]] = {}
    if accounts:
        owners = {
            business: (campaign_id, member_id)
            for business, campaign_id, member_id in session.exec(
                select(
                    TikTokAccount.business_id, TikTokAccount.campaign_id, TikTokAccount.member_id
                ).where(
                    col(TikTokAccount.business_id).in_(accounts),
                    col(TikTokAccount.campaign_id).is_not(None),
                )
            )
            if campaign_id is not None
        }
    live: list[int] | None = None
    new: dict[str, tuple[int, int | None]] = {}
    for row in rows:
        conversation = payload(row, "conversation_id")
        found = known.get(conversation or "") or new.get(conversation or "")
        found = found or owners.get(payload(row, "business_id") or "")
        if found is None:
            if live is None:
                live = [campaign_id for campaign_id, _ in running_live_sprints(session)]
            found = (live[0], None) if len(live) == 1 else None
        if found is None:
            continue
        row["campaign_id"], row["member_id"] = found
        if conversation and conversation not in known:
            new[conversation] = found
    if new:  # another writer may be keeping the same conversation right now: first one wins
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        table = TikTokConversation.__table__  # type: ignore[attr-defined]
        values = [
            with_defaults(
                TikTokConversation,
                {"conversation_id": c, "campaign_id": campaign, "member_id": member},
            )
            for c, (campaign, member) in new.items()
        ]
        insert = dialect.insert(table).on_conflict_do_nothing(index_elements=["conversation_id"])
        session.execute(insert, values)


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

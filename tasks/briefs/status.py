"""Reading briefs back (status, one brief, what changed) and the creator's acknowledgement."""

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from config.errors import RallyError
from store.audit import Change, record
from store.models import Brief, Campaign, Creator, OutboxMessage, RosterMember, RosterStatus
from tasks.briefs.emails import brief_link
from tasks.briefs.run import full_inputs, latest_briefs
from tasks.campaigns.apply import spec_changes
from tasks.campaigns.campaign import get_campaign
from tasks.webhooks.events import Event, emit, iso


def _email_state(message: OutboxMessage | None) -> str:
    if message is None:
        return "not queued"
    if message.status == "pending":
        return "retrying" if message.attempts else "queued"
    return "failed" if message.status == "dead" else "sent"


def brief_status(session: Session, slug: str, *, public_url: str) -> list[dict[str, Any]]:
    """Per active creator: the newest brief's version, its email, acknowledgement, reminder."""
    campaign = get_campaign(session, slug)
    members = list(
        session.exec(
            select(RosterMember.id, Creator.handle, Creator.email)
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(
                RosterMember.campaign_id == campaign.id,
                RosterMember.status == RosterStatus.ACTIVE,
            )
            .order_by(col(Creator.handle))
        )
    )
    latest = latest_briefs(session, [m[0] for m in members if m[0] is not None])
    keys = [f"brief:{b.id}:email" for b in latest.values()]
    messages = {
        m.subject_id: m
        for m in session.exec(
            select(OutboxMessage).where(col(OutboxMessage.idempotency_key).in_(keys))
        )
    }
    rows = []
    for member_id, handle, email in members:
        brief = latest.get(member_id or 0)
        message = messages.get(str(brief.id)) if brief else None
        rows.append(
            {
                "handle": handle,
                "email": email,
                "version": brief.version if brief else None,
                "generated_at": brief.created_at.isoformat() if brief else None,
                "email_status": _email_state(message) if brief else "no brief",
                "email_error": message.last_error if message else None,
                "sent_at": _iso(brief.sent_at) if brief else None,
                "acknowledged_at": _iso(brief.acknowledged_at) if brief else None,
                "reminder_sent_at": _iso(brief.reminder_sent_at) if brief else None,
                "link": brief_link(public_url, brief.token) if brief else None,
            }
        )
    return rows


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def find_brief(session: Session, slug: str, handle: str, version: int | None = None) -> Brief:
    campaign = get_campaign(session, slug)
    handle = handle.removeprefix("@")
    query = (
        select(Brief)
        .join(RosterMember, col(RosterMember.id) == col(Brief.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(Brief.campaign_id == campaign.id, Creator.handle == handle)
    )
    if version is not None:
        query = query.where(Brief.version == version)
    brief = session.exec(query.order_by(col(Brief.version).desc())).first()
    if brief is None:
        which = f"version {version} of the brief" if version else "a brief"
        raise RallyError(
            f"@{handle} has no {which} on {slug} (run `rally briefs generate {slug}` first)"
        )
    return brief


def brief_diff(
    session: Session, slug: str, handle: str, *, old: int | None = None, new: int | None = None
) -> dict[str, Any]:
    """What changed between two versions (default: the newest and the one before it)."""
    after = find_brief(session, slug, handle, new)
    before_version = old if old is not None else after.version - 1
    if before_version < 1:
        raise RallyError(f"@{handle.removeprefix('@')} has only version 1 of the brief on {slug}")
    before = find_brief(session, slug, handle, before_version)
    lines = difflib.unified_diff(
        before.content_markdown.splitlines(),
        after.content_markdown.splitlines(),
        f"v{before.version}",
        f"v{after.version}",
        lineterm="",
    )
    return {
        "from": before.version,
        "to": after.version,
        "inputs": spec_changes(full_inputs(session, before), full_inputs(session, after)),
        "markdown_diff": list(lines),
    }


# --- the creator's page ---------------------------------------------------------------------


@dataclass(frozen=True)
class BriefPage:
    brief: Brief
    campaign_name: str
    campaign_slug: str
    handle: str
    newer_than_link: bool  # the link was for an older version; this is the newest


def open_brief(session: Session, token: str, *, now: datetime) -> BriefPage | None:
    """The newest brief of the creator whose link this is; None for an unknown or expired link."""
    linked = session.exec(select(Brief).where(Brief.token == token)).first()
    if linked is None or linked.token_expires_at <= now:
        return None
    brief = latest_briefs(session, [linked.member_id])[linked.member_id]
    if brief.token_expires_at <= now:  # the campaign was shortened since this link was sent
        return None
    campaign = session.get(Campaign, brief.campaign_id)
    member = session.get(RosterMember, brief.member_id)
    if campaign is None or member is None or member.status != RosterStatus.ACTIVE:
        return None
    creator = session.get(Creator, member.creator_id)
    assert creator is not None
    return BriefPage(brief, campaign.name, campaign.slug, creator.handle, brief.id != linked.id)


def acknowledge(session: Session, token: str, *, version: int, now: datetime) -> BriefPage | None:
    """Record that the creator read `version`; a second click changes nothing.

    If a newer version was made since the page was opened, nothing is recorded: the page shows
    the newer version and the creator acknowledges that one.
    """
    page = open_brief(session, token, now=now)
    if page is None or page.brief.version != version or page.brief.acknowledged_at is not None:
        return page
    page.brief.acknowledged_at = now
    session.add(page.brief)
    campaign = session.get(Campaign, page.brief.campaign_id)
    assert campaign is not None
    summary = f"@{page.handle} acknowledged brief v{version} on {campaign.slug}"
    record(
        session,
        [
            Change(
                f"creator:@{page.handle}",
                "brief.acknowledged",
                "brief",
                page.brief.id or 0,
                summary,
                {"version": version},
            )
        ],
    )
    brief = page.brief
    data = {"brief": brief.id, "creator": page.handle, "version": version, "at": iso(now)}
    key, subject = f"brief:{brief.id}:acknowledged", f"brief:{brief.id}"
    event = Event("brief.acknowledged", key, subject, "briefs", data)
    emit(session, campaign.id or 0, [event], at=now)
    return page

"""What a follow-up sends: the outbox messages of a rule firing for one person, on each
channel (a public reply, a DM, an email, a text, or staff notified), why there may be no
address to send it to, and why TikTok would refuse it as it is."""

from datetime import datetime
from typing import Any, NamedTuple

from config.followups import Rule
from integrations.tiktok import DM_WINDOW, MAX_DM_CHARS, MAX_REPLY_CHARS
from tasks.engagement.rules import CampaignRules, Event, public_handle

OUTBOX_CHANNEL = {"reply": "tiktok_reply", "dm": "tiktok_dm", "email": "email", "sms": "sms"}


class Recipient(NamedTuple):
    """What follow-ups need of a person: how to greet and reach them."""

    id: int
    given_name: str | None
    family_name: str | None
    handle: str | None
    email: str | None
    phone: str | None
    timezone: str | None


def no_address(channel: str, event: Event, person: Recipient | None) -> str | None:
    if channel == "email" and not (person and person.email):
        return "no address: no email for this person"
    if channel == "sms" and not (person and person.phone):
        return "no address: no phone number for this person"
    if channel == "reply" and not (event.video_id and event.type in ("comment", "reply")):
        return "no address: not a comment on a video"
    if channel == "dm" and not event.actor:
        return "no address: no handle to write to"
    return None


def platform_limit(channel: str, event: Event, text: str, due: datetime) -> str | None:
    """Why TikTok would refuse this reply or DM as it is, or None: a reply is at most 150
    characters, a DM 6,000, and a DM answers only within 48 hours of the person's message."""
    if channel == "reply" and len(text) > MAX_REPLY_CHARS:
        return (
            f"too long: a TikTok reply takes at most {MAX_REPLY_CHARS} characters "
            f"(this one has {len(text)})"
        )
    if channel == "dm" and len(text) > MAX_DM_CHARS:
        return (
            f"too long: a TikTok DM takes at most {MAX_DM_CHARS:,} characters "
            f"(this one has {len(text):,})"
        )
    return too_late(channel, event, due)


def too_late(channel: str, event: Event, due: datetime) -> str | None:
    """Why TikTok would refuse this DM when it is due, or None: a DM answers only within 48
    hours of the person's message."""
    answering = channel == "dm" and event.source == "tiktok" and event.type == "dm"
    if answering and due > event.occurred_at + DM_WINDOW:
        return (
            "too late: TikTok lets a business answer a DM only within 48 hours "
            f"(they wrote at {event.occurred_at:%Y-%m-%d %H:%M} UTC, "
            f"this would go at {due:%Y-%m-%d %H:%M} UTC)"
        )
    return None


def channel_messages(
    channel: str, event: Event, person: Recipient | None, text: str, subject: str
) -> list[dict[str, Any]]:
    base = {"channel": OUTBOX_CHANNEL[channel], "destination": "public"}
    payload: dict[str, Any]
    shown = f"@{event.handle or public_handle(event.actor) or event.actor}"
    account: dict[str, Any] = {"business_id": event.business_id} if event.business_id else {}
    if channel == "reply":
        payload = {
            "to": shown,
            "video_id": event.video_id,
            "comment_id": event.comment_id or event.external_id,
            "text": text,
        } | account
    elif channel == "dm":
        # A business writes into the conversation the person opened (its id comes with their
        # DM), within 48 hours of their message; the handle stands in for sources that give
        # no conversation.
        conversation = event.conversation_id if event.type == "dm" else None
        payload = {"to": shown, "recipient": conversation or event.actor, "text": text} | account
        if conversation and event.source == "tiktok":
            payload["window_ends"] = (event.occurred_at + DM_WINDOW).isoformat()
    elif channel == "sms":
        payload = {"to": person.phone if person else None, "text": text}
    else:
        payload = {
            "to": person.email if person else None,
            "to_name": person.given_name if person else "",
            "subject": subject,
            "text": text,
        }
    return [base | {"payload": payload}]


def followup_messages(
    rule: Rule,
    channel: str,
    event: Event,
    person: Recipient | None,
    rules: CampaignRules,
    text: str,
    subject: str,
) -> list[dict[str, Any]]:
    key = f"followup:{rules.campaign_id}:{rule.id}:{person.id if person else event.id}"
    common = {"subject_type": "followup", "subject_id": key}
    if channel == "staff":
        staff = rules.spec.approvers.get(rule.staff_group, [])
        return [
            {
                "channel": "email",
                "destination": "staff",
                "idempotency_key": f"{key}:{email}",
                "payload": {"to": email, "to_name": "", "subject": subject, "text": text},
            }
            | common
            for email in staff
        ]
    return [
        m | common | {"idempotency_key": key}
        for m in channel_messages(channel, event, person, text, subject)
    ]

"""What a follow-up sends: the outbox messages of a rule firing for one person, on each
channel (a public reply, a DM, an email, a text, or staff notified), and why there may be no
address to send it to."""

from typing import Any, NamedTuple

from config.followups import Rule
from tasks.engagement.rules import CampaignRules, Event

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


def channel_messages(
    channel: str, event: Event, person: Recipient | None, text: str, subject: str
) -> list[dict[str, Any]]:
    base = {"channel": OUTBOX_CHANNEL[channel], "destination": "public"}
    if channel == "reply":
        payload = {
            "to": f"@{event.actor}",
            "video_id": event.video_id,
            "comment_id": event.external_id,
            "text": text,
        }
    elif channel == "dm":
        # A business writes into the conversation the person opened (its id comes with their
        # DM); the handle stands in for sources that give none.
        conversation = event.conversation_id if event.type == "dm" else None
        payload = {"to": f"@{event.actor}", "recipient": conversation or event.actor, "text": text}
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

"""Delivering follow-ups from the outbox: replies and DMs on TikTok (with the connected
accounts, `tasks.engagement.accounts`), texts over the SMS provider (email goes with the rest
of Rally's email, `tasks.mail`). With no account connected or no provider configured, each
message is written as a JSON file into `$RALLY_HOME/outbox/<channel>/`, the embedded default.
A follow-up's status follows its message: `sent`, or `failed` once given up on (`FOLLOWUP`).
"""

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, update
from sqlmodel import Session, col
from tenacity.wait import wait_base

from config.errors import RallyError
from config.settings import Settings
from integrations.errors import Deferred, PermanentError
from integrations.http import client_or_own
from integrations.tiktok import TikTokBusiness
from store.models import FollowUp, FollowUpStatus
from store.types import utcnow
from tasks.drain import Deliver, DrainReport, Handler, drain, one_at_a_time, repeat_safe
from tasks.engagement.accounts import Accounts
from tasks.engagement.rules import still_quiet
from tasks.outbox import Claimed
from tasks.webhooks.events import Event, emit, iso

CHANNELS = ("tiktok_reply", "tiktok_dm", "sms")


def followups_sent(session: Session, messages: list[Claimed], at: datetime) -> None:
    """Delivered follow-ups are `sent` (in the transaction that marks their messages sent),
    and `followup.sent` to their campaigns' webhooks, a campaign's together."""
    ids = [m.id for m in messages if m.subject_type == "followup"]
    if not ids:
        return
    marked = session.execute(
        update(FollowUp)
        .where(col(FollowUp.outbox_id).in_(ids))
        .values(status=FollowUpStatus.SENT, updated_at=at)
        .returning(
            col(FollowUp.id),
            col(FollowUp.campaign_id),
            col(FollowUp.rule_id),
            col(FollowUp.channel),
            col(FollowUp.contact_id),
            col(FollowUp.event_id),
        )
    ).all()
    events: dict[int, list[Event]] = {}
    for followup, campaign_id, rule, channel, lead, event in marked:
        data = {"followup": followup, "rule": rule, "channel": channel, "lead": lead}
        data |= {"event": event, "at": iso(at)}
        key, subject = f"followup:{followup}:sent", f"followup:{followup}"
        said = Event("followup.sent", key, subject, "followups", data)
        events.setdefault(campaign_id, []).append(said)
    for campaign_id, sent in events.items():
        emit(session, campaign_id, sent, at=at)


def followup_failed(session: Session, message: Claimed, error: str, at: datetime) -> None:
    """A follow-up its provider refused for good is `failed`, with the provider's words."""
    if message.subject_type != "followup":
        return
    session.execute(
        update(FollowUp)
        .where(col(FollowUp.outbox_id) == message.id)
        .values(status=FollowUpStatus.FAILED, reason=f"failed: {error}"[:1000], updated_at=at)
    )


# A handler for a whole channel: messages of other kinds (a consent change confirmed) it leaves be.
FOLLOWUP = Handler(sent=followups_sent, dead=followup_failed)


class FolderChannel:
    """Writes each message as `<idempotency key>.json`: a repeat rewrites the same file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, message: Claimed) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = message.idempotency_key.replace(":", "_").replace("/", "_") + ".json"
        target = self.folder / name
        partial = target.with_suffix(".partial")
        body = {"channel": message.channel, **message.payload}
        partial.write_text(json.dumps(body, ensure_ascii=False, indent=2))
        os.replace(partial, target)
        return name


def _need(payload: dict[str, Any], *keys: str) -> list[Any]:
    missing = [k for k in keys if not payload.get(k)]
    if missing:
        raise PermanentError(f"the message lacks {', '.join(missing)}")
    return [payload[k] for k in keys]


def deliverer(
    channel: str,
    settings: Settings,
    client: httpx.Client,
    accounts: Accounts | None = None,
    now: Callable[[], datetime] = utcnow,
) -> Deliver:
    """How to send one message of `channel` with these settings (and connected accounts)."""
    if channel in ("tiktok_reply", "tiktok_dm") and accounts:
        return _tiktok(channel, accounts, now)
    if channel == "sms" and settings.sms_api_url:
        from integrations.sms import SmsGateway

        gateway = SmsGateway(
            client,
            api_url=settings.sms_api_url,
            account_sid=settings.sms_account_sid,
            auth_token=settings.sms_auth_token.get_secret_value(),
            sender=settings.sms_from,
        )

        def text(message: Claimed) -> str:
            to, body = _need(message.payload, "to", "text")
            return gateway.send(to=to, body=body)

        return text
    return FolderChannel(settings.local_outbox / channel)


def _tiktok(channel: str, accounts: Accounts, now: Callable[[], datetime]) -> Deliver:
    """Replies and DMs from the account the comment or DM came to (the one account connected,
    for messages that name none). A DM past the 48 hours TikTok allows for an answer is refused
    here, before it is sent."""

    def sender(message: Claimed) -> TikTokBusiness:
        try:
            return accounts.client(message.payload.get("business_id"))
        except RallyError as exc:
            raise PermanentError(f"not sent: {exc}") from None

    if channel == "tiktok_reply":

        def reply(message: Claimed) -> str:
            video, comment, text = _need(message.payload, "video_id", "comment_id", "text")
            return sender(message).reply(video_id=video, comment_id=comment, text=text)

        return reply

    def dm(message: Claimed) -> str:
        recipient, text = _need(message.payload, "recipient", "text")
        ends = message.payload.get("window_ends")
        if ends and now() > datetime.fromisoformat(ends):
            raise PermanentError(
                "not sent: TikTok lets a business answer a DM only within 48 hours of the "
                f"person's message, and that window closed at {ends}"
            )
        return sender(message).send_dm(recipient=recipient, text=text)

    return dm


def outside_quiet_hours(deliver: Deliver, now: Callable[[], datetime]) -> Deliver:
    """`deliver`, for a message that keeps the person's quiet hours, only outside them: one
    still waiting when they start (a retry, a slow drain) goes back until they end."""

    def deliver_outside(message: Claimed) -> str | None:
        at = now()
        until = still_quiet(message.payload.get("quiet"), at)
        if until is not None:
            raise Deferred(
                f"quiet hours: not before {until:%H:%M} {until.tzinfo}",
                retry_after=(until - at).total_seconds(),
            )
        return deliver(message)

    return deliver_outside


def deliver_followups(
    engine: Engine,
    settings: Settings,
    *,
    now: Callable[[], datetime],
    client: httpx.Client | None = None,
    limit: int | None = None,
    wait: wait_base | None = None,
) -> dict[str, DrainReport]:
    """Send every ready reply, DM and text; email follow-ups go with `tasks.mail`."""
    with client_or_own(client, timeout=httpx.Timeout(10.0, connect=5.0)) as http:
        reports = {}
        accounts = Accounts(engine, settings, http, now=now)
        for channel in CHANNELS:
            deliver = deliverer(channel, settings, http, accounts, now)
            folder = isinstance(deliver, FolderChannel)  # a repeat rewrites the same file
            kept = outside_quiet_hours(deliver, now)
            reports[channel] = drain(
                engine,
                channel=channel,
                sender=repeat_safe(kept) if folder else one_at_a_time(kept),
                handler=FOLLOWUP,
                now=now,
                limit=limit,
                wait=wait,
            )
        return reports

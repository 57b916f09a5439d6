"""Deciding follow-ups: which rules an event fires, when each message may go, and why not.

Pure functions over what the caller loaded: the campaign's rules, the person's consent, what
they were already sent. `tasks.engagement.processing` loads and stores; this module only decides.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Template, TemplateError

from briefs.environment import Fields, MissingField, message_sandbox
from briefs.environment import check_messages as check_messages  # the CLI's way to briefs
from config.campaign import CampaignSpec
from config.followups import Followups, QuietHours, Rule

DAY, WEEK = timedelta(days=1), timedelta(days=7)


@dataclass(frozen=True)
class Event:
    id: int
    source: str
    external_id: str
    type: str
    campaign_id: int | None
    member_id: int | None
    actor: str | None
    video_id: str | None
    text: str | None
    occurred_at: datetime
    contact: Any  # a signup's person, from the payload
    conversation_id: str | None  # a DM's conversation, from the payload
    comment_id: str | None  # the comment to reply to, when its id is not the event's
    business_id: str | None  # the TikTok account it came to, which answers it
    handle: str | None  # the person's handle, when the actor is an id that is none


@dataclass(frozen=True)
class MemberInfo:
    handle: str
    segment: str | None
    holdout: bool
    short_link: str


@lru_cache(maxsize=1024)
def message_template(source: str) -> Template:
    """A follow-up text compiled once a process: compiling one costs about a millisecond, and
    a campaign's rules are read again for every batch of events. The sandbox keeps nothing
    between renders, so one compiled template serves every thread."""
    return _sandbox().from_string(source)


@cache
def _sandbox() -> Any:
    return message_sandbox()


@dataclass
class CampaignRules:
    """One campaign's rules, compiled once: matchers, message templates, its roster."""

    campaign_id: int
    spec: CampaignSpec
    followups: Followups
    members: dict[int, MemberInfo]
    public_url: str
    templates: dict[str, Template] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = self.followups.spec
        for rule in spec.rules:
            for part in ("subject", "message"):
                if getattr(rule, part):
                    self.templates[f"{rule.id}.{part}"] = message_template(getattr(rule, part))
        for kind, texts in (
            ("stop", spec.opt_out_confirmation),
            ("start", spec.opt_in_confirmation),
        ):
            for channel, text in texts.items():
                self.templates[f"{kind}.{channel}"] = message_template(text)
        self.by_type: dict[str, list[Rule]] = {}
        for rule in spec.rules:
            for kind in rule.when.types:
                self.by_type.setdefault(kind, []).append(rule)
        self.zone = ZoneInfo(self.spec.timezone)
        self.campaign_context = Fields(
            "campaign",
            {
                "name": self.spec.name,
                "slug": self.spec.slug,
                "key_message": self.spec.brief.key_message,
                "call_to_action": self.spec.brief.call_to_action,
                "hashtags": " ".join(self.spec.brief.hashtags),
            },
        )

    def matching(self, event: Event) -> list[Rule]:
        """The rules `event` fires, in file order."""
        rules = self.by_type.get(event.type)
        if not rules:
            return []
        member = self.members.get(event.member_id or 0)
        return [rule for rule in rules if self._holds(rule, event, member)]

    def _holds(self, rule: Rule, event: Event, member: MemberInfo | None) -> bool:
        return rule_holds(
            self.followups,
            rule,
            text=event.text,
            creator=member.handle if member else None,
            segment=member.segment if member else None,
            video=event.video_id,
        )

    def render(self, key: str, event: Event, actor: dict[str, Any]) -> str:
        """A message template filled for this event; raises `MissingField` or TemplateError."""
        member = self.members.get(event.member_id or 0)
        context = {
            "campaign": self.campaign_context,
            "actor": Fields("actor", actor),
            "creator": Fields(
                "creator",
                {"handle": member.handle, "short_link": member.short_link} if member else {},
            ),
            "event": Fields(
                "event", {"type": event.type, "text": event.text or "", "video": event.video_id}
            ),
            "links": Fields("links", {"join": f"{self.public_url}/join/{self.spec.slug}"}),
        }
        return self.templates[key].render(context).strip()


def rule_holds(
    followups: Followups,
    rule: Rule,
    *,
    text: str | None,
    creator: str | None,
    segment: str | None,
    video: str | None,
) -> bool:
    """Whether a rule's conditions other than the event type hold."""
    when = rule.when
    if when.creators and creator not in when.creators:
        return False
    if when.segments and segment not in when.segments:
        return False
    if when.videos and video not in when.videos:
        return False
    pattern = followups.patterns.get(rule.id)
    return pattern is None or bool(text and pattern.search(text))


RENDER_ERRORS = (MissingField, TemplateError, ArithmeticError, TypeError, ValueError)


def quiet_until(moment: datetime, quiet: QuietHours | None, zone: ZoneInfo) -> datetime:
    """`moment`, or the end of the quiet hours it falls in (in `zone`)."""
    if quiet is None or quiet.start == quiet.end:
        return moment
    local = moment.astimezone(zone)
    now, start, end = local.time(), quiet.start, quiet.end
    crosses_midnight = start > end
    inside = (now >= start or now < end) if crosses_midnight else (start <= now < end)
    if not inside:
        return moment
    day = local.date() + timedelta(days=1) if crosses_midnight and now >= start else local.date()
    return datetime.combine(day, end, zone).astimezone(moment.tzinfo)


def quiet_hours_of(quiet: QuietHours | None, zone: ZoneInfo) -> dict[str, str] | None:
    """What a message carries of the quiet hours it keeps (`still_quiet` reads it when it is
    about to go): their start and end, in the person's zone."""
    if quiet is None or quiet.start == quiet.end:
        return None
    return {"start": quiet.start.isoformat("minutes"), "end": quiet.end.isoformat("minutes"),
            "zone": zone.key}  # fmt: skip


def still_quiet(kept: object, now: datetime) -> datetime | None:
    """When the quiet hours a message keeps (`quiet_hours_of`) end, in the person's zone, if
    `now` is within them: a message due before them may still be waiting when they start (a
    retry, a slow drain)."""
    if not isinstance(kept, dict):
        return None
    try:
        quiet, zone = QuietHours(start=kept["start"], end=kept["end"]), ZoneInfo(kept["zone"])
    except (KeyError, ValueError, ZoneInfoNotFoundError):
        return None
    until = quiet_until(now, quiet, zone)
    return until.astimezone(zone) if until > now else None


Slot = tuple[int, str, datetime]  # a campaign's channel in one minute


@dataclass
class Sent:
    """Follow-ups already queued or sent: a batch's people's own, for caps (per person and
    channel), and everyone's, for a campaign's rate limits (per channel and minute); decisions
    in this batch are added as they are made."""

    times: dict[tuple[int, str], list[datetime]] = field(default_factory=dict)
    per_minute: Counter[Slot] = field(default_factory=Counter)
    full_until: dict[Slot, datetime] = field(default_factory=dict)

    def remember(self, contact_id: int, channel: str, due: datetime) -> None:
        """One of this person's follow-ups, for their caps."""
        self.times.setdefault((contact_id, channel), []).append(due)

    def count(self, campaign_id: int, channel: str, due: datetime) -> None:
        """One of the campaign's follow-ups on `channel`, for its rate limit."""
        self.per_minute[(campaign_id, channel, minute(due))] += 1

    def add(self, campaign_id: int, contact_id: int, channel: str, due: datetime) -> None:
        self.remember(contact_id, channel, due)
        self.count(campaign_id, channel, due)

    def cap_reason(
        self, followups: Followups, contact_id: int, channel: str, due: datetime
    ) -> str | None:
        cap = followups.spec.caps.get(channel)  # type: ignore[call-overload]
        if cap is None:
            return None
        times = self.times.get((contact_id, channel), [])
        for limit, window, word in ((cap.day, DAY, "day"), (cap.week, WEEK, "week")):
            if limit is not None and sum(1 for t in times if abs(t - due) < window) >= limit:
                return f"capped: at most {limit} {channel} a {word} per person"
        return None

    def next_slot(
        self, campaign_id: int, channel: str, due: datetime, per_minute_limit: int | None
    ) -> datetime:
        """The first minute from `due` with room under the campaign's rate limit on `channel`."""
        if per_minute_limit is None:
            return due
        first = slot = minute(due)
        while self.per_minute[(campaign_id, channel, slot)] >= per_minute_limit:
            # A run of full minutes is walked once: later messages jump to where it ended.
            ended = self.full_until.get((campaign_id, channel, slot), slot)
            slot = max(slot + timedelta(minutes=1), ended)
        if slot != first:
            self.full_until[(campaign_id, channel, first)] = slot
        return max(due, slot)


def minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def due_at(
    rules: CampaignRules,
    rule: Rule,
    channel: str,
    event: Event,
    sent: Sent,
    *,
    now: datetime,
    zone: ZoneInfo | None = None,
) -> datetime:
    """When a message may go: after the rule's delay, outside quiet hours, and in a minute with
    room under the channel's rate limit."""
    spec = rules.followups.spec
    due = max(now, event.occurred_at) + timedelta(minutes=rule.delay_minutes)
    limit = spec.rate_limits.get(channel)  # type: ignore[call-overload]
    for _ in range(10_000):
        moved = sent.next_slot(
            rules.campaign_id,
            channel,
            quiet_until(due, spec.quiet_hours, zone or rules.zone),
            limit,
        )
        if moved == due:
            return due
        due = moved
    return due


HANDLE = re.compile(r"@?[\w.]{1,30}")


def public_handle(value: str | None) -> str | None:
    """`value` without its @ when it reads as a social handle; None for an opaque id (TikTok's
    unique_identifier, 44 characters and more) that must never be shown as one."""
    return value.lstrip("@") if value and HANDLE.fullmatch(value) else None


def greeting(name: str | None, handle: str | None) -> str:
    if name and name.strip():
        return name.split()[0]
    return f"@{handle}" if handle else "there"

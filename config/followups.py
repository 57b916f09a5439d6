"""Follow-up rules as code: the schema of `config/followups/*.yaml` and its version.

A rule says when it fires (event types, words or patterns in the text, creators, segments,
videos) and what it does (reply to the comment, DM, email, SMS, tag the lead, tell staff), with
a delay, at most once per person. The file also sets quiet hours, per-person caps per channel
and per-channel rate limits. Messages are templates rendered in the brief sandbox: what people
wrote is data.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from config.campaign import Identifier, Model, Text
from config.campaign_file import CampaignFileError, read_yaml, repeated, validation_problems

BUILTIN_FOLLOWUPS = Path(__file__).parent / "followups"

EventType = Literal[
    "comment", "reply", "like", "share", "follow", "mention", "dm", "link_click", "signup", "rsvp"
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
Action = Literal["reply", "dm", "email", "sms", "tag", "notify_staff"]
Channel = Literal["reply", "dm", "email", "sms"]
MESSAGE_ACTIONS = ("reply", "dm", "email", "sms", "notify_staff")


class When(Model):
    """A rule fires when every condition given holds. Keywords match whole words, any case."""

    types: Annotated[list[EventType], Field(min_length=1)]
    keywords: list[Text] = Field(default_factory=list)
    patterns: list[Text] = Field(default_factory=list)
    creators: list[Text] = Field(default_factory=list)
    segments: list[Identifier] = Field(default_factory=list)
    videos: list[Text] = Field(default_factory=list)


class Rule(Model):
    id: Identifier
    description: Text = "-"
    when: When
    action: Action
    delay_minutes: Annotated[int, Field(ge=0, le=60 * 24 * 14)] = 0
    subject: str = ""  # email and notify_staff
    message: str = ""
    tags: list[Identifier] = Field(default_factory=list)  # tag: the tags to add to the lead
    staff_group: Identifier = "internal"  # notify_staff: the campaign's approver group

    @model_validator(mode="after")
    def _needs(self) -> "Rule":
        if self.action in MESSAGE_ACTIONS and not self.message.strip():
            raise ValueError(f"a {self.action} rule needs a message")
        if self.action in ("email", "notify_staff") and not self.subject.strip():
            raise ValueError(f"a {self.action} rule needs a subject")
        if self.action == "tag" and not self.tags:
            raise ValueError("a tag rule needs tags")
        return self


class Cap(Model):
    day: Annotated[int, Field(ge=0)] | None = None
    week: Annotated[int, Field(ge=0)] | None = None


class QuietHours(Model):
    """No message is sent between `start` and `end`, in the person's time zone if known, else
    the campaign's; one due then waits until `end`."""

    start: time = time(21)
    end: time = time(8)


PerMinute = Annotated[int, Field(ge=1)]  # messages a minute


class FollowupsSpec(Model):
    name: Text
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    caps: dict[Channel, Cap] = Field(default_factory=dict)
    rate_limits: dict[Channel, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict
    )  # per minute
    opt_out_confirmation: dict[Channel, Text] = Field(default_factory=dict)
    opt_in_confirmation: dict[Channel, Text] = Field(default_factory=dict)
    rules: list[Rule]


@dataclass(frozen=True)
class Followups:
    spec: FollowupsSpec
    version: str
    source: str
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)  # rule id -> its matcher

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.spec.rules if r.id == rule_id), None)


def matcher(when: When) -> re.Pattern[str] | None:
    """One regular expression for a rule's keywords (whole words, any case) and patterns."""
    parts = [r"(?<!\w)" + re.escape(k.lower()) + r"(?!\w)" for k in when.keywords]
    parts += [f"(?:{p})" for p in when.patterns]
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _cross_checks(spec: FollowupsSpec) -> list[tuple[str, str]]:
    problems = repeated("rules", [r.id for r in spec.rules], "duplicate id {}", ".id")
    for i, rule in enumerate(spec.rules):
        for j, pattern in enumerate(rule.when.patterns):
            try:
                re.compile(f"(?:{pattern})")  # as `matcher` joins it with the others
            except re.error as exc:
                said = f"not a valid pattern: {exc}"
                if "global flags" in str(exc):
                    said += " (patterns match any case already; scope a flag as (?i:...))"
                problems.append((f"rules[{i}].when.patterns[{j}]", said))
    return problems


def parse_followups(data: Any, *, file: str) -> Followups:
    if not isinstance(data, dict):
        raise CampaignFileError(file, [("", "must be a mapping of follow-up fields")])
    try:
        spec = FollowupsSpec.model_validate(data)
    except ValidationError as exc:
        raise CampaignFileError(file, validation_problems(exc)) from None
    if problems := _cross_checks(spec):
        raise CampaignFileError(file, problems)
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    version = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    patterns = {r.id: m for r in spec.rules if (m := matcher(r.when)) is not None}
    return Followups(spec, version, file, patterns)


def load_followups(reference: str, *, base: Path | None) -> Followups:
    """`default` (or another built-in name), or a file relative to the campaign's folder."""
    path = BUILTIN_FOLLOWUPS / f"{reference}.yaml"
    if not path.is_file():
        path = (base or Path.cwd()) / reference
    return parse_followups(read_yaml(path), file=str(path))

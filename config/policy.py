"""Compliance policy as code: the schema of `config/policies/*.yaml` and its version.

Rules say what every draft must satisfy (a check with parameters, when it applies, block or
warn); tiers say which human reviews follow, in order, owned by which approver group, with what
deadline. The version is a hash of the file's content, recorded with every finding and decision.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from config.campaign import Identifier, Model, Share, Text
from config.campaign_file import CampaignFileError, read_yaml, repeated, validation_problems

BUILTIN_POLICIES = Path(__file__).parent / "policies"

Check = Literal[
    "disclosure",
    "paid_for_by",
    "platform_ban",
    "prohibited_claims",
    "synthetic_label",
    "tracking_link",
    "caption_limits",
    "duration",
]
Route = Literal["always", "paid", "political", "sponsored", "ai_generated", "warning", "sample"]


class When(Model):
    """A rule applies when every condition given holds (none given: always)."""

    paid: bool | None = None
    political: bool | None = None
    sponsored: bool | None = None
    ai_generated: bool | None = None
    platforms: list[str] | None = None


class Rule(Model):
    id: Identifier
    description: Text
    severity: Literal["block", "warn"]
    when: When = When()
    check: Check
    params: dict[str, Any] = Field(default_factory=dict)


class TierSpec(Model):
    """A human review step. No tier ever approves by timeout: past its deadline a task is
    escalated to the backup group and the creative waits."""

    id: Identifier
    name: Text
    group: Identifier
    backup_group: Identifier | None = None
    when: Annotated[list[Route], Field(min_length=1)]
    sample_rate: Share = 0.1
    deadline_hours: Annotated[float, Field(gt=0, le=24 * 14)] = 24
    reminder_before_hours: Annotated[float, Field(ge=0, le=24 * 14)] = 4


class ChecklistItem(Model):
    """What an approver confirms before approving; a `paid_only` item is asked only in the
    review of a paid placement (a boost of a posted video, or a draft submitted as paid)."""

    id: Identifier
    text: Text
    paid_only: bool = False


class PolicySpec(Model):
    name: Text
    rules: list[Rule]
    tiers: Annotated[list[TierSpec], Field(min_length=1)]
    checklist: list[ChecklistItem] = Field(default_factory=list)


@dataclass(frozen=True)
class Policy:
    spec: PolicySpec
    version: str  # the first 16 hex digits of the file's canonical hash
    source: str

    def checklist(self, *, paid: bool) -> list[ChecklistItem]:
        """The checklist of a draft's review: the paid-only items too when it is paid."""
        return [item for item in self.spec.checklist if paid or not item.paid_only]

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.spec.rules if r.id == rule_id), None)


def _cross_checks(spec: PolicySpec) -> list[tuple[str, str]]:
    problems = repeated("rules", [r.id for r in spec.rules], "duplicate id {}", ".id")
    problems += repeated("tiers", [t.id for t in spec.tiers], "duplicate id {}", ".id")
    for i, rule in enumerate(spec.rules):
        for j, pattern in enumerate(rule.params.get("patterns", [])):
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                problems.append((f"rules[{i}].params.patterns[{j}]", f"not a valid pattern: {exc}"))
    return problems


def parse_policy(data: Any, *, file: str) -> Policy:
    if not isinstance(data, dict):
        raise CampaignFileError(file, [("", "must be a mapping of policy fields")])
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        raise CampaignFileError(file, validation_problems(exc)) from None
    if problems := _cross_checks(spec):
        raise CampaignFileError(file, problems)
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return Policy(spec, hashlib.sha256(canonical.encode()).hexdigest()[:16], file)


def load_policy(reference: str, *, base: Path | None) -> Policy:
    """`default` (or another built-in name), or a file relative to the campaign's folder."""
    path = BUILTIN_POLICIES / f"{reference}.yaml"
    if not path.is_file():
        path = (base or Path.cwd()) / reference
    try:
        stat = path.stat()
    except OSError:
        return parse_policy(read_yaml(path), file=str(path))  # says what is wrong with it
    return _parsed(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)
def _parsed(path: str, mtime_ns: int, size: int) -> Policy:
    """A policy file parsed once per version of it: every draft is checked against it."""
    return parse_policy(read_yaml(Path(path)), file=path)

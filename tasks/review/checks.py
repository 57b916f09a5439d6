"""The automated checks a policy's rules name, run on every draft before any human sees it.

Each check takes the draft's facts and the rule's parameters and returns whether it passed and
a message a creator can act on. `evaluate` runs the rules that apply to a draft.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.policy import Policy, Rule

HASHTAG = re.compile(r"#\w+")


@dataclass(frozen=True)
class DraftFacts:
    """Everything the checks need to know about one draft and its context."""

    caption: str
    script: str
    duration_seconds: float | None
    paid: bool
    ai_generated: bool
    sponsored: bool  # the creator is paid for this content
    political: bool
    platform: str
    committee_name: str | None
    disclaimer: str | None  # the committee's whole "Paid for by ..." text, as the campaign wrote it
    tracking_markers: tuple[str, ...]  # the creator's short link code, promo code, UTM handle
    deliverable_length: str  # "15-30s"


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: str
    passed: bool
    message: str


def _lower(text: str) -> str:
    return " ".join(text.lower().split())


def _find(text: str, marker: str) -> int:
    """Where `marker` first stands as a whole word or tag (`#ad`, not `#adventure`), or -1."""
    match = re.search(rf"(?<![\w#]){re.escape(marker.lower())}(?![\w])", text.lower())
    return match.start() if match else -1


def disclosure(d: DraftFacts, params: dict[str, Any]) -> tuple[bool, str]:
    found = [(_find(d.caption, m), m) for m in params.get("markers", ["#ad"])]
    found = [(at, m) for at, m in found if at >= 0]
    if not found:
        return False, "no sponsorship disclosure: start the caption with #ad or #sponsored"
    at, marker = min(found)
    before = len(HASHTAG.findall(d.caption[:at]))
    if before > params.get("max_hashtags_before", 2) or at > params.get("within_characters", 150):
        return False, f"{marker} is buried ({before} hashtags before it): move it to the start"
    return True, f"{marker} is up front"


def _plain(text: str) -> str:
    """Lower case, one space between words, straight quotes: how two wordings are compared."""
    return _lower(text.replace("\u2019", "'").replace("\u2018", "'"))


def further_sentences(disclaimer: str | None) -> list[str]:
    """The disclaimer's sentences after its "Paid for by ..." one (such as "Not authorized by
    any candidate or candidate's committee."), each of which a caption must carry as written."""
    sentences = re.split(r"(?<=[.!?])\s+", " ".join((disclaimer or "").split()))
    return [s for s in sentences if s and "paid for by" not in s.lower()]


def paid_for_by(d: DraftFacts, params: dict[str, Any]) -> tuple[bool, str]:
    committee = d.committee_name or ""
    said = rf"paid for by:? (the )?{re.escape(committee.lower())}(?![\w])"
    caption = _plain(d.caption)
    if not re.search(said, caption):
        return False, f'the caption must say "Paid for by {committee}"'
    missing = [s for s in further_sentences(d.disclaimer) if _plain(s) not in caption]
    if missing:
        return False, "the disclaimer is incomplete: add " + " ".join(f'"{s}"' for s in missing)
    return True, f'"Paid for by {committee}" and the rest of the disclaimer are in the caption'


def platform_ban(d: DraftFacts, params: dict[str, Any]) -> tuple[bool, str]:
    return False, (
        f"{d.platform} does not allow paid political ads or paid political branded content: "
        "post it organically (not as a paid placement), or choose another platform"
    )


def prohibited_claims(d: DraftFacts, params: dict[str, Any]) -> tuple[bool, str]:
    text = _lower(f"{d.caption} {d.script}")
    hits = [p for p in params.get("phrases", []) if _find(text, p) >= 0]
    for pattern in params.get("patterns", []):  # a claim a phrase found already is said once
        found = re.search(pattern, text)
        if found and not any(h in found.group(0) or found.group(0) in h for h in hits):
            hits.append(found.group(0))
    if hits:
        return False, "prohibited claim: " + "; ".join(f'"{h}"' for h in hits)
    return True, "no prohibited claims"


def synthetic_label(d: DraftFacts, params: dict[str, Any]) -> tuple[bool, str]:
    if any(_find(d.caption, m) >= 0 for m in params.get("markers", ["#aigenerated"])):
        return True, "AI-generated media is labelled"
    return False, "AI-generated media needs a label: turn on the AI label or add #AIgenerated"


def tracking_link(d: DraftFacts, params: dict[str, Any]) -> tuple[bool, str]:
    text = f"{d.caption} {d.script}".lower()
    if any(marker.lower() in text for marker in d.tracking_markers if marker):
        return True, "points to the creator's own link or code"
    return False, "mention your own link or promo code, so the campaign credits your results"


def caption_limits(d: DraftFacts, params: dict[str, Any]) -> tuple[bool, str]:
    length, tags = len(d.caption), len(HASHTAG.findall(d.caption))
    most_chars, most_tags = params.get("max_characters", 2200), params.get("max_hashtags", 8)
    if length > most_chars:
        return False, f"caption is {length} characters; the limit is {most_chars}"
    if tags > most_tags:
        return False, f"{tags} hashtags; use at most {most_tags}"
    return True, f"{length} characters, {tags} hashtags"


def duration(d: DraftFacts, params: dict[str, Any]) -> tuple[bool, str]:
    low, _, high = d.deliverable_length.rstrip("s ").partition("-")
    shortest, longest = (float(low), float(high)) if high else (0.0, float(low))  # "60s": up to 60
    if d.duration_seconds is None:
        return False, f"give the video's duration (the brief asks for {d.deliverable_length})"
    if not shortest <= d.duration_seconds <= longest:
        return False, f"{d.duration_seconds:g} s is outside the brief's {d.deliverable_length}"
    return True, f"{d.duration_seconds:g} s is within {d.deliverable_length}"


CHECKS: dict[str, Callable[[DraftFacts, dict[str, Any]], tuple[bool, str]]] = {
    "disclosure": disclosure,
    "paid_for_by": paid_for_by,
    "platform_ban": platform_ban,
    "prohibited_claims": prohibited_claims,
    "synthetic_label": synthetic_label,
    "tracking_link": tracking_link,
    "caption_limits": caption_limits,
    "duration": duration,
}


def applies(rule: Rule, d: DraftFacts) -> bool:
    when = rule.when
    facts = {
        "paid": d.paid,
        "political": d.political,
        "sponsored": d.sponsored,
        "ai_generated": d.ai_generated,
    }
    if any(getattr(when, k) is not None and getattr(when, k) != v for k, v in facts.items()):
        return False
    return when.platforms is None or d.platform in when.platforms


def evaluate(policy: Policy, d: DraftFacts) -> list[Finding]:
    """The findings of every rule that applies to the draft, in the policy's order."""
    findings = []
    for rule in policy.spec.rules:
        if applies(rule, d):
            passed, message = CHECKS[rule.check](d, rule.params)
            findings.append(Finding(rule.id, rule.severity, passed, message))
    return findings

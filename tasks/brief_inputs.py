"""What a brief is made of: the campaign's part, shared by every creator, and each creator's own.

Inputs are plain JSON (stored with each version, so `rally briefs diff` can name what changed);
their hash decides whether a new version is needed. A value Rally does not know (a creator's
rate, say) is left out rather than set to None, so a template that needs it fails with the
field's name instead of printing a blank.
"""

import hashlib
import json
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from briefs.environment import Fields
from config.campaign import CampaignSpec
from store.models import Creator, RosterMember
from tasks.formats import money
from tasks.sprint_plan import week_end, week_start
from tasks.tracking import tracking_url

HINTS = {
    "creator.compensation": "give the creator a rate in the roster or a tier with a rate",
    "creator.name": "add the creator's name to the roster",
}


def long_date(day: date) -> str:
    return f"{day:%A, %B} {day.day}, {day.year}"


def campaign_end(spec: CampaignSpec) -> datetime:
    """Midnight after the sprint's last day, in the campaign's time zone: briefs expire then."""
    last_day = week_end(spec.sprint.start, spec.sprint.weeks)
    return datetime.combine(last_day + timedelta(days=1), time(), ZoneInfo(spec.timezone))


def disclosures(spec: CampaignSpec) -> list[dict[str, str]]:
    """The disclosures this campaign's posts must carry (FTC sponsorship, FEC "Paid for by")."""
    required = [
        {
            "id": "sponsorship",
            "title": "Say it is sponsored",
            "text": "Start your caption with #ad (or #sponsored), before any other hashtag, "
            "so it is not buried; you are paid for this post.",
        }
    ]
    if spec.political and spec.committee:
        required.append(
            {
                "id": "paid_for_by",
                "title": "Paid for by",
                "text": "Put this disclaimer in the caption and on screen, word for word: "
                + spec.committee.paid_for_by,
            }
        )
    required.append(
        {
            "id": "synthetic_media",
            "title": "Label AI-made media",
            "text": "If any image, voice or footage is AI-generated or altered, "
            "turn on the platform's AI-generated content label.",
        }
    )
    return required


def campaign_part(spec: CampaignSpec) -> dict[str, Any]:
    brief, start = spec.brief, spec.sprint.start
    first_posting, last_posting = brief.posting_weeks
    part: dict[str, Any] = {
        "name": spec.name,
        "slug": spec.slug,
        "objective": spec.objective,
        "political": spec.political,
        "paid": spec.paid,
        "jurisdiction": spec.jurisdiction,
        "key_message": brief.key_message,
        "call_to_action": brief.call_to_action,
        "hashtags": list(brief.hashtags),
        "guidelines": list(brief.guidelines),
        "deliverables": brief.deliverables.model_dump(),
        "dates": {
            "start": long_date(start),
            "end": long_date(week_end(start, spec.sprint.weeks)),
            "draft_due": long_date(week_end(start, brief.draft_due_week)),
            "posting_from": long_date(week_start(start, first_posting)),
            "posting_to": long_date(week_end(start, last_posting)),
        },
        "disclosures": disclosures(spec),
    }
    if spec.committee:
        part["committee"] = spec.committee.model_dump()
    return part


def creator_part(
    spec: CampaignSpec, member: RosterMember, creator: Creator, *, public_url: str
) -> dict[str, Any]:
    segment = next(s for s in spec.segments if s.id == member.segment)
    tier = spec.tiers.get(member.tier or "")
    part: dict[str, Any] = {
        "handle": creator.handle,
        "platform": creator.platform,
        "greeting": creator.name.split()[0] if creator.name else f"@{creator.handle}",
        "email": creator.email,
        "segment": {"id": segment.id, "name": segment.name, "description": segment.description},
        "attributes": dict(creator.attributes),
    }
    if creator.name:
        part["name"] = creator.name
    if tier:
        part["tier"] = {"id": member.tier, "description": tier.description}
    rate = member.rate_cents if member.rate_cents is not None else None
    if rate is None and tier:
        rate = round(tier.rate * 100)
    if rate is not None:
        part["compensation"] = money(rate, spec.budget.currency)
    tracking = {
        "url": tracking_url(spec, creator.platform, creator.handle),
        "short_link": f"{public_url}/t/{member.tracking_code}",
        "source_code": member.source_code,
    }
    return {"creator": part, "tracking": tracking}


def brief_inputs(
    campaign: dict[str, Any], creator: dict[str, Any], *, templates: str
) -> dict[str, Any]:
    return {"campaign": campaign, **creator, "templates": templates}


def inputs_hash(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def as_context(value: Any, path: str = "") -> Any:
    """Inputs as the templates see them: every mapping a `Fields` that knows its path."""
    if isinstance(value, dict):
        return Fields(
            path, {k: as_context(v, f"{path}.{k}" if path else k) for k, v in value.items()}
        )
    if isinstance(value, list):
        return [as_context(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value

"""What a brief is made of: the campaign's part, shared by every creator, and each creator's own.

Inputs are plain JSON (stored with each version, so `rally briefs diff` can name what changed);
their hash decides whether a new version is needed. A value Rally does not know (a creator's
rate, say) is left out rather than set to None, so a template that needs it fails with the
field's name instead of printing a blank.
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache, partial
from typing import Any, Protocol
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from briefs.environment import Fields
from config.campaign import CampaignSpec
from store.models import Creator, RosterMember
from tasks.campaigns.plan import week_end, week_start
from tasks.campaigns.tracking import tracking_url
from tasks.formats import money

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


class CreatorRow(Protocol):
    """The roster columns a brief needs (one row of `MEMBER_COLUMNS`)."""

    member_id: int
    segment: str | None
    tier: str | None
    rate_cents: int | None
    tracking_code: str
    source_code: str
    handle: str
    platform: str
    name: str | None
    email: str | None
    attributes: dict[str, Any]


MEMBER_COLUMNS: tuple[Any, ...] = (
    col(RosterMember.id).label("member_id"),
    RosterMember.segment,
    RosterMember.tier,
    RosterMember.rate_cents,
    RosterMember.tracking_code,
    RosterMember.source_code,
    Creator.handle,
    Creator.platform,
    Creator.name,
    Creator.email,
    Creator.attributes,
)


def creator_rows(session: Session, *where: Any) -> Sequence[Any]:
    """The `CreatorRow`s of the roster members matching `where`, as plain rows (no ORM)."""
    query = (
        sa_select(*MEMBER_COLUMNS)
        .join(Creator, col(RosterMember.creator_id) == col(Creator.id))
        .where(*where)
    )
    return session.execute(query).all()


class CreatorParts:
    """Builds each creator's part of the inputs; the campaign's lookups are made once."""

    def __init__(self, spec: CampaignSpec, *, public_url: str) -> None:
        self.spec, self.public_url = spec, public_url
        self.segments = {
            s.id: {"id": s.id, "name": s.name, "description": s.description} for s in spec.segments
        }
        self.tiers = {
            key: {"id": key, "description": tier.description} for key, tier in spec.tiers.items()
        }
        # The same values as the templates see them, built once and shared (the sandbox is
        # immutable, so no template can change them for the next creator).
        self._segment_context = {
            k: as_context(v, "creator.segment") for k, v in self.segments.items()
        }
        self._tier_context = {k: as_context(v, "creator.tier") for k, v in self.tiers.items()}
        self._links: dict[str, tuple[str, str]] = {}
        self._money = lru_cache(maxsize=256)(partial(money, currency=spec.budget.currency))

    def _tracking_url(self, platform: str, handle: str) -> str:
        """`tracking_url`, with the campaign's part of the URL built once per platform."""
        if platform not in self._links:
            prefix, _, suffix = tracking_url(self.spec, platform, "\0").partition("%00")
            self._links[platform] = (prefix, suffix)
        prefix, suffix = self._links[platform]
        return prefix + quote_plus(handle) + suffix

    def __call__(self, row: CreatorRow) -> dict[str, Any]:
        tier = self.spec.tiers.get(row.tier or "")
        part: dict[str, Any] = {
            "handle": row.handle,
            "platform": row.platform,
            "greeting": row.name.split()[0] if row.name else f"@{row.handle}",
            "email": row.email,
            "segment": self.segments[row.segment or ""],
            "attributes": dict(sorted(row.attributes.items())),  # one order, one hash
        }
        if row.name:
            part["name"] = row.name
        if tier:
            part["tier"] = self.tiers[row.tier or ""]
        rate = row.rate_cents
        if rate is None and tier:
            rate = round(tier.rate * 100)
        if rate is not None:
            part["compensation"] = self._money(rate)
        tracking = {
            "url": self._tracking_url(row.platform, row.handle),
            "short_link": f"{self.public_url}/t/{row.tracking_code}",
            "source_code": row.source_code,
        }
        return {"creator": part, "tracking": tracking}

    def context(self, part: dict[str, Any]) -> dict[str, Any]:
        """`part` as the templates see it (see `as_context`), reusing the shared pieces."""
        creator = dict(part["creator"])
        creator["segment"] = self._segment_context[creator["segment"]["id"]]
        if "tier" in creator:
            creator["tier"] = self._tier_context[creator["tier"]["id"]]
        creator["attributes"] = Fields("creator.attributes", creator["attributes"])
        return {
            "creator": Fields("creator", creator),
            "tracking": Fields("tracking", part["tracking"]),
        }


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def inputs_hash(campaign_digest: str, creator: dict[str, Any], templates: str) -> str:
    """The hash of a brief's inputs; the campaign's part is hashed once per run. The creator's
    part is built in one fixed key order (attributes sorted), so it needs no sorting here."""
    body = f"{campaign_digest}\0{templates}\0{json.dumps(creator, ensure_ascii=False)}"
    return hashlib.sha256(body.encode()).hexdigest()


def campaign_digest(campaign: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(campaign).encode()).hexdigest()


def as_context(value: Any, path: str) -> Any:
    """Inputs as the templates see them: every mapping a `Fields` that knows its path."""
    if isinstance(value, dict):
        return Fields(
            path,
            {
                k: as_context(v, f"{path}.{k}") if isinstance(v, dict | list) else v
                for k, v in value.items()
            },
        )
    if isinstance(value, list):
        return [
            as_context(v, f"{path}[{i}]") if isinstance(v, dict | list) else v
            for i, v in enumerate(value)
        ]
    return value

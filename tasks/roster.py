"""The creator roster: read a CSV, report bad rows by row and field, upsert the good ones.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first creator row 2.
Columns beyond the known ones are kept on the creator as `attributes` for templates.
"""

import base64
import csv
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.errors import RallyError
from store.audit import Change, record
from store.models import Campaign, Creator, RosterMember, RosterStatus
from store.types import utcnow

PLATFORMS = ("tiktok", "instagram", "youtube", "snapchat", "facebook", "x", "twitch")
KNOWN_COLUMNS = {
    "handle",
    "platform",
    "name",
    "email",
    "phone",
    "followers",
    "segment",
    "tier",
    "rate",
    "source_code",
}
COLUMN_ALIASES = {"promo_code": "source_code", "username": "handle", "full_name": "name"}
REQUIRED_COLUMNS = ("handle", "email")


@dataclass(frozen=True)
class RosterRow:
    row: int
    platform: str
    handle: str
    email: str
    name: str | None = None
    phone: str | None = None
    followers: int | None = None
    segment: str | None = None
    tier: str | None = None
    rate_cents: int | None = None
    source_code: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RowProblem:
    row: int
    handle: str | None
    field: str
    message: str

    def __str__(self) -> str:
        who = f" (@{self.handle})" if self.handle else ""
        return f"row {self.row}{who}: {self.field}: {self.message}"


# --- parsing --------------------------------------------------------------------------------


def _count(text: str) -> int:
    """Follower counts as people write them: 12300, 12,300, 12.3K, 1.2M."""
    cleaned = text.replace(",", "").replace("_", "").strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(cleaned[-1:], 1)
    number = Decimal(cleaned[:-1] if scale > 1 else cleaned)
    if number < 0 or (scale == 1 and number != number.to_integral_value()):
        raise InvalidOperation
    return int(number * scale)


def _cents(text: str) -> int:
    number = Decimal(text.replace("$", "").replace(",", "").strip())
    if number < 0:
        raise InvalidOperation
    return int((number * 100).to_integral_value())


def _parse_row(
    number: int, raw: Mapping[str, str], spec: CampaignSpec
) -> tuple[RosterRow | None, list[RowProblem]]:
    values = {k: (v or "").strip() for k, v in raw.items() if k}
    handle = values.get("handle", "").lstrip("@").lower()
    problems: list[RowProblem] = []

    def bad(column: str, message: str) -> None:
        problems.append(RowProblem(number, handle or None, column, message))

    if not handle:
        bad("handle", "required")
    elif not re.fullmatch(r"[a-z0-9._-]{2,30}", handle):
        bad("handle", f"must be 2-30 letters, digits, dots, dashes or underscores (got {handle!r})")
    platform = values.get("platform", "").lower() or "tiktok"
    if platform not in PLATFORMS:
        bad("platform", f"must be one of {', '.join(PLATFORMS)} (got {platform!r})")
    email = values.get("email", "")
    if not email:
        bad("email", "required")
    elif not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        bad("email", f"not an email address (got {email!r})")
    segments = sorted(spec.segment_ids())
    segment = values.get("segment") or None
    if segment not in segments:
        bad(
            "segment",
            f"must be one of {', '.join(segments)}" + (f" (got {segment!r})" if segment else ""),
        )
    tier = values.get("tier") or None
    if spec.tiers and tier not in spec.tiers:
        bad(
            "tier", f"must be one of {', '.join(spec.tiers)}" + (f" (got {tier!r})" if tier else "")
        )
    followers = rate = None
    try:
        followers = _count(values["followers"]) if values.get("followers") else None
    except (InvalidOperation, ValueError):
        bad(
            "followers",
            f"must be a whole number such as 12300 or 12.3K (got {values['followers']!r})",
        )
    try:
        rate = _cents(values["rate"]) if values.get("rate") else None
    except (InvalidOperation, ValueError):
        bad("rate", f"must be an amount such as 400 or 1,250.50 (got {values['rate']!r})")
    code = values.get("source_code", "").upper() or None
    if code and not re.fullmatch(r"[A-Z0-9_-]{3,32}", code):
        bad("source_code", f"must be 3-32 letters, digits, dashes or underscores (got {code!r})")
    if problems:
        return None, problems
    extra = {k: v for k, v in values.items() if k not in KNOWN_COLUMNS and v}
    return RosterRow(
        row=number,
        platform=platform,
        handle=handle,
        email=email.lower(),
        name=values.get("name") or None,
        phone=values.get("phone") or None,
        followers=followers,
        segment=segment,
        tier=tier,
        rate_cents=rate,
        source_code=code,
        attributes=extra,
    ), []


def parse_roster(
    records: Iterable[Mapping[str, str]], spec: CampaignSpec
) -> tuple[list[RosterRow], list[RowProblem]]:
    """Check every record; a bad one is reported and skipped, never stops the others."""
    rows: list[RosterRow] = []
    problems: list[RowProblem] = []
    seen: dict[tuple[str, str], int] = {}
    codes: dict[str, int] = {}
    for number, record_ in enumerate(records, start=2):
        row, row_problems = _parse_row(number, record_, spec)
        if row is not None:
            if (first := seen.get((row.platform, row.handle))) is not None:
                row_problems = [RowProblem(number, row.handle, "handle", f"repeats row {first}")]
            elif row.source_code and (first := codes.get(row.source_code)) is not None:
                row_problems = [
                    RowProblem(number, row.handle, "source_code", f"repeats row {first}")
                ]
        if row_problems:
            problems += row_problems
            continue
        assert row is not None
        rows.append(row)
        seen[(row.platform, row.handle)] = number
        if row.source_code:
            codes[row.source_code] = number
    return rows, problems


def read_roster(path: Path, spec: CampaignSpec) -> tuple[list[RosterRow], list[RowProblem]]:
    """Read a roster CSV (UTF-8, Excel's BOM welcome). A missing column fails the whole file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [_column(name) for name in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                found = ", ".join(header) or "none"
                raise RallyError(
                    f"{path}: missing column {', '.join(missing)} (columns found: {found})"
                )
            reader.fieldnames = header
            return parse_roster(reader, spec)
    except (OSError, UnicodeDecodeError) as exc:
        raise RallyError(f"{path}: cannot read: {exc}") from None


def _column(name: str) -> str:
    key = re.sub(r"\s+", "_", name.strip().lower())
    return COLUMN_ALIASES.get(key, key)


# --- codes and links ------------------------------------------------------------------------


def tracking_code(slug: str, platform: str, handle: str) -> str:
    """A stable, short, URL-safe code for the creator's `/t/<code>` link."""
    digest = hashlib.sha256(f"{slug}:{platform}:{handle}".encode()).digest()
    return base64.b32encode(digest).decode()[:10].lower()


def tracking_url(spec: CampaignSpec, platform: str, handle: str) -> str:
    """The landing page with the creator's UTM tags (content = their handle)."""
    parts = urlsplit(spec.tracking.landing_url)
    utm = urlencode(
        {
            "utm_source": platform,
            "utm_medium": spec.tracking.utm_medium,
            "utm_campaign": spec.slug,
            "utm_content": handle,
        }
    )
    query = f"{parts.query}&{utm}" if parts.query else utm
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _source_code(handle: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Z0-9]", "", handle.upper())[:12] or "CREATOR"
    code, n = base, 1
    while code in taken:
        n += 1
        code = f"{base}{n}"
    return code


# --- import ---------------------------------------------------------------------------------


@dataclass
class RosterChange:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated)


def _diff(obj: Any, values: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {k: [getattr(obj, k), v] for k, v in values.items() if getattr(obj, k) != v}


def _apply(obj: Any, diff: Mapping[str, list[Any]]) -> None:
    for key, (_, new) in diff.items():
        setattr(obj, key, new)
    obj.updated_at = utcnow()


def _existing_creators(session: Session, rows: list[RosterRow]) -> dict[tuple[str, str], Creator]:
    found: dict[tuple[str, str], Creator] = {}
    for platform in {r.platform for r in rows}:
        handles = [r.handle for r in rows if r.platform == platform]
        for start in range(0, len(handles), 500):
            chunk = handles[start : start + 500]
            query = select(Creator).where(
                Creator.platform == platform, col(Creator.handle).in_(chunk)
            )
            found.update({(c.platform, c.handle): c for c in session.exec(query)})
    return found


class _RosterImport:
    """One import run: the campaign's current roster in memory, changes collected for audit."""

    def __init__(
        self, session: Session, campaign: Campaign, spec: CampaignSpec, actor: str
    ) -> None:
        assert campaign.id is not None
        self.session, self.campaign_id, self.spec, self.actor = session, campaign.id, spec, actor
        query = select(RosterMember).where(RosterMember.campaign_id == campaign.id)
        self.members = {m.creator_id: m for m in session.exec(query)}
        self.codes = {m.source_code: m.creator_id for m in self.members.values()}
        self.changes: list[Change] = []
        self.result = RosterChange()

    def creator(self, row: RosterRow, creator: Creator | None) -> tuple[Creator, bool]:
        fields: dict[str, Any] = {
            "name": row.name,
            "email": row.email,
            "phone": row.phone,
            "followers": row.followers,
            "attributes": row.attributes,
        }
        if creator is None:
            creator = Creator(platform=row.platform, handle=row.handle, **fields)
            self.session.add(creator)
            self.session.flush()
            summary = f"new creator @{row.handle} on {row.platform}"
            self.changes.append(
                Change(self.actor, "creator.created", "creator", creator.id or 0, summary, fields)
            )
            return creator, True
        diff = _diff(creator, fields)
        if diff:
            _apply(creator, diff)
            summary = f"@{row.handle}: {', '.join(diff)} changed"
            self.changes.append(
                Change(self.actor, "creator.updated", "creator", creator.id or 0, summary, diff)
            )
        return creator, bool(diff)

    def member(self, row: RosterRow, creator_id: int) -> str:
        """Add or update the creator's place on the campaign; say which it was."""
        member = self.members.get(creator_id)
        terms: dict[str, Any] = {
            "segment": row.segment,
            "tier": row.tier,
            "rate_cents": row.rate_cents,
            "status": RosterStatus.ACTIVE.value,
        }
        if row.source_code:
            terms["source_code"] = row.source_code
        if member is None:
            terms.setdefault("source_code", _source_code(row.handle, set(self.codes)))
            code = tracking_code(self.spec.slug, row.platform, row.handle)
            member = RosterMember(
                campaign_id=self.campaign_id, creator_id=creator_id, tracking_code=code, **terms
            )
            self.session.add(member)
            self.session.flush()
            self.members[creator_id] = member
            self.codes[member.source_code] = creator_id
            summary = (
                f"@{row.handle} joined {self.spec.slug} ({row.segment}, {row.tier or 'no tier'})"
            )
            self.changes.append(
                Change(
                    self.actor,
                    "roster.added",
                    "roster_member",
                    member.id or 0,
                    summary,
                    {**terms, "creator_id": creator_id},
                )
            )
            return "added"
        diff = _diff(member, terms)
        if not diff:
            return "unchanged"
        _apply(member, diff)
        self.codes[member.source_code] = creator_id
        summary = f"@{row.handle} on {self.spec.slug}: {', '.join(diff)} changed"
        self.changes.append(
            Change(self.actor, "roster.updated", "roster_member", member.id or 0, summary, diff)
        )
        return "updated"

    def code_taken(self, row: RosterRow, creator: Creator | None) -> bool:
        holder = self.codes.get(row.source_code or "")
        return holder is not None and (creator is None or holder != creator.id)


def import_roster(
    session: Session, campaign: Campaign, spec: CampaignSpec, rows: list[RosterRow], *, actor: str
) -> RosterChange:
    """Upsert creators on (platform, handle) and their place on the campaign; audit each change."""
    run = _RosterImport(session, campaign, spec, actor)
    existing = _existing_creators(session, rows)
    for row in rows:
        found = existing.get((row.platform, row.handle))
        if run.code_taken(row, found):
            run.result.problems.append(
                RowProblem(
                    row.row,
                    row.handle,
                    "source_code",
                    f"{row.source_code} already belongs to another creator on {spec.slug}",
                )
            )
            continue
        creator, creator_changed = run.creator(row, found)
        assert creator.id is not None
        outcome = run.member(row, creator.id)
        if outcome == "added":
            run.result.added += 1
        elif outcome == "updated" or creator_changed:
            run.result.updated += 1
        else:
            run.result.unchanged += 1
    record(session, run.changes)
    return run.result

"""The creator's brief page beyond the brief itself: their drafts in plain words (each version
with its date, caption start, what the checks found and what reviewers asked), how far their
deliverables have got, the link and code to use, and whom to ask. Times are the campaign's."""

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from config.campaign import CampaignSpec, Contact
from store.models import (
    Campaign,
    Creative,
    CreativeDraft,
    CreativeStatus,
    PolicyFinding,
    ReviewStatus,
    ReviewTask,
    RosterMember,
)
from tasks.briefs.inputs import long_date
from tasks.briefs.status import BriefPage
from tasks.campaigns.campaign import campaign_spec
from tasks.campaigns.configs import campaign_policy
from tasks.campaigns.plan import week_end, week_start

SUPERSEDED = "superseded"
# A status in plain words, and the badge it wears.
STATUS_WORDS: dict[str, tuple[str, str]] = {
    CreativeStatus.DRAFT: ("Not sent yet", ""),
    CreativeStatus.IN_REVIEW: ("Waiting for review", "warn"),
    CreativeStatus.CHANGES_REQUESTED: ("Changes requested", "bad"),
    CreativeStatus.APPROVED: ("Approved", "ok"),
    CreativeStatus.POSTED: ("Posted", "ok"),
    CreativeStatus.REJECTED: ("Not approved", "bad"),
    CreativeStatus.TAKEN_DOWN: ("No longer up", "bad"),
    SUPERSEDED: ("Replaced by a newer version", ""),
}
DECISION_WORDS = {
    ReviewStatus.APPROVED: "approved it",
    ReviewStatus.CHANGES_REQUESTED: "asked for changes",
    ReviewStatus.REJECTED: "did not approve it",
}
MAY_RESUBMIT = (CreativeStatus.CHANGES_REQUESTED, CreativeStatus.IN_REVIEW, CreativeStatus.DRAFT)
CAPTION_START = 90


def local_time(moment: datetime, timezone: str) -> str:
    """`Thu, Dec 3 at 10:15 AM EST`: a time as the campaign's people read it."""
    at = moment.astimezone(ZoneInfo(timezone))
    hour = at.hour % 12 or 12
    return f"{at:%a, %b} {at.day} at {hour}:{at:%M %p %Z}"


def creator_video_url(token: str, name: str) -> str:
    """Where the creator watches a video they uploaded, with their brief link's token (served
    by `web.briefs`; `tasks.review.uploads` keeps the file)."""
    return f"/briefs/{token}/videos/{name}"


def _shorten(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"


def caption_start(caption: str, disclosure: str) -> tuple[str, bool]:
    """How a caption starts, past the disclosure every caption opens with (True when it was
    skipped): what tells one version from another at a glance."""
    flat, opening = " ".join(caption.split()), " ".join(disclosure.split())
    if opening and flat.lower().startswith(opening.lower()) and flat[len(opening) :].strip():
        return _shorten(flat[len(opening) :].strip(), CAPTION_START), True
    return _shorten(flat, CAPTION_START), False


def caption_change(before: str, after: str) -> str:
    """What a version changed in the caption, in words: `added "Code MAYA"; removed "…"`."""
    old, new = before.split(), after.split()
    added, removed = [], []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            removed.append(" ".join(old[i1:i2]))
        if op in ("replace", "insert"):
            added.append(" ".join(new[j1:j2]))
    said = [
        f"{verb} "
        + ", ".join(f"“{_shorten(words, 40)}”" for words in found[:3])
        + (" and more" if len(found) > 3 else "")
        for verb, found in (("added", added), ("removed", removed))
        if found
    ]
    return "; ".join(said) if said else "the same caption"


@dataclass(frozen=True)
class Links:
    short_link: str  # Rally's own /t/<code>: clicks are counted, then go on to the landing page
    source_code: str
    disclosure: str  # the line every caption starts with


@dataclass(frozen=True)
class Portal:
    creatives: list[dict[str, Any]]  # oldest first: "Video 1" is the first one made
    tracker: dict[str, Any]
    links: Links
    contact: Contact | None
    timezone: str
    acknowledged_at: str | None
    draft_due: str
    posting: str


def disclosure_line(spec: CampaignSpec) -> str:
    """What a caption starts with: #ad, and for a committee's political posts its disclaimer."""
    if spec.political and spec.committee:
        return f"#ad {spec.committee.paid_for_by}"
    return "#ad"


def creator_portal(session: Session, page: BriefPage, *, token: str, public_url: str) -> Portal:
    campaign = session.get(Campaign, page.brief.campaign_id)
    member = session.get(RosterMember, page.brief.member_id)
    assert campaign is not None and member is not None
    spec = campaign_spec(campaign)
    tiers = {t.id: t.name for t in campaign_policy(session, campaign).spec.tiers}
    disclosure = disclosure_line(spec)
    creatives = _creatives(session, member.id or 0, spec, tiers, token, disclosure)
    brief = spec.brief
    first, last = brief.posting_weeks
    acknowledged = page.brief.acknowledged_at
    return Portal(
        creatives=creatives,
        tracker=tracker(creatives, brief.deliverables.count),
        links=Links(f"{public_url}/t/{member.tracking_code}", member.source_code, disclosure),
        contact=spec.contact,
        timezone=spec.timezone,
        acknowledged_at=local_time(acknowledged, spec.timezone) if acknowledged else None,
        draft_due=long_date(week_end(spec.sprint.start, brief.draft_due_week)),
        posting=f"{long_date(week_start(spec.sprint.start, first))} to "
        f"{long_date(week_end(spec.sprint.start, last))}",
    )


def tracker(creatives: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """How far the deliverables have got, in words ("1 of 3 approved, 1 posted") and as a
    share for the meter."""
    statuses = [c["status"] for c in creatives]
    approved = sum(
        s in (CreativeStatus.APPROVED, CreativeStatus.POSTED, CreativeStatus.TAKEN_DOWN)
        for s in statuses
    )
    posted = statuses.count(CreativeStatus.POSTED)
    waiting = statuses.count(CreativeStatus.IN_REVIEW)
    changes = statuses.count(CreativeStatus.CHANGES_REQUESTED)
    to_start = max(count - approved - waiting - changes, 0)
    details = [
        f"{waiting} waiting for review" if waiting else "",
        f"{changes} with changes requested" if changes else "",
        f"{to_start} still to send" if to_start else "",
    ]
    return {
        "summary": f"{approved} of {count} approved, {posted} posted",
        "details": ", ".join(d for d in details if d),
        "approved": approved,
        "count": count,
        "percent": min(100, round(100 * approved / count)),
    }


@dataclass(frozen=True)
class _Seen:
    """What the versions of a creator's drafts are shown with."""

    failed: Sequence[PolicyFinding]
    decided: Sequence[ReviewTask]
    tiers: dict[str, str]  # tier id -> its name ("Internal review")
    timezone: str
    token: str
    disclosure: str


def _creatives(
    session: Session,
    member_id: int,
    spec: CampaignSpec,
    tiers: dict[str, str],
    token: str,
    disclosure: str,
) -> list[dict[str, Any]]:
    creatives = session.exec(
        select(Creative).where(Creative.member_id == member_id).order_by(col(Creative.id))
    ).all()
    drafts = session.exec(
        select(CreativeDraft)
        .where(col(CreativeDraft.creative_id).in_([c.id for c in creatives]))
        .order_by(col(CreativeDraft.version).desc())
    ).all()
    ids = [d.id for d in drafts]
    failed = session.exec(
        select(PolicyFinding).where(
            col(PolicyFinding.draft_id).in_(ids), col(PolicyFinding.passed).is_(False)
        )
    ).all()
    decided = session.exec(
        select(ReviewTask)
        .where(
            col(ReviewTask.draft_id).in_(ids),
            col(ReviewTask.status).in_(list(DECISION_WORDS)),
        )
        .order_by(col(ReviewTask.position))
    ).all()
    seen = _Seen(failed, decided, tiers, spec.timezone, token, disclosure)
    shown = []
    for number, creative in enumerate(creatives, start=1):
        own = [d for d in drafts if d.creative_id == creative.id]  # newest first
        versions = [
            _version(d, own[i + 1] if i + 1 < len(own) else None, seen) for i, d in enumerate(own)
        ]
        if not versions:
            continue
        shown.append(_creative(number, creative, versions, drafts, spec.timezone))
    return shown


def _creative(
    number: int,
    creative: Creative,
    versions: list[dict[str, Any]],
    drafts: Any,
    timezone: str,
) -> dict[str, Any]:
    current = next(d for d in drafts if d.creative_id == creative.id)  # newest first
    words, badge = STATUS_WORDS.get(creative.status, (creative.status, ""))
    return {
        "id": creative.id,
        "name": f"Video {number}",
        "status": creative.status,
        "words": words,
        "badge": badge,
        "next": _next_step(creative, current.version, timezone),
        "versions": versions,
        "may_resubmit": creative.status in MAY_RESUBMIT,
        "needs_fixing": creative.status in (CreativeStatus.CHANGES_REQUESTED, CreativeStatus.DRAFT),
        "posted_url": creative.posted_url,
        # What the form starts from when this creative's next version is sent.
        "caption": current.caption,
        "script": current.script or "",
        "video_url": current.video_url or "",
        "video_file": current.video_file,
        "duration_seconds": current.duration_seconds,
        "paid": current.paid,
        "ai_generated": current.ai_generated,
    }


def _next_step(creative: Creative, version: int, timezone: str) -> str:
    status = creative.status
    if status == CreativeStatus.IN_REVIEW:
        return f"Your version {version} is in review: you will get an email when it is decided."
    if status == CreativeStatus.CHANGES_REQUESTED:
        return (
            f"Your version {version} needs changes: see the notes below, then send a new version."
        )
    if status == CreativeStatus.APPROVED:
        return (
            f"Your version {version} is approved: post it as approved, unchanged, "
            "in the posting window."
        )
    if status == CreativeStatus.POSTED:
        when = local_time(creative.posted_at, timezone) if creative.posted_at else ""
        return f"Posted{' on ' + when if when else ''}. Thank you!"
    if status == CreativeStatus.REJECTED:
        return "This video will not run. You can start a new one."
    if status == CreativeStatus.TAKEN_DOWN:
        return "It was posted, but is no longer up."
    return "Not sent for review yet."


def _version(draft: CreativeDraft, previous: CreativeDraft | None, seen: _Seen) -> dict[str, Any]:
    words, badge = STATUS_WORDS.get(draft.status, (draft.status, ""))
    start, past_disclosure = caption_start(draft.caption, seen.disclosure)
    findings = [f for f in seen.failed if f.draft_id == draft.id]
    return {
        "version": draft.version,
        "sent": local_time(draft.submitted_at, seen.timezone),
        "sent_iso": draft.submitted_at.isoformat(),
        "words": words,
        "badge": badge,
        "caption_start": start,
        "past_disclosure": past_disclosure,
        "changed": caption_change(previous.caption, draft.caption) if previous else None,
        "video_url": draft.video_url,
        "video": creator_video_url(seen.token, draft.video_file) if draft.video_file else None,
        "must_fix": [f.message for f in findings if f.severity == "block"],
        "to_check": [f.message for f in findings if f.severity != "block"],
        "notes": [
            {
                "who": seen.tiers.get(t.tier, "The reviewers"),
                "said": DECISION_WORDS[ReviewStatus(t.status)],
                "note": t.note,
                "badge": "ok" if t.status == ReviewStatus.APPROVED else "bad",
            }
            for t in seen.decided
            if t.draft_id == draft.id and (t.note or t.status != ReviewStatus.APPROVED)
        ],
    }


# --- the brief's sections, folded ------------------------------------------------------------

_H2 = re.compile(r"<h2(?:\s[^>]*)?>(.*?)</h2>", re.S | re.I)
_ARTICLE = re.compile(r"^\s*<article[^>]*>(.*)</article>\s*$", re.S | re.I)
OPEN_WORDS = ("key message", "deliverables", "disclosure")
VOID = {"br", "hr", "img", "input", "meta", "link", "wbr", "col", "source", "area", "base"}


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.depth, self.broken = 0, False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in VOID:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID:
            self.depth -= 1
            self.broken = self.broken or self.depth < 0


def _balanced(fragment: str) -> bool:
    checker = _Balance()
    checker.feed(fragment)
    checker.close()
    return checker.depth == 0 and not checker.broken


@dataclass(frozen=True)
class Section:
    title: str  # as HTML, as the brief wrote it
    body: str
    open: bool
    anchor: str


def brief_sections(content_html: str) -> tuple[str, list[Section]]:
    """The brief's opening (its title and greeting) and its sections, one per `<h2>`, to show
    folded: the first and the important ones (key message, deliverables, disclosures) open.
    A brief whose sections are not side by side at the top level is shown whole."""
    inner = _ARTICLE.match(content_html)
    body = inner[1] if inner else content_html
    heads = list(_H2.finditer(body))
    if not heads:
        return content_html, []
    cuts = [h.start() for h in heads] + [len(body)]
    prelude = body[: cuts[0]]
    sections = []
    for i, head in enumerate(heads):
        text = body[head.end() : cuts[i + 1]]
        if not (_balanced(text) and _balanced(head[1])):
            return content_html, []
        plain = html.unescape(re.sub(r"<[^>]+>", "", head[1])).lower()
        important = i == 0 or any(word in plain for word in OPEN_WORDS)
        anchor = "section-" + (re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:40] or str(i))
        sections.append(Section(head[1], text, important, anchor))
    if not _balanced(prelude):
        return content_html, []
    return prelude, sections

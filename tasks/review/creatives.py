"""Creatives: a creator's drafts, checked by the campaign's policy and routed to review, then
posted; and the chain of custody from brief to post.

A blocking finding sends a draft straight back to its creator with the reasons, so no reviewer
spends time on it. A resubmission is the creative's next version and starts at the first tier.
"""

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.errors import RallyError
from config.policy import TierSpec
from store.audit import Change, record
from store.bulk import insert_rows
from store.models import (
    Brief,
    Campaign,
    Creative,
    CreativeDraft,
    CreativeStatus,
    Creator,
    PolicyFinding,
    ReviewTask,
    RosterMember,
)
from tasks.campaigns.campaign import campaign_spec, get_campaign, roster_member
from tasks.campaigns.configs import campaign_policy
from tasks.review.checks import DraftFacts, Finding, evaluate
from tasks.review.routing import cancel_tasks, notify_creator, open_task, route
from tasks.webhooks.events import Event, emit, iso

SUPERSEDED = "superseded"  # a draft's status once a newer version replaced it in review
MAX_SECONDS = 3600
MAX_ID = 2**31 - 1  # the store's ids are 32-bit


@dataclass(frozen=True)
class Submission:
    caption: str
    script: str = ""
    video_url: str | None = None
    duration_seconds: float | None = None
    paid: bool = False
    ai_generated: bool = False
    title: str | None = None


@dataclass
class Submitted:
    creative_id: int
    version: int
    findings: list[Finding]
    blocked: bool
    tiers: list[str] = field(default_factory=list)
    policy_version: str = ""
    open_task: int | None = None  # the first tier's task, now open


def _member(session: Session, campaign: Campaign, handle: str) -> tuple[RosterMember, Creator]:
    found = roster_member(session, campaign, handle.removeprefix("@"), active=True)
    if found is None:
        raise RallyError(f"@{handle.removeprefix('@')} is not on the roster of {campaign.slug}")
    return found


def facts_for(
    spec: CampaignSpec, member: RosterMember, creator: Creator, s: Submission
) -> DraftFacts:
    tier = spec.tiers.get(member.tier or "")
    # Sponsored: the creator is paid for it, or it runs as a paid placement.
    sponsored = bool(member.rate_cents or (tier and tier.rate) or s.paid)
    return DraftFacts(
        caption=s.caption,
        script=s.script,
        duration_seconds=s.duration_seconds,
        paid=s.paid,
        ai_generated=s.ai_generated,
        sponsored=sponsored,
        political=spec.political,
        platform=creator.platform,
        committee_name=spec.committee.name if spec.committee else None,
        disclaimer=spec.committee.paid_for_by if spec.committee else None,
        tracking_markers=(
            member.tracking_code,
            member.source_code,
            f"utm_content={creator.handle}",
        ),
        deliverable_length=spec.brief.deliverables.length,
    )


def _creative(
    session: Session, campaign: Campaign, member: RosterMember, creative_id: int | None, title: str
) -> Creative:
    if creative_id is None:
        creative = Creative(campaign_id=campaign.id or 0, member_id=member.id or 0, title=title)
        session.add(creative)
        session.flush()
        return creative
    found = session.get(Creative, creative_id)
    if found is None or found.member_id != member.id:
        raise RallyError(f"no creative {creative_id} of this creator on {campaign.slug}")
    creative = found
    if creative.status in (
        CreativeStatus.APPROVED,
        CreativeStatus.REJECTED,
        CreativeStatus.POSTED,
        CreativeStatus.TAKEN_DOWN,
    ):
        raise RallyError(
            f"creative {creative_id} is {creative.status}: submit a new creative instead"
        )
    return creative


def submit(
    session: Session,
    *,
    slug: str,
    handle: str,
    submission: Submission,
    submitted_by: str,
    now: datetime,
    creative_id: int | None = None,
    public_url: str = "",
) -> Submitted:
    """Check a draft against the policy, then route it to review or back to the creator."""
    seconds = submission.duration_seconds
    if seconds is not None and not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise RallyError(
            f"duration: a video's length in seconds, more than 0 and at most {MAX_SECONDS} "
            f"(got {seconds})"
        )
    if creative_id is not None and not 0 < creative_id <= MAX_ID:
        raise RallyError(f"creative: no creative {creative_id}")
    url = submission.video_url
    if url and not url.lower().startswith(("https://", "http://")):
        raise RallyError("video_url: a web address (https://...) of the video, or none")
    campaign = get_campaign(session, slug)
    spec = campaign_spec(campaign)
    policy = campaign_policy(session, campaign)
    member, creator = _member(session, campaign, handle)
    title = submission.title or f"Video by @{creator.handle}"
    creative = _creative(session, campaign, member, creative_id, title)
    draft = _next_draft(session, creative, member, submission, submitted_by, now)
    facts = facts_for(spec, member, creator, submission)
    findings = evaluate(policy, facts)
    _store_findings(session, draft, findings, policy.version, now)
    blocking = [f for f in findings if not f.passed and f.severity == "block"]
    result = Submitted(
        creative.id or 0, draft.version, findings, bool(blocking), [], policy.version
    )
    if blocking:
        draft.status = creative.status = CreativeStatus.CHANGES_REQUESTED
        _tell_creator(session, member, draft, blocking)
    else:
        tiers = route(policy, facts, findings, f"{campaign.slug}:{creative.id}")
        tiers = tiers or policy.spec.tiers[:1]  # every creative gets at least the first tier
        result.tiers = [t.id for t in tiers]
        draft.status = creative.status = CreativeStatus.IN_REVIEW
        result.open_task = _open_review(
            session, draft, tiers, policy.version, spec, now, public_url
        )
    session.add_all([draft, creative])
    _audit_submission(session, campaign, creator, draft, creative, result, submitted_by)
    tell(session, creative, "submitted", now, waiting_on=result.tiers[0] if result.tiers else None)
    return result


def tell(
    session: Session,
    creative: Creative,
    kind: str,
    now: datetime,
    *,
    occurrence: str = "",
    **data: Any,
) -> None:
    """Emit `creative.<kind>` to the campaign's webhooks, once per version of the creative
    (or per `occurrence`, for what may happen more than once to a version): its id, creator,
    status and version with `data`."""
    member = session.get(RosterMember, creative.member_id)
    creator = session.get(Creator, member.creator_id) if member else None
    version = creative.current_version
    said = {"creative": creative.id, "creator": creator.handle if creator else None}
    said |= {"title": creative.title, "status": str(creative.status), "version": version}
    said |= {**data, "at": iso(now)}
    key = f"creative:{creative.id}:{kind}:{version}" + (f":{occurrence}" if occurrence else "")
    subject = f"creative:{creative.id}"
    event = Event(f"creative.{kind}", key, subject, "creatives", said)
    emit(session, creative.campaign_id, [event], at=now)


def _next_draft(
    session: Session,
    creative: Creative,
    member: RosterMember,
    submission: Submission,
    submitted_by: str,
    now: datetime,
) -> CreativeDraft:
    """The creative's next version, stored against the creator's latest brief. A version
    submitted while the previous one is in review supersedes it: that review's tasks close."""
    if creative.status == CreativeStatus.IN_REVIEW:
        previous = _current_draft(session, creative)
        if previous is not None:
            cancel_tasks(session, previous.id or 0, now=now)
            previous.status = SUPERSEDED  # no longer what is reviewed
            session.add(previous)
    creative.current_version += 1
    creative.updated_at = now
    draft = CreativeDraft(
        creative_id=creative.id or 0,
        version=creative.current_version,
        brief_id=_latest_brief_id(session, member),
        caption=submission.caption,
        script=submission.script or None,
        video_url=submission.video_url,
        duration_seconds=submission.duration_seconds,
        paid=submission.paid,
        ai_generated=submission.ai_generated,
        submitted_by=submitted_by.strip().lower(),
        submitted_at=now,
    )
    session.add(draft)
    session.flush()
    return draft


def _latest_brief_id(session: Session, member: RosterMember) -> int | None:
    """The brief the draft answers: the creator's latest version, for the chain of custody."""
    return session.exec(
        select(Brief.id)
        .where(Brief.member_id == member.id)
        .order_by(col(Brief.version).desc())
        .limit(1)
    ).first()


def _store_findings(
    session: Session,
    draft: CreativeDraft,
    findings: list[Finding],
    policy_version: str,
    now: datetime,
) -> None:
    insert_rows(
        session,
        PolicyFinding,
        [
            {
                "draft_id": draft.id or 0,
                "rule_id": f.rule_id,
                "severity": f.severity,
                "passed": f.passed,
                "message": f.message,
                "policy_version": policy_version,
                "created_at": now,
            }
            for f in findings
        ],
    )


def _open_review(
    session: Session,
    draft: CreativeDraft,
    tiers: list[TierSpec],
    policy_version: str,
    spec: CampaignSpec,
    now: datetime,
    public_url: str,
) -> int | None:
    """A task per tier, in order; only the first opens now (its timers, its emails), the
    others wait for the tier before them. Returns the open task's id."""
    tasks = [
        ReviewTask(
            draft_id=draft.id or 0,
            tier=tier.id,
            position=i,
            approver_group=tier.group,
            policy_version=policy_version,
            created_at=now,
        )
        for i, tier in enumerate(tiers)
    ]
    session.add_all(tasks)
    session.flush()
    open_task(session, tasks[0], tiers[0], spec, now=now, public_url=public_url)
    return tasks[0].id


def _current_draft(session: Session, creative: Creative) -> CreativeDraft | None:
    return session.exec(
        select(CreativeDraft).where(
            CreativeDraft.creative_id == creative.id,
            CreativeDraft.version == creative.current_version,
        )
    ).first()


def _tell_creator(
    session: Session, member: RosterMember, draft: CreativeDraft, blocking: list[Finding]
) -> None:
    reasons = "\n".join(f"- {f.message} ({f.rule_id})" for f in blocking)
    notify_creator(
        session,
        member.id or 0,
        key=f"draft:{draft.id}:returned",
        subject=f"Your draft (version {draft.version}) needs changes before review",
        text=f" please fix these and submit again:\n{reasons}\n",
    )


def _audit_submission(
    session: Session,
    campaign: Campaign,
    creator: Creator,
    draft: CreativeDraft,
    creative: Creative,
    result: Submitted,
    actor: str,
) -> None:
    failed = [f.rule_id for f in result.findings if not f.passed]
    outcome = "sent back to the creator" if result.blocked else f"to {', '.join(result.tiers)}"
    summary = (
        f"@{creator.handle} submitted creative {creative.id} v{draft.version} on "
        f"{campaign.slug}: {outcome}"
    )
    details: dict[str, Any] = {
        "version": draft.version,
        "brief_id": draft.brief_id,
        "caption": draft.caption,
        "video_url": draft.video_url,
        "policy_version": result.policy_version,
        "failed_rules": failed,
        "tiers": result.tiers,
    }
    record(
        session,
        [Change(actor, "creative.submitted", "creative", creative.id or 0, summary, details)],
    )


def video_id(url: str) -> str | None:
    """The platform's id of a posted video, from its URL (`tiktok.com/@someone/video/<id>`):
    the key its comments and metrics are polled by."""
    found = re.search(r"tiktok\.com/@[^/?#]+/video/(\d+)", url)
    return found[1] if found else None


def check_post_url(url: str, creator: Creator) -> None:
    """RallyError unless `url` is a web address, and for a TikTok creator a video of their own
    account (`https://www.tiktok.com/@HANDLE/video/ID`: a short link hides the account)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RallyError(f"url: a web address of the posted video, please (got {url!r})")
    if creator.platform != "tiktok":
        return
    found = re.fullmatch(r"/@([^/?#]+)/video/(\d+)/?", parts.path)
    if not parts.hostname.endswith("tiktok.com") or found is None:
        raise RallyError(
            f"url: a TikTok video's address, https://www.tiktok.com/@{creator.handle}/video/ID "
            f"(got {url!r}; a short link hides whose video it is)"
        )
    if found[1].lower() != creator.handle.lower():
        raise RallyError(f"url: that video is @{found[1]}'s, not @{creator.handle}'s (got {url!r})")


def posted(
    session: Session,
    *,
    creative_id: int,
    url: str,
    actor: str,
    now: datetime,
    force: bool = False,
) -> bool:
    """Record where and when a creative was posted; False (and flagged) if not yet approved.
    The address must be the creator's own video; one already recorded is replaced only with
    `force`."""
    creative = session.get(Creative, creative_id) if 0 < creative_id <= MAX_ID else None
    if creative is None:
        raise RallyError(f"no creative {creative_id}")
    member = session.get(RosterMember, creative.member_id)
    creator = session.get(Creator, member.creator_id) if member else None
    if creator is not None:
        check_post_url(url, creator)
    url = url.strip()
    if creative.posted_url and creative.posted_url != url and not force:
        raise RallyError(
            f"creative {creative_id} is recorded as posted at {creative.posted_url} already; "
            "give --force to replace it"
        )
    approved = creative.status in (
        CreativeStatus.APPROVED,
        CreativeStatus.POSTED,
        CreativeStatus.TAKEN_DOWN,  # posted again
    )
    repeated = creative.status == CreativeStatus.POSTED and creative.posted_url == url
    creative.posted_url, creative.posted_at, creative.updated_at = url, now, now
    creative.platform_video_id = video_id(url) or creative.platform_video_id
    if approved:
        creative.status = CreativeStatus.POSTED
    session.add(creative)
    action = "creative.posted" if approved else "creative.posted_before_approval"
    summary = f"creative {creative_id} posted at {url}" + ("" if approved else " BEFORE APPROVAL")
    record(
        session,
        [
            Change(
                actor,
                action,
                "creative",
                creative_id,
                summary,
                {"url": url, "status": creative.status},
            )
        ],
    )
    if approved and not repeated:  # where: for the API to say (events carry no links)
        tell(session, creative, "posted", now, occurrence=f"{now:%Y%m%dT%H%M%S%f}")
    return approved


def paid_facts(
    session: Session, spec: CampaignSpec, creative: Creative, draft: CreativeDraft
) -> DraftFacts:
    """What the policy checks of `draft` run as a paid placement (a boost)."""
    member = session.get(RosterMember, creative.member_id)
    creator = session.get(Creator, member.creator_id) if member else None
    assert member is not None and creator is not None
    as_paid = Submission(
        caption=draft.caption, script=draft.script or "", video_url=draft.video_url,
        duration_seconds=draft.duration_seconds, paid=True, ai_generated=draft.ai_generated,
    )  # fmt: skip
    return facts_for(spec, member, creator, as_paid)


def review_as_paid(
    session: Session,
    campaign: Campaign,
    creative: Creative,
    *,
    submitted_by: str,
    now: datetime,
    public_url: str = "",
) -> CreativeDraft:
    """The version of a posted creative that is reviewed as a paid placement (a boost): its
    latest if that was reviewed as paid already (submitted as paid, or sent here before), else
    a new version with the same content, checked by the policy as paid content and sent to
    the tiers paid content needs (those routed for `paid`; every routed one if none is). The
    creative stays posted (`decisions`). RallyError if the policy blocks it as paid."""
    latest = _current_draft(session, creative)
    if latest is None or creative.status not in (CreativeStatus.POSTED, CreativeStatus.TAKEN_DOWN):
        raise RallyError(f"creative {creative.id}: only a posted creative is boosted")
    if latest.paid:
        return latest
    spec, policy = campaign_spec(campaign), campaign_policy(session, campaign)
    facts = paid_facts(session, spec, creative, latest)
    findings = evaluate(policy, facts)
    blocking = [
        f"{f.rule_id}: {f.message}" for f in findings if not f.passed and f.severity == "block"
    ]
    if blocking:
        raise RallyError("policy: " + "; ".join(blocking))
    creative.current_version += 1
    draft = CreativeDraft(
        creative_id=creative.id or 0, version=creative.current_version, brief_id=latest.brief_id,
        caption=latest.caption, script=latest.script, video_url=latest.video_url,
        duration_seconds=latest.duration_seconds, paid=True, ai_generated=latest.ai_generated,
        submitted_by=submitted_by.strip().lower(), submitted_at=now, video_file=latest.video_file,
    )  # fmt: skip
    session.add_all([draft, creative])
    session.flush()
    _store_findings(session, draft, findings, policy.version, now)
    routed = route(policy, facts, findings, f"{campaign.slug}:{creative.id}")
    tiers = [t for t in routed if "paid" in t.when] or routed or policy.spec.tiers[:1]
    _open_review(session, draft, tiers, policy.version, spec, now, public_url)
    summary = (
        f"creative {creative.id} v{draft.version}: its posted version sent to "
        f"{', '.join(t.id for t in tiers)} review as a paid placement"
    )
    details = {
        "version": draft.version,
        "of_version": latest.version,
        "tiers": [t.id for t in tiers],
    }
    record(session, [Change(submitted_by, "creative.paid_review", "creative", creative.id or 0,
                            summary, details)])  # fmt: skip
    return draft

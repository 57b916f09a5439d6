"""The people of a rehearsal: creators who acknowledge briefs, submit drafts (some forgetting a
disclosure, then fixing it), post what is approved; and approvers who follow the policy.

Every choice comes from a random stream keyed by the seed and the person (and week), so a
rehearsal is the same on every run and does not depend on the order work is done in. They act
through the same service functions as real people do, so the store, the audit log and the
outbox hold exactly what a real sprint would.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from store.db import transaction
from store.models import (
    Campaign,
    Creative,
    CreativeDraft,
    CreativeStatus,
    Creator,
    ReviewStatus,
    ReviewTask,
    RosterMember,
    RosterStatus,
)
from tasks.briefs.contracts import Signature, offer, sign
from tasks.briefs.contracts import latest as latest_contract
from tasks.briefs.run import latest_briefs
from tasks.briefs.status import acknowledge
from tasks.campaigns.campaign import campaign_spec, get_campaign
from tasks.review.creatives import Submission, posted, submit
from tasks.review.decisions import decide
from tasks.review.routing import group_members

MISTAKE_RATE = 0.25  # first drafts that forget a disclosure
CHANGES_RATE = 0.05  # reviews that ask for a clearer call to action
BATCH = 200  # people per transaction


def stream(seed: int, *keys: object) -> random.Random:
    """A random stream of its own for one person (and week), the same on every run."""
    return random.Random(":".join(str(k) for k in (seed, *keys)))


@dataclass(frozen=True)
class Person:
    member_id: int
    handle: str
    email: str
    followers: int
    source_code: str
    tracking_code: str
    rate: float  # the creator's fee for the sprint
    holdout: bool


def roster(session: Session, campaign: Campaign, spec: CampaignSpec) -> list[Person]:
    rows = session.exec(
        select(RosterMember, Creator)
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(RosterMember.campaign_id == campaign.id, RosterMember.status == RosterStatus.ACTIVE)
        .order_by(col(RosterMember.id))
    ).all()
    people = []
    for member, creator in rows:
        tier = spec.tiers.get(member.tier or "")
        rate = member.rate_cents / 100 if member.rate_cents else (tier.rate if tier else 0.0)
        people.append(
            Person(
                member.id or 0,
                creator.handle,
                (creator.email or f"{creator.handle}@creators.example.org").lower(),
                creator.followers or 1000,
                member.source_code,
                member.tracking_code,
                float(rate),
                member.holdout,
            )
        )
    return people


def _at(start: datetime, rng: random.Random, days: float = 7.0) -> datetime:
    return start + timedelta(hours=rng.uniform(1, days * 24 - 1))


def acknowledge_briefs(engine: Engine, slug: str, week: int, seed: int, *, start: datetime) -> int:
    """Creators open their brief and acknowledge it: most in the first week, nearly all by the
    end of the second, a few never. The simulated staff offer the contracts first, and a
    creator who acknowledges their brief signs their contract on the same visit."""
    share = {1: 0.75, 2: 0.85}.get(week, 0.5)
    done = 0
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        offer(session, campaign, actor="rehearsal:staff", now=start)
        names = {
            member or 0: name or f"@{handle}"
            for member, name, handle in session.exec(
                select(RosterMember.id, Creator.name, Creator.handle)
                .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
                .where(
                    RosterMember.campaign_id == campaign.id,
                    RosterMember.status == RosterStatus.ACTIVE,
                )
            )
        }
        for member_id, brief in latest_briefs(session, list(names)).items():
            rng = stream(seed, "ack", member_id, week)
            if brief.sent_at is None or brief.acknowledged_at is not None or rng.random() > share:
                continue
            at = max(_at(start, rng), brief.sent_at + timedelta(minutes=5))
            acknowledge(session, brief.token, version=brief.version, now=at)
            contract = latest_contract(session, member_id)
            if contract is not None and contract.signed_at is None:
                signed = Signature(
                    contract.version, contract.text_hash, names[member_id], True,
                    "rehearsal", "Rally rehearsal",
                )  # fmt: skip
                sign(session, member_id, signed, now=at)
            done += 1
    return done


def spec_of(campaign: Campaign) -> CampaignSpec:
    return campaign_spec(campaign)


def caption(spec: CampaignSpec, person: Person, n: int, *, mistake: str = "") -> str:
    """A caption that meets the policy, or forgets one thing (`ad` or `paid_for_by`)."""
    parts = [] if mistake == "ad" else ["#ad"]
    parts.append(f"{spec.brief.key_message} {spec.brief.call_to_action}")
    parts.append(f"Code {person.source_code}.")
    parts.extend(spec.brief.hashtags[:2])
    if spec.committee and mistake != "paid_for_by":
        parts.append(spec.committee.paid_for_by)
    return f"Part {n}: " + " ".join(parts) if n > 1 else " ".join(parts)


def submit_first_drafts(
    engine: Engine, slug: str, seed: int, *, start: datetime, public_url: str
) -> dict[str, int]:
    """Every creator submits each deliverable in the draft week; a quarter of the drafts of a
    political campaign forget a disclosure, and the policy sends them straight back."""
    counts = {"submitted": 0, "blocked": 0}
    with transaction(engine, write=False) as session:
        campaign = get_campaign(session, slug)
        spec = spec_of(campaign)
        people = roster(session, campaign, spec)
    for offset in range(0, len(people), BATCH):
        with transaction(engine) as session:
            for person in people[offset : offset + BATCH]:
                _first_drafts(session, spec, slug, person, seed, start, public_url, counts)
    return counts


def _first_drafts(
    session: Session,
    spec: CampaignSpec,
    slug: str,
    person: Person,
    seed: int,
    start: datetime,
    public_url: str,
    counts: dict[str, int],
) -> None:
    rng = stream(seed, "drafts", person.member_id)
    for n in range(1, spec.brief.deliverables.count + 1):
        mistake = ""
        if spec.committee and rng.random() < MISTAKE_RATE:
            mistake = rng.choice(("ad", "paid_for_by"))
        result = submit(
            session,
            slug=slug,
            handle=person.handle,
            submission=Submission(
                caption=caption(spec, person, n, mistake=mistake),
                duration_seconds=rng.choice((18.0, 22.0, 27.0)),
                title=f"@{person.handle} video {n}",
            ),
            submitted_by=person.email,
            now=_at(start, rng, days=4),
            public_url=public_url,
        )
        counts["submitted"] += 1
        counts["blocked"] += result.blocked


def fix_returned(engine: Engine, slug: str, *, end: datetime, public_url: str) -> int:
    """Drafts sent back (by the policy or a reviewer) come back fixed a day later."""
    fixed = 0
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        spec = spec_of(campaign)
        people = {p.member_id: p for p in roster(session, campaign, spec)}
        returned = session.exec(
            select(Creative, CreativeDraft)
            .join(CreativeDraft, col(CreativeDraft.creative_id) == col(Creative.id))
            .where(
                Creative.campaign_id == campaign.id,
                Creative.status == CreativeStatus.CHANGES_REQUESTED,
                CreativeDraft.version == Creative.current_version,
            )
            .order_by(col(Creative.id))
        ).all()
        for creative, draft in returned:
            person = people.get(creative.member_id)
            if person is None:
                continue
            submit(
                session,
                slug=slug,
                handle=person.handle,
                submission=Submission(
                    caption=caption(spec, person, _number(creative)),
                    duration_seconds=draft.duration_seconds,
                    title=creative.title,
                ),
                submitted_by=person.email,
                now=min(draft.submitted_at + timedelta(days=1), end - timedelta(hours=2)),
                creative_id=creative.id,
                public_url=public_url,
            )
            fixed += 1
    return fixed


def _number(creative: Creative) -> int:
    """Which of the creator's deliverables this is, from its title (`@handle video N`)."""
    last = creative.title.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 1


def review_open_tasks(
    engine: Engine, slug: str, seed: int, *, until: datetime, public_url: str
) -> dict[str, int]:
    """Approvers decide every open task within a day, as the policy asks: approve what reached
    them, now and then asking for a clearer call to action. Approving one tier opens the next,
    so this goes round until nothing is open."""
    counts: dict[str, int] = {}
    while True:
        with transaction(engine) as session:
            campaign = get_campaign(session, slug)
            spec = spec_of(campaign)
            tasks = session.exec(
                select(ReviewTask)
                .join(CreativeDraft, col(CreativeDraft.id) == col(ReviewTask.draft_id))
                .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
                .where(Creative.campaign_id == campaign.id, ReviewTask.status == ReviewStatus.OPEN)
                .order_by(col(ReviewTask.id))
                .limit(BATCH)
            ).all()
            if not tasks:
                return counts
            for task in tasks:
                rng = stream(seed, "review", task.id)
                opened = task.created_at if task.position == 0 else _opened(session, task)
                at = min(opened + timedelta(hours=rng.uniform(1, 20)), until)
                wanted = "request_changes" if rng.random() < CHANGES_RATE else "approve"
                decision = decide(
                    session,
                    task_id=task.id or 0,
                    decision=wanted,
                    approver=approver_for(session, spec, task),
                    now=at,
                    note="Make the call to action clearer" if wanted != "approve" else "",
                    confirmed=["all"],
                    public_url=public_url,
                )
                key = f"{task.tier}:{decision.task.status}"
                counts[key] = counts.get(key, 0) + 1


def _opened(session: Session, task: ReviewTask) -> datetime:
    """When a later tier's task opened: when the tier before it was decided."""
    before = session.exec(
        select(ReviewTask.decided_at).where(
            ReviewTask.draft_id == task.draft_id, ReviewTask.position == task.position - 1
        )
    ).first()
    return before or task.created_at


def approver_for(session: Session, spec: CampaignSpec, task: ReviewTask) -> str:
    """The first member of the task's group who has not decided another tier of this draft."""
    taken = set(
        session.exec(
            select(ReviewTask.decided_by).where(
                ReviewTask.draft_id == task.draft_id, col(ReviewTask.decided_by).is_not(None)
            )
        ).all()
    )
    group = group_members(spec, task.approver_group)
    if task.escalated_to:
        group += group_members(spec, task.escalated_to)
    return next((email for email in group if email not in taken), group[0])


def post_approved(engine: Engine, slug: str, week: int, seed: int, *, start: datetime) -> int:
    """Creators post what is approved, spread over the posting weeks; one approved late goes up
    at once. The video's URL gives it the platform id its metrics are read by."""
    done = 0
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        spec = spec_of(campaign)
        first, last = spec.brief.posting_weeks
        if week < first:
            return 0
        count = spec.brief.deliverables.count
        rows = session.exec(
            select(Creative, Creator.handle)
            .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(Creative.campaign_id == campaign.id, Creative.status == CreativeStatus.APPROVED)
            .order_by(col(Creative.id))
        ).all()
        for creative, handle in rows:
            n = _number(creative)
            planned = first + (n - 1) * max(last - first, 0) // max(count - 1, 1)
            if planned > week:
                continue
            rng = stream(seed, "post", creative.id)
            video = f"7{creative.member_id:09d}{n:03d}"
            posted(
                session,
                creative_id=creative.id or 0,
                url=f"https://www.tiktok.com/@{handle}/video/{video}",
                actor=f"creator:@{handle}",
                now=_at(start, rng, days=5),
            )
            done += 1
    return done

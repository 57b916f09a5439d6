"""Human review of creatives: routing a checked draft to the policy's tiers, the decisions
approvers make, and the deadlines (reminder, then escalation; never approval by timeout).

A review is a state machine in the store: each tier of a draft is a `ReviewTask` that waits,
opens, and is decided. A decision takes effect in the caller's transaction: the next tier's
task opens, its timers are set and its approvers' emails are queued, all at once.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.errors import RallyError
from config.policy import Policy, TierSpec
from store.audit import Change, record
from store.bulk import insert_rows
from store.models import (
    Campaign,
    Creative,
    CreativeDraft,
    CreativeStatus,
    Creator,
    PolicyFinding,
    ReviewStatus,
    ReviewTask,
    RosterMember,
    Timer,
)
from tasks.campaigns import campaign_spec
from tasks.outbox import enqueue
from tasks.policy_checks import DraftFacts, Finding

REMINDER, ESCALATION = "review.reminder", "review.escalation"
DECISIONS = {
    "approve": ReviewStatus.APPROVED,
    "request_changes": ReviewStatus.CHANGES_REQUESTED,
    "reject": ReviewStatus.REJECTED,
}


class ReviewRefused(RallyError):
    """A decision Rally will not record, with the reason the approver needs."""


def in_sample(policy: Policy, key: str, rate: float) -> bool:
    """A reproducible draw: the same creative under the same policy is always in or out."""
    digest = hashlib.sha256(f"{policy.version}:{key}".encode()).hexdigest()
    return int(digest[:8], 16) / 0x1_0000_0000 < rate


def route(policy: Policy, facts: DraftFacts, findings: list[Finding], key: str) -> list[TierSpec]:
    """The tiers this draft goes through, in the policy's order."""
    warned = any(not f.passed and f.severity == "warn" for f in findings)
    flags = {
        "always": True,
        "paid": facts.paid,
        "political": facts.political,
        "sponsored": facts.sponsored,
        "ai_generated": facts.ai_generated,
        "warning": warned,
    }
    return [
        tier
        for tier in policy.spec.tiers
        if any(flags.get(reason, False) for reason in tier.when)
        or ("sample" in tier.when and in_sample(policy, key, tier.sample_rate))
    ]


def group_members(spec: CampaignSpec, group: str | None) -> list[str]:
    return list(spec.approvers.get(group or "", []))


def open_task(
    session: Session,
    task: ReviewTask,
    tier: TierSpec,
    spec: CampaignSpec,
    *,
    now: datetime,
    public_url: str = "",
) -> None:
    """Open a tier's task: its deadline, its reminder and escalation timers, its emails."""
    task.status = ReviewStatus.OPEN
    task.due_at = now + timedelta(hours=tier.deadline_hours)
    session.add(task)
    reminder_at = task.due_at - timedelta(hours=tier.reminder_before_hours)
    insert_rows(
        session,
        Timer,
        [
            {"kind": kind, "entity_type": "review_task", "entity_id": str(task.id), "due_at": due}
            for kind, due in ((REMINDER, reminder_at), (ESCALATION, task.due_at))
            if kind == ESCALATION or (tier.reminder_before_hours and reminder_at > now)
        ],
    )
    notify_approvers(
        session,
        group_members(spec, tier.group),
        task,
        key=f"review:{task.id}:assigned",
        subject=f"Review needed: {tier.name} of creative {task.draft_id}",
        text=f"A draft waits for your {tier.name.lower()}, due {task.due_at:%Y-%m-%d %H:%M} UTC.",
        now=now,
        public_url=public_url,
    )


def notify(session: Session, to: list[str], *, key: str, subject: str, text: str) -> int:
    """Queue one plain email per recipient through the outbox (idempotent per key)."""
    return enqueue(
        session, [review_email(address, key=key, subject=subject, text=text) for address in to]
    )


def review_email(address: str, *, key: str, subject: str, text: str) -> dict[str, Any]:
    return {
        "channel": "email",
        "destination": "reviewer",
        "idempotency_key": f"{key}:{address}",
        "subject_type": "review",
        "subject_id": key,
        "payload": {"to": address, "subject": subject, "text": text, "html": ""},
    }


def notify_approvers(
    session: Session,
    to: list[str],
    task: ReviewTask,
    *,
    key: str,
    subject: str,
    text: str,
    now: datetime,
    public_url: str,
) -> None:
    """One email per approver, each with their own single-use sign-in link to the task."""
    from tasks.approver_auth import sign_in_link

    emails = []
    for address in to:
        how = f"Review it with: rally review show {task.id}"
        if public_url:
            link = sign_in_link(
                session,
                address,
                public_url=public_url,
                now=now,
                next_path=f"/review/tasks/{task.id}",
            )
            how = f"Open it (the link signs you in once): {link}\nOr: rally review show {task.id}"
        emails.append(review_email(address, key=key, subject=subject, text=f"{text}\n{how}\n"))
    enqueue(session, emails)


@dataclass
class Decision:
    task: ReviewTask
    creative: Creative
    applied: bool  # False when the same decision had already been recorded
    next_tier: str | None = None


def campaign_of_task(session: Session, task_id: int) -> Campaign | None:
    """The campaign a review task belongs to (None for an unknown task)."""
    task = session.get(ReviewTask, task_id)
    draft = session.get(CreativeDraft, task.draft_id) if task else None
    creative = session.get(Creative, draft.creative_id) if draft else None
    return session.get(Campaign, creative.campaign_id) if creative else None


def _context(session: Session, task: ReviewTask) -> tuple[CreativeDraft, Creative, CampaignSpec]:
    draft = session.get(CreativeDraft, task.draft_id)
    assert draft is not None
    creative = session.get(Creative, draft.creative_id)
    assert creative is not None
    campaign = session.get(Campaign, creative.campaign_id)
    assert campaign is not None
    return draft, creative, campaign_spec(campaign)


def _authors(session: Session, creative: Creative) -> set[str]:
    """Everyone who made this creative: its creator (by roster email) and every submitter."""
    member = session.get(RosterMember, creative.member_id)
    creator = session.get(Creator, member.creator_id) if member else None
    submitters = session.exec(
        select(CreativeDraft.submitted_by).where(CreativeDraft.creative_id == creative.id)
    ).all()
    return {s.lower() for s in submitters} | (
        {creator.email.lower()} if creator and creator.email else set()
    )


def _check_may_decide(
    session: Session,
    task: ReviewTask,
    draft: CreativeDraft,
    creative: Creative,
    spec: CampaignSpec,
    **ask: Any,
) -> None:
    approver, version = ask["approver"], ask["version"]
    allowed = group_members(spec, task.approver_group)
    if task.escalated_to:
        allowed += group_members(spec, task.escalated_to)
    if approver not in allowed:
        raise ReviewRefused(
            f"{approver} is not in the {task.approver_group} group, which decides task {task.id}"
        )
    if approver in _authors(session, creative):
        raise ReviewRefused(
            f"{approver} made or submitted this creative: someone else must review it"
        )
    other_tier = session.exec(
        select(ReviewTask.tier).where(
            ReviewTask.draft_id == draft.id,
            ReviewTask.id != task.id,
            ReviewTask.decided_by == approver,
        )
    ).first()
    if other_tier is not None:
        raise ReviewRefused(
            f"{approver} already decided the {other_tier} review of this version: "
            "each tier needs a different approver"
        )
    current = creative.current_version
    if draft.version != current:
        raise ReviewRefused(
            f"task {task.id} is for version {draft.version} of creative {creative.id}, which is "
            f"outdated: version {current} was submitted since; review that one"
        )
    if version is not None and version != draft.version:
        raise ReviewRefused(
            f"version {version} is not the one in review: task {task.id} is for version "
            f"{draft.version} of creative {creative.id}"
        )
    if task.status == ReviewStatus.WAITING:
        raise ReviewRefused(f"task {task.id} waits for an earlier tier to approve first")


def decide(
    session: Session,
    *,
    task_id: int,
    decision: str,
    approver: str,
    now: datetime,
    note: str = "",
    checklist: dict[str, bool] | None = None,
    version: int | None = None,
    policy: Policy,
    public_url: str = "",
) -> Decision:
    """Record an approver's decision and advance the creative; refusals say why."""
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise ReviewRefused(f"no review task {task_id}")
    draft, creative, spec = _context(session, task)
    approver = approver.strip().lower()
    wanted = DECISIONS[decision]
    if task.status not in (ReviewStatus.OPEN, ReviewStatus.WAITING):
        if task.status == wanted and task.decided_by == approver:
            return Decision(task, creative, applied=False)
        if task.status == ReviewStatus.CANCELLED or draft.version != creative.current_version:
            raise ReviewRefused(
                f"task {task.id} is for an outdated version of creative {creative.id}: "
                f"review version {creative.current_version} instead"
            )
        raise ReviewRefused(
            f"task {task.id} was already decided: {task.status} by {task.decided_by}"
        )
    _check_may_decide(session, task, draft, creative, spec, approver=approver, version=version)
    checklist = checklist or {}
    unchecked = [i.id for i in policy.spec.checklist if not checklist.get(i.id)]
    if decision == "approve" and unchecked and not note.strip():
        raise ReviewRefused(
            f"confirm the checklist ({', '.join(unchecked)}) or say in a note why not"
        )
    if decision != "approve" and not note.strip():
        raise ReviewRefused("say what must change (or why it is rejected) in a note")
    task.status, task.decided_by, task.decided_at = wanted, approver, now
    task.note, task.checklist = note.strip() or None, checklist
    _close_timers(session, task, now)
    result = Decision(task, creative, applied=True)
    if decision == "approve":
        result.next_tier = _advance(
            session, draft, creative, spec, policy, now=now, public_url=public_url
        )
    else:
        _stop(session, draft, creative, wanted, now=now)
    if result.next_tier is None:
        _tell_creator(session, creative, draft, task)
    summary = (
        f"{task.tier} review of creative {creative.id} v{draft.version}: "
        f"{wanted.value.replace('_', ' ')} by {approver}"
    )
    details = {
        "tier": task.tier,
        "version": draft.version,
        "note": task.note,
        "checklist": checklist,
        "policy_version": policy.version,
        "findings_seen": [
            f"{rule_id}:{'pass' if passed else 'fail'}"
            for rule_id, passed in session.exec(
                select(PolicyFinding.rule_id, PolicyFinding.passed).where(
                    PolicyFinding.draft_id == draft.id
                )
            )
        ],
        "next_tier": result.next_tier,
    }
    record(
        session,
        [Change(approver, f"review.{wanted.value}", "review_task", task.id or 0, summary, details)],
    )
    return result


def _tell_creator(
    session: Session, creative: Creative, draft: CreativeDraft, task: ReviewTask
) -> None:
    """The creator hears the outcome: cleared to post, changes wanted (with the notes), or no."""
    said = {
        ReviewStatus.APPROVED: ("is approved: you may post it as submitted", ""),
        ReviewStatus.CHANGES_REQUESTED: (
            "needs changes",
            "Submit a new version with these changes.",
        ),
        ReviewStatus.REJECTED: ("was not approved and will not run", ""),
    }[ReviewStatus(task.status)]
    note = f"\nNotes from the {task.tier} review:\n{task.note}\n" if task.note else ""
    notify_creator(
        session,
        creative.member_id,
        key=f"draft:{draft.id}:{task.status}",
        subject=f"Your draft (creative {creative.id}, version {draft.version}) {said[0]}",
        text=f"{note}\n{said[1]}\n",
    )


def notify_creator(session: Session, member_id: int, *, key: str, subject: str, text: str) -> None:
    """Email a creator (by their roster address), greeting them by handle."""
    member = session.get(RosterMember, member_id)
    creator = session.get(Creator, member.creator_id) if member else None
    if creator is not None and creator.email:
        notify(
            session, [creator.email], key=key, subject=subject, text=f"Hi @{creator.handle},{text}"
        )


def _advance(
    session: Session,
    draft: CreativeDraft,
    creative: Creative,
    spec: CampaignSpec,
    policy: Policy,
    *,
    now: datetime,
    public_url: str,
) -> str | None:
    waiting = session.exec(
        select(ReviewTask)
        .where(ReviewTask.draft_id == draft.id, ReviewTask.status == ReviewStatus.WAITING)
        .order_by(col(ReviewTask.position))
    ).first()
    if waiting is not None:
        tier = next((t for t in policy.spec.tiers if t.id == waiting.tier), None) or TierSpec(
            id=waiting.tier,
            name=f"{waiting.tier} review",
            group=waiting.approver_group,
            when=["always"],
        )  # the policy changed since this draft was routed: the tier still runs as routed
        open_task(session, waiting, tier, spec, now=now, public_url=public_url)
        return waiting.tier
    draft.status = creative.status = CreativeStatus.APPROVED
    creative.updated_at = now
    session.add_all([draft, creative])
    return None


def _stop(
    session: Session,
    draft: CreativeDraft,
    creative: Creative,
    outcome: ReviewStatus,
    *,
    now: datetime,
) -> None:
    """A change request or rejection: the rest of this draft's tiers will not be needed."""
    status = (
        CreativeStatus.REJECTED
        if outcome == ReviewStatus.REJECTED
        else CreativeStatus.CHANGES_REQUESTED
    )
    draft.status = creative.status = status
    creative.updated_at = now
    session.add_all([draft, creative])
    cancel_tasks(session, draft.id or 0, now=now)


def cancel_tasks(session: Session, draft_id: int, *, now: datetime) -> None:
    for task in session.exec(
        select(ReviewTask).where(
            ReviewTask.draft_id == draft_id,
            col(ReviewTask.status).in_((ReviewStatus.OPEN, ReviewStatus.WAITING)),
        )
    ):
        task.status = ReviewStatus.CANCELLED
        session.add(task)
        _close_timers(session, task, now)


def _close_timers(session: Session, task: ReviewTask, now: datetime) -> None:
    timers = Timer.__table__.c  # type: ignore[attr-defined]
    session.execute(
        update(Timer.__table__)  # type: ignore[attr-defined]
        .where(
            timers.entity_type == "review_task",
            timers.entity_id == str(task.id),
            timers.fired_at.is_(None),
        )
        .values(fired_at=now, payload={"outcome": f"task {task.status}"})
    )


def fire_review_timers(
    session: Session, *, now: datetime, policy_for: Any, public_url: str = ""
) -> dict[str, int]:
    """Up to 500 due reminders and escalations (`closed`: timers whose task was decided). An
    overdue task is escalated to its backup group and stays open: no tier approves by timeout."""
    done = {"reminded": 0, "escalated": 0, "closed": 0}
    timers = session.exec(
        select(Timer)
        .where(
            col(Timer.kind).in_((REMINDER, ESCALATION)),
            col(Timer.fired_at).is_(None),
            col(Timer.due_at) <= now,
        )
        .order_by(col(Timer.due_at))
        .limit(500)
    ).all()
    for timer in timers:
        timer.fired_at = now
        session.add(timer)
        task = session.get(ReviewTask, int(timer.entity_id))
        if task is None or task.status != ReviewStatus.OPEN:
            timer.payload = {"outcome": "decided before it was due"}
            done["closed"] += 1
            continue
        _, _, spec = _context(session, task)
        due = f"{task.due_at:%Y-%m-%d %H:%M} UTC"
        if timer.kind == REMINDER:
            task.reminded_at = now
            notify_approvers(
                session,
                group_members(spec, task.approver_group),
                task,
                key=f"review:{task.id}:reminder",
                subject=f"Reminder: review task {task.id} is due {due}",
                text=f"Task {task.id} ({task.tier}) still needs a decision.",
                now=now,
                public_url=public_url,
            )
            done["reminded"] += 1
        else:
            _escalate(session, task, spec, policy_for(task), now=now, public_url=public_url)
            done["escalated"] += 1
        timer.payload = {"outcome": timer.kind.split(".")[1] + " sent"}
    return done


def _escalate(
    session: Session,
    task: ReviewTask,
    spec: CampaignSpec,
    policy: Policy,
    *,
    now: datetime,
    public_url: str,
) -> None:
    tier = next((t for t in policy.spec.tiers if t.id == task.tier), None)
    backup = tier.backup_group if tier else None
    task.escalated_at, task.escalated_to = now, backup
    session.add(task)
    notify_approvers(
        session,
        group_members(spec, backup) + group_members(spec, task.approver_group),
        task,
        key=f"review:{task.id}:escalated",
        subject=f"Overdue: review task {task.id} ({task.tier}) is escalated",
        text=(
            f"Task {task.id} passed its deadline without a decision. The creative stays blocked "
            f"until someone in {task.approver_group} or {backup or 'no backup group'} decides."
        ),
        now=now,
        public_url=public_url,
    )
    summary = f"{task.tier} review task {task.id} overdue: escalated to {backup or 'nobody'}"
    record(
        session,
        [
            Change(
                "rally",
                "review.escalated",
                "review_task",
                task.id or 0,
                summary,
                {"backup_group": backup},
            )
        ],
    )

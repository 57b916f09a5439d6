"""Approvers' decisions: who may decide, what a decision needs (the checklist confirmed, or a
note), and what it does at once in the caller's transaction: the next tier's task opens and its
approvers are emailed, or the creator hears what must change.

The review of a paid placement (a posted video to be boosted, `tasks.amplification.boosts`)
decides its version only: the creative stays posted, nothing is earned and the creator is not
told; the boost waits on its outcome.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.policy import Policy, TierSpec
from store.audit import Change, record
from store.models import (
    Brief,
    Campaign,
    Creative,
    CreativeDraft,
    CreativeStatus,
    Creator,
    PolicyFinding,
    ReviewStatus,
    ReviewTask,
    RosterMember,
)
from tasks.campaigns.configs import campaign_policy
from tasks.payments.ledger import earn
from tasks.review.creatives import tell
from tasks.review.routing import (
    ReviewRefused,
    cancel_tasks,
    close_timers,
    group_members,
    is_paid_placement,
    notify_creator,
    open_task,
    task_context,
)

DECISIONS = {
    "approve": ReviewStatus.APPROVED,
    "request_changes": ReviewStatus.CHANGES_REQUESTED,
    "reject": ReviewStatus.REJECTED,
}


@dataclass
class Decision:
    task: ReviewTask
    creative: Creative
    applied: bool  # False when the same decision had already been recorded
    next_tier: str | None = None


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
    confirmed: Collection[str] = (),
    version: int | None = None,
    public_url: str = "",
    actor: str | None = None,
) -> Decision:
    """Record what an approver did (the decision, the checklist items they confirmed, "all"
    for every one, and their note) and advance the creative; refusals say why. The policy is
    the one the campaign was applied with. `actor` is who the audit log names when someone
    other than the approver records it (an API token); the approver by default."""
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise ReviewRefused(f"no review task {task_id}")
    draft, creative, spec = task_context(session, task)
    approver = approver.strip().lower()
    wanted = DECISIONS[decision]
    if task.status not in (ReviewStatus.OPEN, ReviewStatus.WAITING):
        return _decided_already(task, draft, creative, wanted, approver)
    _check_may_decide(session, task, draft, creative, spec, approver=approver, version=version)
    campaign = session.get(Campaign, creative.campaign_id)
    assert campaign is not None
    policy = campaign_policy(session, campaign)
    checklist = _checklist(policy, confirmed, paid=draft.paid, decision=decision, note=note)
    task.status, task.decided_by, task.decided_at = wanted, approver, now
    task.note, task.checklist = note.strip() or None, checklist
    close_timers(session, task, now)
    result = Decision(task, creative, applied=True)
    if decision == "approve":
        result.next_tier = _advance(
            session, draft, creative, spec, policy, now=now, public_url=public_url
        )
    else:
        _stop(session, draft, creative, wanted, now=now)
    _audit(session, result, draft, policy, actor=actor)
    if is_paid_placement(creative):
        return result  # the boost reads the outcome; the post itself is as it was
    if result.next_tier is None:
        _tell_creator(session, creative, draft, task, spec, public_url=public_url)
    if result.next_tier is None and decision in ("approve", "reject"):
        kind = "approved" if decision == "approve" else "rejected"
        tell(session, creative, kind, now, tier=task.tier)
        if decision == "approve":
            earn(session, campaign, creative, "approved", actor=actor or approver, now=now)
    return result


def _decided_already(
    task: ReviewTask,
    draft: CreativeDraft,
    creative: Creative,
    wanted: ReviewStatus,
    approver: str,
) -> Decision:
    """The same decision sent twice counts once; any other on a settled task is refused."""
    if task.status == wanted and task.decided_by == approver:
        return Decision(task, creative, applied=False)
    if task.status == ReviewStatus.CANCELLED or draft.version != creative.current_version:
        raise ReviewRefused(
            f"task {task.id} is for an outdated version of creative {creative.id}: "
            f"review version {creative.current_version} instead"
        )
    raise ReviewRefused(f"task {task.id} was already decided: {task.status} by {task.decided_by}")


def _checklist(
    policy: Policy, confirmed: Collection[str], *, paid: bool, decision: str, note: str
) -> dict[str, bool]:
    """Every checklist item of the draft's review, confirmed or not. Approval needs them all
    or a note saying why not; any other decision needs a note."""
    items = [i.id for i in policy.checklist(paid=paid)]
    unknown = sorted(set(confirmed) - set(items) - {"all"})
    if unknown:
        raise ReviewRefused(f"no checklist item {', '.join(unknown)} (items: {', '.join(items)})")
    checklist = {i: "all" in confirmed or i in confirmed for i in items}
    unchecked = [i for i, done in checklist.items() if not done]
    if decision == "approve" and unchecked and not note.strip():
        raise ReviewRefused(
            f"confirm the checklist ({', '.join(unchecked)}) or say in a note why not"
        )
    if decision != "approve" and not note.strip():
        raise ReviewRefused("say what must change (or why it is rejected) in a note")
    return checklist


def _audit(
    session: Session,
    result: Decision,
    draft: CreativeDraft,
    policy: Policy,
    *,
    actor: str | None = None,
) -> None:
    """Who decided what on which version, under which policy, having seen which findings."""
    task, creative = result.task, result.creative
    status = ReviewStatus(task.status)
    approver = task.decided_by or ""
    summary = (
        f"{task.tier} review of creative {creative.id} v{draft.version}: "
        f"{status.value.replace('_', ' ')} by {approver}"
    )
    details = {
        "tier": task.tier,
        "version": draft.version,
        "note": task.note,
        "checklist": task.checklist,
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
    if actor is not None:
        details["approver"] = approver
    change = Change(
        actor or approver, f"review.{status.value}", "review_task", task.id or 0, summary, details
    )
    record(session, [change])


def _tell_creator(
    session: Session,
    creative: Creative,
    draft: CreativeDraft,
    task: ReviewTask,
    spec: CampaignSpec,
    *,
    public_url: str,
) -> None:
    """The creator hears the outcome: cleared to post, changes wanted (with the notes and the
    link to their brief page, where the new version goes), or no."""
    said = {
        ReviewStatus.APPROVED: ("is approved: you may post it as submitted", ""),
        ReviewStatus.CHANGES_REQUESTED: (
            "needs changes",
            "Submit a new version with these changes.",
        ),
        ReviewStatus.REJECTED: ("was not approved and will not run", ""),
    }[ReviewStatus(task.status)]
    note = f"\nNotes from the {task.tier} review:\n{task.note}\n" if task.note else ""
    where = ""
    brief = session.get(Brief, draft.brief_id) if draft.brief_id else None
    if task.status == ReviewStatus.CHANGES_REQUESTED and brief is not None and public_url:
        where = f"Your brief, where the new version goes: {public_url}/briefs/{brief.token}\n"
    notify_creator(
        session,
        creative.member_id,
        key=f"draft:{draft.id}:{task.status}",
        subject=f'{spec.name}: your draft "{creative.title}" (version {draft.version}) {said[0]}',
        text=f"{note}\n{said[1]}\n{where}",
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
    draft.status = CreativeStatus.APPROVED
    if not is_paid_placement(creative):
        creative.status, creative.updated_at = CreativeStatus.APPROVED, now
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
    draft.status = status
    if not is_paid_placement(creative):
        creative.status, creative.updated_at = status, now
    session.add_all([draft, creative])
    cancel_tasks(session, draft.id or 0, now=now)

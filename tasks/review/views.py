"""Reading reviews back: the queue, one task as an approver sees it, a creative's history."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.models import (
    AuditEvent,
    Brief,
    Campaign,
    Creative,
    CreativeDraft,
    Creator,
    PolicyFinding,
    ReviewStatus,
    ReviewTask,
    RosterMember,
)
from tasks.campaigns.campaign import campaign_spec
from tasks.campaigns.configs import campaign_policy


def task_view(session: Session, task_id: int) -> dict[str, Any]:
    """A review task: the draft, its findings with the rules' explanations, the checklist."""
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise RallyError(f"no review task {task_id}")
    draft = session.get(CreativeDraft, task.draft_id)
    creative = session.get(Creative, draft.creative_id) if draft else None
    campaign = session.get(Campaign, creative.campaign_id) if creative else None
    assert draft is not None and creative is not None and campaign is not None
    policy = campaign_policy(session, campaign)
    findings = session.exec(select(PolicyFinding).where(PolicyFinding.draft_id == draft.id)).all()
    return {
        "task": task.model_dump(mode="json"),
        "campaign": campaign.slug,
        "creative": creative.id,
        "version": draft.version,
        "current_version": creative.current_version,
        "caption": draft.caption,
        "script": draft.script,
        "video_url": draft.video_url,
        "findings": [
            {
                "rule": f.rule_id,
                "severity": f.severity,
                "passed": f.passed,
                "message": f.message,
                "explanation": (r.description if (r := policy.rule(f.rule_id)) else None),
            }
            for f in findings
        ],
        "checklist": [item.model_dump() for item in policy.spec.checklist],
    }


def history(session: Session, creative_id: int) -> dict[str, Any]:
    """The chain of custody: the brief version, every draft with its findings and decisions,
    the post, and the audit entries that recorded each step."""
    creative = session.get(Creative, creative_id)
    if creative is None:
        raise RallyError(f"no creative {creative_id}")
    versions, task_ids = _versions(session, creative_id)
    entries = _audit_entries(session, creative_id, task_ids)
    return {
        "creative": creative_id,
        "title": creative.title,
        "status": creative.status,
        "posted_url": creative.posted_url,
        "posted_at": creative.posted_at.isoformat() if creative.posted_at else None,
        "versions": versions,
        "audit": [
            {"seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "summary": e.summary}
            for e in entries
        ],
    }


def _versions(session: Session, creative_id: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Every draft of a creative, oldest first, as the history shows it; and the ids of all
    their review tasks, whose audit entries belong to the history too."""
    drafts = session.exec(
        select(CreativeDraft)
        .where(CreativeDraft.creative_id == creative_id)
        .order_by(col(CreativeDraft.version))
    ).all()
    versions = []
    task_ids: list[str] = []
    for draft in drafts:
        findings = session.exec(
            select(PolicyFinding).where(PolicyFinding.draft_id == draft.id)
        ).all()
        tasks = session.exec(
            select(ReviewTask)
            .where(ReviewTask.draft_id == draft.id)
            .order_by(col(ReviewTask.position))
        ).all()
        task_ids += [str(t.id) for t in tasks]
        brief = session.get(Brief, draft.brief_id) if draft.brief_id else None
        versions.append(_version(draft, brief, findings, tasks))
    return versions, task_ids


def _version(
    draft: CreativeDraft,
    brief: Brief | None,
    findings: Sequence[PolicyFinding],
    tasks: Sequence[ReviewTask],
) -> dict[str, Any]:
    return {
        "version": draft.version,
        "submitted_by": draft.submitted_by,
        "submitted_at": draft.submitted_at.isoformat(),
        "status": draft.status,
        "caption": draft.caption,
        "brief_version": brief.version if brief else None,
        "findings": [
            {
                "rule": f.rule_id,
                "severity": f.severity,
                "passed": f.passed,
                "message": f.message,
                "policy_version": f.policy_version,
            }
            for f in findings
        ],
        "reviews": [
            {
                "task": t.id,
                "tier": t.tier,
                "status": t.status,
                "decided_by": t.decided_by,
                "decided_at": t.decided_at.isoformat() if t.decided_at else None,
                "note": t.note,
                "escalated_to": t.escalated_to,
            }
            for t in tasks
        ],
    }


def _audit_entries(session: Session, creative_id: int, task_ids: list[str]) -> Sequence[AuditEvent]:
    """The audit entries of the creative and of its review tasks, in the order recorded."""
    return session.exec(
        select(AuditEvent)
        .where(
            or_(
                and_(
                    col(AuditEvent.entity_type) == "creative",
                    col(AuditEvent.entity_id) == str(creative_id),
                ),
                and_(
                    col(AuditEvent.entity_type) == "review_task",
                    col(AuditEvent.entity_id).in_(task_ids),
                ),
            )
        )
        .order_by(col(AuditEvent.seq))
    ).all()


def review_queue(
    session: Session,
    *,
    approver: str | None = None,
    tier: str | None = None,
    overdue: bool = False,
    now: datetime,
) -> list[dict[str, Any]]:
    """Open review tasks, overdue first, then by due time; only an approver's groups if given.
    One query of plain columns (no objects: a queue of thousands stays quick), and each
    campaign read once."""
    rows = session.execute(
        sa_select(
            col(ReviewTask.id),
            col(ReviewTask.tier),
            col(ReviewTask.approver_group),
            col(ReviewTask.escalated_to),
            col(ReviewTask.due_at),
            col(CreativeDraft.version),
            col(CreativeDraft.caption),
            col(Creative.id).label("creative"),
            col(Creative.campaign_id),
        )
        .join(CreativeDraft, col(CreativeDraft.id) == col(ReviewTask.draft_id))
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .where(col(ReviewTask.status) == ReviewStatus.OPEN)
        .order_by(col(ReviewTask.due_at))
    ).all()
    ids = {row.campaign_id for row in rows}
    campaigns = {c.id: c for c in session.exec(select(Campaign).where(col(Campaign.id).in_(ids)))}
    queue = []
    for row in rows:
        campaign = campaigns[row.campaign_id]
        spec = campaign_spec(campaign)
        groups = {row.approver_group, row.escalated_to}
        if approver and not any(
            approver.lower() in spec.approvers.get(g or "", []) for g in groups
        ):
            continue
        late = row.due_at is not None and row.due_at <= now
        if (tier and row.tier != tier) or (overdue and not late):
            continue
        queue.append(
            {
                "task": row.id,
                "campaign": campaign.slug,
                "creative": row.creative,
                "version": row.version,
                "tier": row.tier,
                "group": row.approver_group,
                "escalated_to": row.escalated_to,
                "due_at": row.due_at.isoformat() if row.due_at else None,
                "overdue": late,
                "caption": row.caption,
            }
        )
    return sorted(queue, key=lambda r: (not r["overdue"], r["due_at"] or ""))


def creator_drafts(session: Session, member_id: int) -> list[dict[str, Any]]:
    """A creator's creatives, newest first, as their brief page shows them: the latest version,
    where it stands, what the checks found and what reviewers asked for."""
    creatives = session.exec(
        select(Creative).where(Creative.member_id == member_id).order_by(col(Creative.id).desc())
    ).all()
    shown = []
    for creative in creatives:
        draft = session.exec(
            select(CreativeDraft).where(
                CreativeDraft.creative_id == creative.id,
                CreativeDraft.version == creative.current_version,
            )
        ).first()
        if draft is None:
            continue
        failed = session.exec(
            select(PolicyFinding).where(
                PolicyFinding.draft_id == draft.id, col(PolicyFinding.passed).is_(False)
            )
        ).all()
        notes = session.exec(
            select(ReviewTask.tier, ReviewTask.note).where(
                ReviewTask.draft_id == draft.id, col(ReviewTask.note).is_not(None)
            )
        ).all()
        shown.append(
            {
                "id": creative.id,
                "title": creative.title,
                "status": creative.status,
                "version": draft.version,
                "caption": draft.caption,
                "script": draft.script or "",
                "video_url": draft.video_url or "",
                "duration_seconds": draft.duration_seconds,
                "problems": [
                    {"rule": f.rule_id, "severity": f.severity, "message": f.message}
                    for f in failed
                ],
                "notes": [{"tier": tier, "note": note} for tier, note in notes],
                "may_resubmit": creative.status in ("changes_requested", "in_review", "draft"),
                "needs_fixing": creative.status in ("changes_requested", "draft"),
            }
        )
    return shown


def creatives_of(
    session: Session, campaign: Campaign, *, status: str | None = None
) -> list[dict[str, Any]]:
    """The campaign's creatives, newest first: who made each, its status and version, the
    review tier its current draft waits on, and where it was posted."""
    query = (
        select(Creative, Creator.handle, CreativeDraft.id)
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .outerjoin(
            CreativeDraft,
            and_(
                col(CreativeDraft.creative_id) == col(Creative.id),
                col(CreativeDraft.version) == col(Creative.current_version),
            ),
        )
        .where(Creative.campaign_id == campaign.id)
        .order_by(col(Creative.updated_at).desc(), col(Creative.id).desc())
    )
    if status:
        query = query.where(Creative.status == status)
    rows = session.exec(query).all()
    open_tier = dict(
        session.exec(
            select(ReviewTask.draft_id, ReviewTask.tier).where(
                col(ReviewTask.draft_id).in_([draft for _, _, draft in rows if draft]),
                ReviewTask.status == ReviewStatus.OPEN,
            )
        ).all()
    )
    return [
        {
            "id": creative.id,
            "creator": handle,
            "title": creative.title,
            "status": creative.status,
            "version": creative.current_version,
            "waiting_on": open_tier.get(draft) if draft else None,
            "posted_url": creative.posted_url,
            "updated_at": creative.updated_at.isoformat(),
        }
        for creative, handle, draft in rows
    ]

"""Reading reviews back: one task as an approver sees it, an approver's queue page, a
creative's history (the CLI's list of open tasks is `tasks.review.queue`)."""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
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
from tasks.review.comments import MAX_COMMENT_CHARS, clock_time, comments_on
from tasks.review.compare import word_diff
from tasks.review.routing import is_paid_placement, local_time
from tasks.review.uploads import upload_url

DECIDED = (ReviewStatus.APPROVED, ReviewStatus.CHANGES_REQUESTED, ReviewStatus.REJECTED)
STATES = {"open": "Open", "overdue": "Overdue", "decided": "Decided"}
QUEUE_ROWS = 200  # the most one queue page lists; the counts cover every task


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
        "checklist": [item.model_dump() for item in policy.checklist(paid=draft.paid)],
        # A posted video to be boosted: reviewed as the paid placement it would become.
        "paid_placement": (
            {"posted_url": creative.posted_url} if is_paid_placement(creative) else None
        ),
    }


def decisions_of(session: Session, task: ReviewTask) -> list[dict[str, Any]]:
    """The decisions on the version `task` reviews: each tier's decided task, in tier order,
    with who decided, when, the note and the checklist as they confirmed it."""
    decided = session.exec(
        select(ReviewTask)
        .where(ReviewTask.draft_id == task.draft_id, col(ReviewTask.status).in_(DECIDED))
        .order_by(col(ReviewTask.position))
    ).all()
    return [
        {
            "task": t.id,
            "tier": t.tier,
            "decision": t.status,
            "decided_by": t.decided_by,
            "decided_at": t.decided_at.isoformat() if t.decided_at else None,
            "note": t.note,
            "checklist": t.checklist,
        }
        for t in decided
    ]


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
        "paid": draft.paid,
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


def creatives_of(
    session: Session,
    campaign: Campaign,
    *,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The campaign's creatives, newest first (`limit` of them from `offset`, or all): who
    made each, its status and version, the review tier its current draft waits on, and where
    it was posted."""
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
    rows = session.exec(query.offset(offset).limit(limit)).all()
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


def video_of(draft: CreativeDraft) -> dict[str, str] | None:
    """How the page shows a draft's video: a player for the file its creator uploaded (which
    Rally serves to the campaign's approvers), a link for one hosted elsewhere (https), the
    address as text for anything else."""
    if uploaded := upload_url(draft):
        return {"kind": "file", "url": uploaded}
    url = draft.video_url
    if not url:
        return None
    if url.startswith("https://"):
        return {"kind": "link", "url": url}
    return {"kind": "text", "url": url}


def review_page(session: Session, task_id: int) -> dict[str, Any]:
    """A review task as its page shows it: `task_view` and the creative's history, with who
    made it for which campaign, the deadline and every time in the campaign's time zone, the
    video, the caption compared with the previous version's, and the approvers' comments."""
    view = task_view(session, task_id)
    task = session.get(ReviewTask, task_id)
    assert task is not None
    draft = session.get(CreativeDraft, task.draft_id)
    assert draft is not None
    creative = session.get(Creative, draft.creative_id)
    campaign = session.get(Campaign, creative.campaign_id) if creative else None
    member = session.get(RosterMember, creative.member_id) if creative else None
    creator = session.get(Creator, member.creator_id) if member else None
    assert creative is not None and campaign is not None and creator is not None
    spec = campaign_spec(campaign)
    previous = session.exec(
        select(CreativeDraft).where(
            CreativeDraft.creative_id == creative.id, CreativeDraft.version == draft.version - 1
        )
    ).first()
    view |= {
        "findings": sorted(view["findings"], key=_worst_first),
        "creator": creator.handle,
        "title": creative.title,
        "campaign_name": spec.name,
        "tier_name": task.tier.replace("_", " "),
        "due": local_time(task.due_at, spec) if task.due_at else None,
        "decided": local_time(task.decided_at, spec) if task.decided_at else None,
        "zone": spec.timezone,
        "duration": clock_time(draft.duration_seconds) if draft.duration_seconds else None,
        "video": video_of(draft),
        "previous_version": previous.version if previous else None,
        "caption_diff": word_diff(previous.caption, draft.caption) if previous else None,
        "comments": comments_on(session, draft.id or 0, spec),
        "earlier_comments": {
            d.version: comments_on(session, d.id or 0, spec)
            for d in session.exec(
                select(CreativeDraft).where(
                    CreativeDraft.creative_id == creative.id,
                    CreativeDraft.version != draft.version,
                )
            )
        },
        "max_comment": MAX_COMMENT_CHARS,
        "history": _local_history(history(session, creative.id or 0), spec),
    }
    return view


def _worst_first(finding: dict[str, Any]) -> int:
    """What blocks, then what warns, then what passed."""
    return 2 if finding["passed"] else (0 if finding["severity"] == "block" else 1)


def _local_history(chain: dict[str, Any], spec: CampaignSpec) -> dict[str, Any]:
    """The history's times in the campaign's time zone, named, for people to read."""
    for entry in chain["audit"]:
        entry["local"] = local_time(datetime.fromisoformat(entry["at"]), spec)
    for version in chain["versions"]:
        version["submitted"] = local_time(datetime.fromisoformat(version["submitted_at"]), spec)
    return chain


def approver_queue(
    session: Session,
    *,
    approver: str,
    now: datetime,
    state: str = "open",
    campaign: str = "",
    tier: str = "",
) -> dict[str, Any]:
    """An approver's review tasks (their groups', escalations included) in one state (open,
    overdue, decided), campaign and tier, soonest deadline first; and for each choice of each
    filter, how many tasks it would show with the other filters as they are."""
    # Plain columns, not ORM objects: a campaign's thousands of tasks cost a few ms this way.
    rows = session.execute(
        sa_select(
            col(ReviewTask.id).label("task_id"),
            col(ReviewTask.status),
            col(ReviewTask.due_at),
            col(ReviewTask.tier),
            col(ReviewTask.decided_by),
            col(ReviewTask.approver_group),
            col(ReviewTask.escalated_to),
            col(CreativeDraft.version),
            col(Creative.id).label("creative_id"),
            col(Creative.title),
            col(Creative.campaign_id),
            col(Creator.handle),
        )
        .join(CreativeDraft, col(CreativeDraft.id) == col(ReviewTask.draft_id))
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(col(ReviewTask.status).in_((ReviewStatus.OPEN, *DECIDED)))
        .order_by(col(ReviewTask.due_at), col(ReviewTask.id))
    ).all()
    campaigns = {c.id: (c, campaign_spec(c)) for c in session.exec(select(Campaign))}
    email = approver.lower()
    mine = []
    for row in rows:
        camp, spec = campaigns[row.campaign_id]
        groups = {row.approver_group, row.escalated_to}
        if any(email in spec.approvers.get(g or "", []) for g in groups):
            mine.append(_queue_row(row, camp, spec, now))
    wanted = {"state": state, "campaign": campaign, "tier": tier}

    def shown(row: dict[str, Any], *, but: str = "") -> bool:
        return all(
            not value or key == but or value in row["facets"][key] for key, value in wanted.items()
        )

    facets: dict[str, list[dict[str, Any]]] = {}
    for key in wanted:
        counts = Counter(v for row in mine if shown(row, but=key) for v in row["facets"][key])
        names = {v: n for row in mine for v, n in row["facets"][key].items()}
        if key == "state":
            names = dict(STATES)
        facets[key] = [
            {
                "value": "",
                "label": "All",
                "count": sum(1 for row in mine if shown(row, but=key)),
                "selected": not wanted[key],
            }
        ] + [
            {"value": v, "label": n, "count": counts[v], "selected": wanted[key] == v}
            for v, n in (names.items() if key == "state" else sorted(names.items(), key=_second))
        ]
    listed = [row for row in mine if shown(row)]
    for item in listed[:QUEUE_ROWS]:  # only the rows shown are put in their campaign's time
        due, spec = item["due_at"], item.pop("spec")
        item["due"] = local_time(due, spec) if due else "no deadline"
    return {"rows": listed[:QUEUE_ROWS], "total": len(listed), "facets": facets, **wanted}


def _second(item: tuple[str, str]) -> str:
    return item[1]


def _queue_row(row: Any, campaign: Campaign, spec: CampaignSpec, now: datetime) -> dict[str, Any]:
    """A task as the queue lists it (`row`: the columns `approver_queue` reads); its deadline is
    put in the campaign's time only if it is shown."""
    late = row.status == ReviewStatus.OPEN and row.due_at is not None and row.due_at <= now
    states = (
        {"open": "Open", "overdue": "Overdue"}
        if late
        else ({"open": "Open"} if row.status == ReviewStatus.OPEN else {"decided": "Decided"})
    )
    tier_name = row.tier.replace("_", " ").capitalize()
    return {
        "task": row.task_id,
        "campaign": campaign.slug,
        "campaign_name": spec.name,
        "creative": row.creative_id,
        "title": row.title,
        "creator": row.handle,
        "version": row.version,
        "tier": row.tier,
        "tier_name": tier_name,
        "due_at": row.due_at,
        "spec": spec,
        "overdue": late,
        "status": "overdue" if late else row.status.replace("_", " "),
        "decided_by": row.decided_by,
        "escalated_to": row.escalated_to,
        "facets": {
            "state": states,
            "campaign": {campaign.slug: spec.name},
            "tier": {row.tier: tier_name},
        },
    }

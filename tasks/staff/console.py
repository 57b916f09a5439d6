"""What the staff console shows of one campaign, read with a few bounded queries whatever the
campaign's size: the pipeline (briefs, drafts, overdue reviews, posts), the latest report, each
lead destination's sync health, the follow-up log (searchable, a page at a time) and the
campaign's part of the audit log (a page at a time)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from threading import Lock
from typing import Any

from sqlalchemy import String, and_, cast, func, literal_column, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from store.audit import Verification, verify
from store.models import (
    AuditEvent,
    Brief,
    Campaign,
    Contact,
    Creative,
    CreativeDraft,
    Creator,
    FollowUp,
    Milestone,
    OutboxMessage,
    OutboxStatus,
    Report,
    ReviewStatus,
    ReviewTask,
    RosterMember,
    RosterStatus,
)
from tasks.leads.records import CHANNEL as LEAD_CHANNEL
from tasks.leads.sync_state import destination_name

PAGE_SIZE = 50
MAX_PAGE = 200  # a page number past this is refused: no query skips more than 10,000 rows
SEARCH_LIMIT = 100  # characters of a search


@dataclass(frozen=True)
class Page:
    """One page of a log: its rows, its number, and whether another follows."""

    rows: list[dict[str, Any]]
    number: int
    more: bool


def pipeline(session: Session, campaign: Campaign, *, now: datetime) -> dict[str, Any]:
    """Creators, briefs sent and acknowledged (each creator's latest brief), creatives by
    state, posts, and the review tasks past their deadline (the first ten of them)."""
    cid = campaign.id
    creators = session.execute(
        sa_select(func.count()).where(
            col(RosterMember.campaign_id) == cid, col(RosterMember.status) == RosterStatus.ACTIVE
        )
    ).scalar_one()
    latest = (
        sa_select(func.max(col(Brief.id)))
        .where(col(Brief.campaign_id) == cid)
        .group_by(col(Brief.member_id))
    )
    made, sent, acknowledged = session.execute(
        sa_select(
            func.count(), func.count(col(Brief.sent_at)), func.count(col(Brief.acknowledged_at))
        ).where(col(Brief.id).in_(latest))
    ).one()
    states = dict(
        session.execute(
            sa_select(col(Creative.status), func.count())
            .where(col(Creative.campaign_id) == cid)
            .group_by(col(Creative.status))
        ).all()
    )
    overdue_query = (
        sa_select(
            col(ReviewTask.id), col(ReviewTask.tier), col(ReviewTask.due_at), col(Creator.handle)
        )
        .join(CreativeDraft, col(CreativeDraft.id) == col(ReviewTask.draft_id))
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(
            col(Creative.campaign_id) == cid,
            col(ReviewTask.status) == ReviewStatus.OPEN,
            col(ReviewTask.due_at) <= now,
        )
        .order_by(col(ReviewTask.due_at))
    )
    overdue = session.execute(overdue_query.limit(10)).all()
    overdue_count = session.execute(
        sa_select(func.count()).select_from(overdue_query.order_by(None).subquery())
    ).scalar_one()
    return {
        "creators": creators,
        "briefs": {"made": made, "sent": sent, "acknowledged": acknowledged},
        "creatives": dict(sorted(states.items())),
        "posted": states.get("posted", 0),
        "overdue": [
            {"task": t, "tier": tier, "due_at": due, "creator": handle}
            for t, tier, due, handle in overdue
        ],
        "overdue_count": overdue_count,
    }


def manual_milestones(session: Session, campaign: Campaign) -> set[str]:
    """The keys of the milestones people judge (the others Rally checks itself)."""
    query = select(Milestone.key).where(
        Milestone.campaign_id == campaign.id, Milestone.check == "manual"
    )
    return set(session.exec(query))


def latest_report(session: Session, campaign: Campaign) -> Report | None:
    """The campaign's newest stored report (its numbers and charts are the page's KPIs)."""
    return session.exec(
        select(Report).where(Report.campaign_id == campaign.id).order_by(col(Report.week).desc())
    ).first()


def lead_health(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """Per destination of the campaign: leads waiting, retrying after a failure, sent and given
    up on (dead), with the newest dead letter's error, in two grouped queries."""
    prefix = f"{campaign.id}:"
    ours = and_(
        col(OutboxMessage.channel) == LEAD_CHANNEL,
        col(OutboxMessage.destination).startswith(prefix),
    )
    tried = col(OutboxMessage.attempts) > literal_column("0")
    table: dict[str, dict[str, Any]] = {}
    for destination, status, retried, count in session.execute(
        sa_select(col(OutboxMessage.destination), col(OutboxMessage.status), tried, func.count())
        .where(ours)
        .group_by(col(OutboxMessage.destination), col(OutboxMessage.status), tried)
    ):
        entry = table.setdefault(
            destination,
            {"name": destination_name(destination), "error": None}
            | dict.fromkeys(("pending", "failed", "sent", "dead", "cancelled"), 0),
        )
        kind = "failed" if status == OutboxStatus.PENDING and retried else str(status)
        entry[kind] = entry.get(kind, 0) + count
    newest_dead = (
        sa_select(func.max(col(OutboxMessage.id)))
        .where(ours, col(OutboxMessage.status) == OutboxStatus.DEAD)
        .group_by(col(OutboxMessage.destination))
    )
    for destination, error in session.execute(
        sa_select(col(OutboxMessage.destination), col(OutboxMessage.last_error)).where(
            col(OutboxMessage.id).in_(newest_dead)
        )
    ):
        table[destination]["error"] = error
    return sorted(table.values(), key=lambda e: e["name"])


def followup_log(
    session: Session,
    campaign: Campaign,
    *,
    person: str = "",
    rule: str = "",
    channel: str = "",
    status: str = "",
    page: int = 1,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """The campaign's follow-ups, newest first, with who they went to and the text sent; only
    those of a person (a part of their name, email, handle or phone), a rule, a channel or a
    status if given. One query per page: the `page`-th of `limit`, or the first `limit` older
    than follow-up `before`."""
    page = _bounded(page)
    query = (
        sa_select(
            col(FollowUp.id),
            col(FollowUp.rule_id),
            col(FollowUp.channel),
            col(FollowUp.status),
            col(FollowUp.reason),
            col(FollowUp.due_at),
            col(Contact.given_name),
            col(Contact.family_name),
            col(Contact.email),
            col(Contact.handle),
            col(Contact.phone),
            col(OutboxMessage.payload),
            col(OutboxMessage.sent_at),
        )
        .join(Contact, col(Contact.id) == col(FollowUp.contact_id))
        .outerjoin(OutboxMessage, col(OutboxMessage.id) == col(FollowUp.outbox_id))
        .where(col(FollowUp.campaign_id) == campaign.id)
    )
    if rule:
        query = query.where(col(FollowUp.rule_id) == rule[:SEARCH_LIMIT])
    if channel:
        query = query.where(col(FollowUp.channel) == channel[:SEARCH_LIMIT])
    if status:
        query = query.where(col(FollowUp.status) == status[:SEARCH_LIMIT])
    if person.strip():
        query = query.where(_matches_person(person))
    if before is not None:
        query = query.where(col(FollowUp.id) < before)
    rows = session.execute(
        query.order_by(col(FollowUp.id).desc()).limit(limit + 1).offset((page - 1) * limit)
    ).all()
    shown = [_followup(row) for row in rows[:limit]]
    return Page(shown, page, len(rows) > limit)


def _matches_person(person: str) -> Any:
    """A part of a person's name, email, handle (with or without its @) or phone."""
    term = person.strip()[:SEARCH_LIMIT].lower().lstrip("@")
    pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    name = (
        func.coalesce(col(Contact.given_name), "")
        + " "
        + func.coalesce(col(Contact.family_name), "")
    )
    return or_(
        *(
            func.lower(field).like(pattern, escape="\\")
            for field in (col(Contact.email), col(Contact.handle), col(Contact.phone), name)
        )
    )


def _followup(row: Any) -> dict[str, Any]:
    payload = row.payload or {}
    name = " ".join(filter(None, (row.given_name, row.family_name)))
    return {
        "id": row.id,
        "rule": row.rule_id,
        "channel": row.channel,
        "status": row.status,
        "reason": row.reason,
        "due_at": row.due_at,
        "sent_at": row.sent_at,
        "person": name or (f"@{row.handle}" if row.handle else row.email or row.phone or ""),
        "handle": row.handle,
        "email": row.email,
        "to": payload.get("to") or payload.get("recipient") or "",
        "subject": payload.get("subject") or "",
        "text": payload.get("text") or "",
    }


def audit_log(session: Session, campaign: Campaign, *, page: int = 1) -> Page:
    """The audit entries about the campaign, its briefs, roster, creatives and their review
    tasks, newest first, a page at a time."""
    page = _bounded(page)
    cid = campaign.id

    def ids(column: Any, where: Any) -> Any:
        return sa_select(cast(column, String)).where(where)

    drafts = sa_select(col(CreativeDraft.id)).join(
        Creative, col(Creative.id) == col(CreativeDraft.creative_id)
    )
    entity = (col(AuditEvent.entity_type), col(AuditEvent.entity_id))
    about = or_(
        and_(entity[0] == "campaign", entity[1] == campaign.slug),
        and_(entity[0] == "creative", entity[1].in_(ids(Creative.id, Creative.campaign_id == cid))),
        and_(entity[0] == "brief", entity[1].in_(ids(Brief.id, Brief.campaign_id == cid))),
        and_(
            entity[0] == "roster_member",
            entity[1].in_(ids(RosterMember.id, RosterMember.campaign_id == cid)),
        ),
        and_(
            entity[0] == "review_task",
            entity[1].in_(
                ids(
                    ReviewTask.id,
                    col(ReviewTask.draft_id).in_(drafts.where(col(Creative.campaign_id) == cid)),
                )
            ),
        ),
    )
    rows = session.execute(
        sa_select(
            col(AuditEvent.seq),
            col(AuditEvent.at),
            col(AuditEvent.actor),
            col(AuditEvent.action),
            col(AuditEvent.summary),
        )
        .where(about)
        .order_by(col(AuditEvent.seq).desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    shown = [row._asdict() for row in rows[:PAGE_SIZE]]
    return Page(shown, page, len(rows) > PAGE_SIZE)


def _bounded(page: int) -> int:
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page must be between 1 and {MAX_PAGE} (got {page})")
    return page


@dataclass(frozen=True)
class ChainCheck:
    """A verification of the whole audit chain and when it was made."""

    result: Verification
    at: datetime


CHECK_EVERY = timedelta(minutes=10)
_checked: dict[str, ChainCheck] = {}  # this process's newest check of each store
_checking = Lock()


def chain_check(session: Session, *, now: datetime, again: bool = False) -> ChainCheck:
    """Whether the audit chain holds, checked entry by entry (`store.audit.verify`), at most
    once every ten minutes unless asked `again`: a long log takes seconds to walk, and the
    page must not walk it on every view. One check at a time in this process."""
    store = str(session.get_bind().engine.url)
    with _checking:
        last = _checked.get(store)
        if again or last is None or not last.at <= now <= last.at + CHECK_EVERY:
            last = _checked[store] = ChainCheck(verify(session), now)
        return last

"""A campaign's sprint: starting it (the holdout is drawn then, before anyone is followed up),
recording each finished week and its milestones, and where it stands.
"""

import hashlib
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.audit import Change, record, verify
from store.models import (
    Boost,
    Brief,
    Campaign,
    Contract,
    Creative,
    CreativeDraft,
    Creator,
    EngagementEvent,
    FollowUp,
    FollowUpStatus,
    Milestone,
    MilestoneStatus,
    OutboxMessage,
    OutboxStatus,
    PaidMetrics,
    PolicyFinding,
    ReviewTask,
    RosterMember,
    RosterStatus,
    SprintRun,
)
from tasks.campaigns.campaign import campaign_spec, get_campaign
from tasks.campaigns.plan import plan_phases
from tasks.leads.records import CHANNEL as LEAD_CHANNEL
from tasks.payments.ledger import balances
from tasks.reporting.measurement import against_targets, kpis
from tasks.reporting.metrics import read_numbers
from tasks.sprint.calendar import BRIEFS, calendar, recorded
from tasks.webhooks.events import Event, emit, iso

LIVE, REHEARSAL = "live", "rehearsal"


class SprintError(RallyError):
    pass


def sprint_run(session: Session, campaign: Campaign) -> SprintRun | None:
    return session.exec(select(SprintRun).where(SprintRun.campaign_id == campaign.id)).first()


def in_holdout(slug: str, handle: str, seed: int, share: float) -> bool:
    """A stable draw per creator: the same seed always holds out the same creators."""
    digest = hashlib.sha256(f"{seed}:{slug}:{handle}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def start_sprint(
    session: Session,
    slug: str,
    *,
    mode: str,
    seed: int | None,
    now: datetime,
    actor: str,
    sample: float = 1.0,
) -> SprintRun:
    """Record the sprint's start and declare its holdout. A sprint starts once."""
    campaign = get_campaign(session, slug)
    if sprint_run(session, campaign) is not None:
        raise SprintError(
            f"the sprint of {slug} has started already: see 'rally sprint status {slug}'"
        )
    spec = campaign_spec(campaign)
    members = session.exec(
        select(RosterMember, Creator)
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(RosterMember.campaign_id == campaign.id, RosterMember.status == RosterStatus.ACTIVE)
    ).all()
    share = spec.holdout.share if spec.holdout else 0.0
    held = []
    for member, creator in members:
        member.holdout = in_holdout(slug, creator.handle, seed or 0, share)
        session.add(member)
        if member.holdout:
            held.append(creator.handle)
    run = SprintRun(
        campaign_id=campaign.id or 0,
        mode=mode,
        seed=seed,
        sample=sample,
        holdout=sorted(held),
        started_at=now,
    )
    session.add(run)
    summary = (
        f"{mode} sprint of {slug} started"
        + (f" with seed {seed}" if seed is not None else "")
        + f"; {len(held)} of {len(members)} creators held out"
    )
    record(
        session,
        [Change(actor, "sprint.started", "campaign", slug, summary, {"holdout": sorted(held)})],
    )
    session.flush()
    return run


def real_activity(session: Session, campaign: Campaign) -> str | None:
    """What in the store says the campaign is run for real (a live sprint, briefs, drafts,
    engagement): a rehearsal there would write simulated drafts, approvals, emails and leads
    beside the real ones, so it is refused. None when the campaign has none."""
    run = sprint_run(session, campaign)
    if run is not None and run.mode == LIVE:
        return f"its sprint is live (started {run.started_at:%Y-%m-%d})"
    if run is not None:
        return None  # a rehearsal's own store: it goes on
    cid = campaign.id
    found = (
        ("brief(s)", sa_select(func.count()).where(col(Brief.campaign_id) == cid)),
        ("creative(s)", sa_select(func.count()).where(col(Creative.campaign_id) == cid)),
        ("event(s)", sa_select(func.count()).where(col(EngagementEvent.campaign_id) == cid)),
    )
    for what, query in found:
        count = _count(session, query)
        if count:
            return f"it has {count} {what} already"
    return None


def refuse_rehearsal(session: Session, slug: str) -> None:
    """SprintError, saying why and what to do instead, when `slug` is run for real."""
    why = real_activity(session, get_campaign(session, slug))
    if why is not None:
        raise SprintError(
            f"no rehearsal of {slug} here: {why}, and a rehearsal would write simulated drafts, "
            "approvals, emails and leads beside the real ones. Rehearse in a store of its own: "
            f"RALLY_HOME=/tmp/rehearsal rally campaign apply CAMPAIGN.yaml, then "
            f"RALLY_HOME=/tmp/rehearsal rally sprint start {slug} --simulate (or 'rally demo')"
        )


def finish_week(
    session: Session, slug: str, week: int, *, now: datetime, actor: str
) -> list[dict[str, Any]]:
    """Evaluate the milestones due this week and record the week as done. A week already
    closed (by another machine, or before a crash) is left as it is: nothing is audited twice."""
    campaign = get_campaign(session, slug)
    run = sprint_run(session, campaign)
    if run is None:
        raise SprintError(f"the sprint of {slug} has not started: 'rally sprint start {slug}'")
    if week <= run.weeks_done:
        return []
    outcomes = []
    due = session.exec(
        select(Milestone).where(Milestone.campaign_id == campaign.id, Milestone.week == week)
    ).all()
    for milestone in due:
        status, outcome = check_milestone(session, campaign, milestone, run)
        if status == MilestoneStatus.PENDING:
            continue
        milestone.status, milestone.outcome, milestone.evaluated_at = status, outcome, now
        session.add(milestone)
        outcomes.append({"key": milestone.key, "status": status, **outcome})
        record(
            session,
            [
                Change(
                    actor,
                    f"milestone.{status}",
                    "campaign",
                    slug,
                    f"milestone {milestone.key} of {slug}: {status}",
                    outcome,
                )
            ],
        )
    run.weeks_done = max(run.weeks_done, week)
    if week >= campaign.weeks:
        run.finished_at = now
    session.add(run)
    data = {
        "week": week,
        "weeks": campaign.weeks,
        "finished": run.finished_at is not None,
        "milestones": [{"key": o["key"], "status": o["status"]} for o in outcomes],
        "at": iso(now),
    }
    key, subject = f"sprint:{campaign.id}:week:{week}:closed", f"sprint:{campaign.id}"
    closed = Event("sprint.week_closed", key, subject, "sprint", data)
    missed = [missed_event(m, now) for m in due if m.status == MilestoneStatus.MISSED]
    emit(session, campaign.id or 0, [*missed, closed], at=now)
    return outcomes


def mark_milestone(
    session: Session, slug: str, key: str, status: str, *, actor: str, now: datetime, note: str = ""
) -> Milestone:
    """Staff mark a milestone met or missed (those that people judge: the strategy, the reviews,
    the postmortem), with an optional note; marking it again changes the verdict, audited."""
    if status not in (MilestoneStatus.MET, MilestoneStatus.MISSED):
        raise SprintError(f"a milestone is marked met or missed (got {status!r})")
    campaign = get_campaign(session, slug)
    milestone = session.exec(
        select(Milestone).where(Milestone.campaign_id == campaign.id, Milestone.key == key)
    ).first()
    if milestone is None:
        keys = session.exec(select(Milestone.key).where(Milestone.campaign_id == campaign.id))
        raise SprintError(f"{slug} has no milestone {key!r} (its milestones: {', '.join(keys)})")
    outcome = {"marked_by": actor, **({"note": note} if note else {})}
    was = milestone.status
    milestone.status, milestone.outcome, milestone.evaluated_at = status, outcome, now
    session.add(milestone)
    summary = f"milestone {key} of {slug}: {status}, marked by {actor}"
    record(session, [Change(actor, f"milestone.{status}", "campaign", slug, summary, outcome)])
    if status == MilestoneStatus.MISSED and was != MilestoneStatus.MISSED:
        emit(session, campaign.id or 0, [missed_event(milestone, now)], at=now)
    return milestone


def missed_event(milestone: Milestone, now: datetime) -> Event:
    """`milestone.missed`, with the numbers an automatic check judged by (what staff wrote
    when marking one stays out)."""
    outcome = milestone.outcome or {}
    data = {
        "milestone": milestone.key,
        "name": milestone.name,
        "week": milestone.week,
        "due_on": milestone.due_on.isoformat(),
        "check": milestone.check,
        **({} if "marked_by" in outcome else {"outcome": outcome}),
        "at": iso(now),
    }
    key = f"milestone:{milestone.id}:missed:{now:%Y%m%dT%H%M%S%f}"
    return Event("milestone.missed", key, f"milestone:{milestone.id}", "sprint", data)


def check_milestone(
    session: Session, campaign: Campaign, milestone: Milestone, run: SprintRun
) -> tuple[str, dict[str, Any]]:
    """A check's verdict: met or missed with its numbers. A manual milestone is for staff to
    mark; a rehearsal marks it met, as its simulated team would."""
    params = milestone.params or {}
    if milestone.check == "briefs_acknowledged":
        latest = session.exec(
            select(Brief.member_id, func.max(Brief.version), func.max(Brief.acknowledged_at))
            .where(Brief.campaign_id == campaign.id)
            .group_by(col(Brief.member_id))
        ).all()
        acknowledged = sum(1 for _, _, at in latest if at is not None)
        share = acknowledged / len(latest) if latest else 0.0
        wanted = float(params.get("share", 1.0))
        verdict = MilestoneStatus.MET if latest and share >= wanted else MilestoneStatus.MISSED
        return verdict, {"acknowledged": acknowledged, "briefs": len(latest), "share": share}
    if milestone.check == "kpi_progress":
        spec = campaign_spec(campaign)
        numbers = read_numbers(session, campaign, weeks=milestone.week)
        progress = against_targets(kpis(numbers.total), spec.kpis.model_dump())
        wanted = float(params.get("share", 0.8))
        shares = {k: p.share for k, p in progress.items()}
        behind = sorted(k for k, s in shares.items() if s is None or s < wanted)
        verdict = MilestoneStatus.MISSED if behind else MilestoneStatus.MET
        return verdict, {"shares": shares, "behind": behind, "wanted": wanted}
    if run.mode == REHEARSAL:
        return MilestoneStatus.MET, {"note": "marked by the rehearsal's simulated team"}
    return MilestoneStatus.PENDING, {}


def campaign_today(session: Session, campaign: Campaign, now: datetime) -> date:
    """The day a campaign's pages count from: today in its time zone; for a rehearsal, the
    day after its last simulated week, as its clock runs on the plan's calendar, not ours."""
    run = sprint_run(session, campaign)
    if run is not None and run.mode == REHEARSAL:
        return campaign.start_date + timedelta(weeks=run.weeks_done)
    return now.astimezone(ZoneInfo(campaign.timezone)).date()


def sprint_status(session: Session, slug: str, *, today: datetime) -> dict[str, Any]:
    campaign = get_campaign(session, slug)
    spec = campaign_spec(campaign)
    run = sprint_run(session, campaign)
    week = run.weeks_done if run and run.mode == REHEARSAL else _calendar_week(campaign, today)
    phase = next((p.name for p in plan_phases(spec) if p.first_week <= week <= p.last_week), "")
    milestones = session.exec(
        select(Milestone).where(Milestone.campaign_id == campaign.id).order_by(col(Milestone.week))
    ).all()
    return {
        "campaign": slug,
        "started": run is not None,
        "mode": run.mode if run else None,
        "seed": run.seed if run else None,
        "week": week,
        "weeks": campaign.weeks,
        "weeks_done": run.weeks_done if run else 0,
        "finished": bool(run and run.finished_at),
        "phase": phase,
        "holdout": run.holdout if run else [],
        "state": run.state if run else None,
        "milestones": [
            {"key": m.key, "name": m.name, "week": m.week, "status": m.status, "why": why(m)}
            for m in milestones
        ],
        "steps": calendar_status(session, campaign),
    }


def why(milestone: Milestone) -> str:
    """A milestone's verdict in words, from the numbers kept with it."""
    outcome = milestone.outcome or {}
    if milestone.status == MilestoneStatus.PENDING:
        return "waits for staff to mark it" if milestone.check == "manual" else "not checked yet"
    if "acknowledged" in outcome:
        return (
            f"{outcome['acknowledged']} of {outcome['briefs']} briefs acknowledged "
            f"({outcome['share']:.0%}; {float((milestone.params or {}).get('share', 1.0)):.0%} "
            "wanted)"
        )
    if "behind" in outcome:
        wanted = f"{float(outcome.get('wanted', 0.8)):.0%} of each target wanted"
        behind = ", ".join(k.replace("_", " ") for k in outcome["behind"])
        return f"behind on {behind} ({wanted})" if behind else f"every KPI on track ({wanted})"
    said = f"marked by {outcome['marked_by']}" if "marked_by" in outcome else ""
    note = outcome.get("note") or ""
    return "; ".join(part for part in (said, note) if part)


def calendar_status(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """Each step of the sprint's calendar: when it is due, and whether it was done (and when)
    or waits for a go-ahead."""
    rows = recorded(session, campaign)
    steps = []
    for step in calendar(campaign_spec(campaign)):
        row = rows.get(step.key)
        status = "to come"
        if row is not None:
            status = row.status
            if row.status == "waiting" and row.go_ahead_at is not None:
                status = "go-ahead given"
        # The weekly look for new or changed briefs matters only when it found some.
        quiet = step.key.startswith(f"{BRIEFS}-w") and (row is None or row.outcome.get("sent") == 0)
        steps.append(
            {
                "key": step.key,
                "title": step.title,
                "due": step.due.isoformat(),
                "when": f"{step.due:%a %b} {step.due.day}",
                "status": status,
                "done_at": row.done_at.isoformat() if row and row.done_at else None,
                "go_ahead_by": row.go_ahead_by if row else None,
                "quiet": quiet,
            }
        )
    return steps


def _calendar_week(campaign: Campaign, today: datetime) -> int:
    days = (today.date() - campaign.start_date).days
    return min(max(days // 7 + 1, 0), campaign.weeks)


def summary(session: Session, slug: str) -> dict[str, Any]:
    """The sprint in counts, every one read from the store."""
    campaign = get_campaign(session, slug)
    cid = campaign.id
    run = sprint_run(session, campaign)
    briefs = _brief_counts(session, cid)
    in_campaign = _drafts_in(cid)
    reviews = _review_decisions(session, in_campaign)
    findings = _failed_rules(session, in_campaign)
    events = _event_counts(session, cid)
    followups, withheld = _followup_counts(session, cid)
    synced = _leads_synced(session, campaign)
    owed = balances(session, campaign)
    verification = verify(session)
    return {
        "campaign": slug,
        "mode": run.mode if run else None,
        "seed": run.seed if run else None,
        "sample": run.sample if run else None,
        "weeks_done": run.weeks_done if run else 0,
        "creators": _count(
            session,
            sa_select(func.count()).where(
                col(RosterMember.campaign_id) == cid,
                col(RosterMember.status) == RosterStatus.ACTIVE,
            ),
        ),
        "holdout_creators": len(run.holdout) if run else 0,
        "briefs": briefs,
        "drafts": _count(session, sa_select(func.count()).select_from(in_campaign.subquery())),
        "reviews": reviews,
        "findings": findings,
        "events": events,
        "followups": followups,
        "withheld": withheld,
        "leads_synced": synced,
        "leads_waiting": _leads_waiting(session, campaign),
        "contracts": _contract_counts(session, cid),
        "payments": {
            "creators": sum(1 for row in owed if row["earned_cents"]),
            "earned_cents": sum(row["earned_cents"] for row in owed),
            "paid_cents": sum(row["paid_cents"] for row in owed),
            "owed_cents": sum(row["owed_cents"] for row in owed),
            "currency": campaign_spec(campaign).budget.currency,
        },
        "boosts": _boost_totals(session, cid),
        "audit": {"entries": verification.entries, "verified": verification.ok},
    }


def _boost_totals(session: Session, campaign_id: int | None) -> dict[str, int]:
    """Spark Ads boosts made, and what their pulled paid figures add up to."""
    boosts = session.exec(select(Boost.id).where(Boost.campaign_id == campaign_id)).all()
    spend, conversions = session.execute(
        sa_select(
            func.coalesce(func.sum(PaidMetrics.spend_cents), 0),
            func.coalesce(func.sum(PaidMetrics.conversions), 0),
        ).where(col(PaidMetrics.boost_id).in_(boosts))
    ).one()
    return {"boosts": len(boosts), "spend_cents": int(spend), "conversions": int(conversions)}


def _contract_counts(session: Session, campaign_id: int | None) -> dict[str, int]:
    """Creators offered a contract, and how many versions are signed and countersigned."""
    table = Contract.__table__.c  # type: ignore[attr-defined]
    offered, signed, countersigned = session.execute(
        sa_select(
            func.count(func.distinct(table.member_id)),
            func.count(table.signed_at),
            func.count(table.countersigned_at),
        ).where(table.campaign_id == campaign_id)
    ).one()
    return {"offered": offered, "signed": signed, "countersigned": countersigned}


def _count(session: Session, query: Any) -> int:
    return int(session.execute(query).scalar_one())


def _brief_counts(session: Session, cid: int | None) -> dict[str, int]:
    """Briefs generated, sent and acknowledged, counted in one query."""
    briefs = session.execute(
        sa_select(
            func.count(), func.count(col(Brief.sent_at)), func.count(col(Brief.acknowledged_at))
        ).where(col(Brief.campaign_id) == cid)
    ).one()
    return {"generated": briefs[0], "sent": briefs[1], "acknowledged": briefs[2]}


def _drafts_in(cid: int | None) -> Select[Any]:
    """The ids of the campaign's drafts, as a subquery the counts below filter by."""
    return (
        sa_select(col(CreativeDraft.id))
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .where(col(Creative.campaign_id) == cid)
    )


def _review_decisions(session: Session, in_campaign: Select[Any]) -> dict[str, int]:
    """Decided review tasks by "tier: status"."""
    decisions = Counter(
        f"{tier}: {status}"
        for tier, status in session.execute(
            sa_select(col(ReviewTask.tier), col(ReviewTask.status)).where(
                col(ReviewTask.draft_id).in_(in_campaign),
                col(ReviewTask.decided_at).is_not(None),
            )
        )
    )
    return dict(sorted(decisions.items()))


def _failed_rules(session: Session, in_campaign: Select[Any]) -> dict[str, int]:
    """Failed policy findings by rule."""
    findings = Counter(
        rule
        for (rule,) in session.execute(
            sa_select(col(PolicyFinding.rule_id)).where(
                col(PolicyFinding.draft_id).in_(in_campaign), col(PolicyFinding.passed).is_(False)
            )
        )
    )
    return dict(sorted(findings.items()))


def _event_counts(session: Session, cid: int | None) -> dict[str, int]:
    events = dict(
        session.execute(
            sa_select(col(EngagementEvent.type), func.count())
            .where(col(EngagementEvent.campaign_id) == cid)
            .group_by(col(EngagementEvent.type))
        ).all()
    )
    return dict(sorted(events.items()))


def _followup_counts(session: Session, cid: int | None) -> tuple[dict[str, int], dict[str, int]]:
    """Follow-ups by status, and the withheld ones by the kind of reason (the part of the
    reason before its first colon), from one grouped query."""
    followups = session.execute(
        sa_select(col(FollowUp.status), col(FollowUp.reason), func.count())
        .where(col(FollowUp.campaign_id) == cid)
        .group_by(col(FollowUp.status), col(FollowUp.reason))
    ).all()
    withheld: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    for status, reason, n in followups:
        by_status[status] += n
        if status == FollowUpStatus.WITHHELD:
            withheld[(reason or "").split(":")[0]] += n
    return dict(sorted(by_status.items())), dict(sorted(withheld.items()))


def _leads_waiting(session: Session, campaign: Campaign) -> dict[str, int]:
    """Lead messages still queued, by destination name (one not configured here keeps its
    leads until it is)."""
    rows = session.execute(
        sa_select(col(OutboxMessage.destination), func.count())
        .where(
            col(OutboxMessage.channel) == LEAD_CHANNEL,
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            col(OutboxMessage.destination).like(f"{campaign.id}:%"),
        )
        .group_by(col(OutboxMessage.destination))
    ).all()
    return {str(key).split(":", 1)[1]: int(n) for key, n in rows}


def _leads_synced(session: Session, campaign: Campaign) -> int:
    """Contacts sent to at least one of the campaign's lead destinations."""
    return _count(
        session,
        sa_select(func.count(func.distinct(col(OutboxMessage.subject_id)))).where(
            col(OutboxMessage.channel) == LEAD_CHANNEL,
            col(OutboxMessage.status) == OutboxStatus.SENT,
            col(OutboxMessage.destination).like(f"{campaign.id}:%"),
        ),
    )

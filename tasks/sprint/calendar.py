"""The sprint's calendar: what Rally does by itself, week by week, and what it has done.

The steps come from the campaign's plan (its start, draft-due and posting weeks, milestones),
so a campaign file applied again mid-sprint changes the steps still to come. Each step is done
once: its work and the row that says it was done (`SprintStep`) commit together, so a step
interrupted by a crash is done again in full on the next pass, and a sprint whose process was
down catches up on every missed step in order. The same steps run in a rehearsal, on its
simulated clock, and on the calendar (the `sprint-calendar` flow); only who acts differs.

Steps that need people say so by email (the outbox, like every other message):
- `briefs` (the sprint's first day): the briefs are generated and staff are asked for the
  go-ahead; once given (`rally sprint approve SLUG briefs`, or the `sprint-go-ahead` flow from
  the Prefect UI), they are sent;
- `briefs-wNN` (each later week's start): the same for creators added to the roster, or briefs
  changed by a campaign applied again, since; nothing to ask when there are none;
- `draft-reminders` (days before the drafts are due): creators with a brief and no draft;
- `drafts-missing` (when they are due): staff, with the creators still missing;
- `posting-reminders-wNN` (each posting week): creators with an approved video not posted;
- `milestone-KEY` (a milestone people judge, at its week's start): its owner, with the data;
- `close-wNN` (each week's end): the week closed (milestones checked), its report stored and
  a digest to staff; the last week's adds the postmortem and a draft of the next plan.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.errors import RallyError
from store.audit import Change, record
from store.models import (
    Brief,
    Campaign,
    Creative,
    CreativeStatus,
    Creator,
    Milestone,
    MilestoneStatus,
    RosterMember,
    RosterStatus,
    SprintRun,
    SprintState,
    SprintStep,
)
from tasks.briefs.emails import brief_link
from tasks.briefs.run import latest_briefs
from tasks.campaigns.campaign import campaign_spec, get_campaign, running_live_sprints, staff
from tasks.campaigns.plan import plan_milestones, plan_phases
from tasks.outbox import enqueue
from tasks.reporting.report import build_report
from tasks.review.approvers import sign_in_link
from tasks.sprint.week import week_bounds

BRIEFS = "briefs"
RUNNING, PAUSED, STOPPED = SprintState.RUNNING, SprintState.PAUSED, SprintState.STOPPED


class Kind(StrEnum):
    BRIEFS = "briefs"
    DRAFT_REMINDERS = "draft-reminders"
    DRAFTS_MISSING = "drafts-missing"
    POSTING_REMINDERS = "posting-reminders"
    MILESTONE_PROMPT = "milestone"
    CLOSE = "close"


class StepStatus(StrEnum):
    WAITING = "waiting"  # for staff's go-ahead
    DONE = "done"


class CalendarError(RallyError):
    pass


@dataclass(frozen=True)
class Step:
    key: str
    kind: Kind
    week: int
    due: datetime
    title: str
    milestone: str = ""  # a milestone prompt's milestone key

    @property
    def needs_go_ahead(self) -> bool:
        return self.kind == Kind.BRIEFS


def calendar(spec: CampaignSpec) -> list[Step]:
    """Every step of the sprint, in the order they come due (a week's close before the next
    week's steps)."""
    start, weeks = spec.sprint.start, spec.sprint.weeks
    first, _ = week_bounds(start, 1)
    steps = [Step(BRIEFS, Kind.BRIEFS, 1, first, "Briefs: generated, then sent on the go-ahead")]
    for week in range(2, weeks + 1):
        steps.append(
            Step(
                f"briefs-w{week:02d}",
                Kind.BRIEFS,
                week,
                week_bounds(start, week)[0],
                f"Week {week}: briefs for creators added, or a campaign changed, since",
            )
        )
    draft_week = min(spec.brief.draft_due_week, weeks)
    _, drafts_due = week_bounds(start, draft_week)
    reminder_days = spec.brief.draft_reminder_days
    if reminder_days:
        steps.append(
            Step(
                "draft-reminders",
                Kind.DRAFT_REMINDERS,
                draft_week,
                max(drafts_due - timedelta(days=reminder_days), first),
                f"Draft reminders ({reminder_days} day(s) before drafts are due)",
            )
        )
    steps.append(
        Step("drafts-missing", Kind.DRAFTS_MISSING, draft_week, drafts_due, "Missing drafts")
    )
    posting_first, posting_last = spec.brief.posting_weeks
    for week in range(posting_first, min(posting_last, weeks) + 1):
        steps.append(
            Step(
                f"posting-reminders-w{week:02d}",
                Kind.POSTING_REMINDERS,
                week,
                week_bounds(start, week)[0],
                f"Week {week}: reminders to post approved videos",
            )
        )
    for milestone in plan_milestones(spec):
        if milestone.check == "manual":
            steps.append(
                Step(
                    f"milestone-{milestone.key}",
                    Kind.MILESTONE_PROMPT,
                    milestone.week,
                    week_bounds(start, milestone.week)[0],
                    f"{milestone.name}: its owner asked to mark it",
                    milestone=milestone.key,
                )
            )
    for week in range(1, weeks + 1):
        steps.append(
            Step(
                f"close-w{week:02d}",
                Kind.CLOSE,
                week,
                week_bounds(start, week)[1],
                f"Week {week}: close, report and digest",
            )
        )
    order = {Kind.CLOSE: 0}
    return sorted(steps, key=lambda s: (s.due, order.get(s.kind, 1)))


def step_named(campaign: Campaign, key: str) -> Step:
    steps = calendar(campaign_spec(campaign))
    step = next((s for s in steps if s.key == key), None)
    if step is None:
        raise CalendarError(
            f"{campaign.slug} has no step {key!r} (its steps: {', '.join(s.key for s in steps)})"
        )
    return step


def recorded(session: Session, campaign: Campaign) -> dict[str, SprintStep]:
    rows = session.exec(select(SprintStep).where(SprintStep.campaign_id == campaign.id)).all()
    return {row.key: row for row in rows}


def steps_due(session: Session, campaign: Campaign, *, now: datetime) -> list[Step]:
    """The steps due by `now` and not done, in order; a step waiting for its go-ahead is among
    them once the go-ahead is given."""
    done = recorded(session, campaign)
    due = []
    for step in calendar(campaign_spec(campaign)):
        if step.due > now:
            break
        row = done.get(step.key)
        if row is None or (row.status == StepStatus.WAITING and row.go_ahead_at is not None):
            due.append(step)
    return due


def needs_new_briefs(session: Session, campaign: Campaign) -> bool:
    """Whether a creator has no brief yet, or the campaign changed since briefs were last sent
    (so that generating them may make new versions): cheap, so a week with neither asks
    nothing."""
    last = session.exec(
        select(SprintStep)
        .where(
            SprintStep.campaign_id == campaign.id,
            col(SprintStep.key).startswith(BRIEFS),
            SprintStep.status == StepStatus.DONE,
        )
        .order_by(col(SprintStep.due_at).desc())
    ).first()
    if last is None or last.outcome.get("spec_hash") != campaign.spec_hash:
        return True
    briefed = select(Brief.member_id).where(Brief.campaign_id == campaign.id)
    return (
        session.exec(
            select(RosterMember.id).where(
                RosterMember.campaign_id == campaign.id,
                RosterMember.status == RosterStatus.ACTIVE,
                col(RosterMember.id).not_in(briefed),
            )
        ).first()
        is not None
    )


def briefs_to_send(session: Session, campaign: Campaign) -> list[str]:
    """Handles of active creators whose latest brief has not been sent: new creators, or a new
    version after the campaign changed."""
    handles = dict(
        session.exec(
            select(RosterMember.id, Creator.handle)
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(
                RosterMember.campaign_id == campaign.id,
                RosterMember.status == RosterStatus.ACTIVE,
            )
        ).all()
    )
    latest = latest_briefs(session, [m for m in handles if m is not None])
    return sorted(handles[m] for m, brief in latest.items() if brief.sent_at is None)


def live_sprints(session: Session) -> list[str]:
    """The slugs of the live sprints that are running (not paused, stopped or finished)."""
    return [slug for _, slug in running_live_sprints(session)]


def mark(
    session: Session,
    campaign: Campaign,
    step: Step,
    status: StepStatus,
    *,
    now: datetime,
    outcome: dict[str, Any],
) -> None:
    """Record the step's new status in the caller's transaction (with the work it did)."""
    row = session.get(SprintStep, (campaign.id, step.key))
    if row is None:
        row = SprintStep(campaign_id=campaign.id or 0, key=step.key, due_at=step.due, status=status)
    row.status, row.done_at, row.outcome = status, now, outcome
    session.add(row)


def ask_go_ahead(
    session: Session,
    campaign: Campaign,
    step: Step,
    made: dict[str, Any],
    *,
    now: datetime,
    public_url: str,
) -> None:
    """The step waits for staff's go-ahead, and staff are asked for it."""
    spec = campaign_spec(campaign)
    mark(session, campaign, step, StepStatus.WAITING, now=now, outcome=made)
    waiting = made.get("to_send", [])
    who = f"{len(waiting)} creator(s)"
    if step.key != BRIEFS:
        who += " (added, or whose brief changed with the campaign): " + ", ".join(
            f"@{h}" for h in waiting[:20]
        )
    text = (
        f"The briefs of {spec.name} are generated for {who}, and wait for your go-ahead "
        "before they are sent.\n\n"
        f"Read them: rally briefs show {campaign.slug} HANDLE (or each creator's brief page)\n"
        f"To change something, edit the campaign file and apply it again; the briefs are made "
        "again when they are sent.\n\n"
        f"Give the go-ahead: rally sprint approve {campaign.slug} {step.key}\n"
        "(or run the sprint-go-ahead flow from the Prefect UI)\n"
    )
    subject = f"{spec.name}: briefs wait for your go-ahead"
    tell_staff(session, campaign, step, subject, text, public_url=public_url, now=now)


def give_go_ahead(
    session: Session, slug: str, key: str, *, actor: str, now: datetime, note: str = ""
) -> bool:
    """Staff's go-ahead for a step that waits for one (the next pass of the calendar does it);
    False when it was given already."""
    campaign = get_campaign(session, slug)
    steps = calendar(campaign_spec(campaign))
    step = next((s for s in steps if s.key == key), None)
    if step is None or not step.needs_go_ahead:
        waits = ", ".join(s.key for s in steps if s.needs_go_ahead)
        raise CalendarError(
            f"{slug} has no step {key!r} that waits for a go-ahead (those: {waits})"
        )
    row = session.get(SprintStep, (campaign.id, key))
    if row is None:
        raise CalendarError(
            f"{slug}'s step {key!r} is not ready yet: it comes due {step.due:%Y-%m-%d}"
        )
    if row.status == StepStatus.DONE:
        raise CalendarError(f"{slug}'s step {key!r} is done already")
    if row.go_ahead_at is not None:
        return False
    row.go_ahead_by, row.go_ahead_at = actor, now
    session.add(row)
    summary = f"go-ahead for {key} of {slug}" + (f": {note}" if note else "")
    details = {"note": note} if note else {}
    record(session, [Change(actor, "sprint.go_ahead", "campaign", slug, summary, details)])
    return True


def note_outcome(session: Session, campaign: Campaign, key: str, **more: Any) -> None:
    """Add to what a recorded step keeps of its outcome."""
    row = session.get(SprintStep, (campaign.id, key))
    if row is not None:
        row.outcome = {**row.outcome, **more}
        session.add(row)


def set_state(session: Session, slug: str, state: str, *, actor: str, now: datetime) -> SprintRun:
    """Pause, resume or stop a live sprint. A paused sprint's steps wait and are caught up on,
    in order, when it resumes; a stopped one does nothing more."""
    campaign = get_campaign(session, slug)
    run = session.exec(select(SprintRun).where(SprintRun.campaign_id == campaign.id)).first()
    if run is None:
        raise CalendarError(f"the sprint of {slug} has not started: 'rally sprint start {slug}'")
    if run.state == STOPPED or run.finished_at is not None:
        raise CalendarError(f"the sprint of {slug} is over: it cannot be {state} now")
    if run.state != state:
        run.state = state
        if state == STOPPED:
            run.finished_at = now
        session.add(run)
        record(
            session,
            [Change(actor, f"sprint.{state}", "campaign", slug, f"sprint of {slug} {state}")],
        )
    return run


# -- who is told, and what ---------------------------------------------------------------------


def email(to: str, subject: str, text: str, key: str) -> dict[str, Any]:
    return {
        "channel": "email",
        "destination": "sprint",
        "idempotency_key": key,
        "subject_type": "sprint",
        "subject_id": key.split(":")[1],
        "payload": {"to": to, "subject": subject, "text": text},
    }


def tell_staff(
    session: Session,
    campaign: Campaign,
    step: Step,
    subject: str,
    text: str,
    *,
    public_url: str,
    now: datetime,
) -> int:
    """Queue one email to each staff member, ending with a sign-in link of their own to the
    sprint's page (single use, 72 hours; scrubbed from the store once sent, like reviewers'
    links); how many were new."""
    messages = []
    for person in staff(campaign_spec(campaign)):
        link = sign_in_link(
            session, person, public_url=public_url, now=now, next_path=f"/sprint/{campaign.slug}"
        )
        signed = f"{text}\nThe sprint's page, signed in as you (one use, 72 hours):\n{link}\n"
        messages.append(email(person, subject, signed, f"sprint:{campaign.id}:{step.key}:{person}"))
    return enqueue(session, messages)


def to_creator(creator: Creator, subject: str, body: str, key: str) -> dict[str, Any]:
    """An email to a creator (who has an address), greeting them by name."""
    assert creator.email is not None
    greeting = f"Hi {creator.name or '@' + creator.handle},\n\n"
    return email(creator.email, subject, greeting + body, key)


def _creators_with_briefs(session: Session, campaign: Campaign) -> list[tuple[int, Creator, Brief]]:
    """Active members with a sent brief: the member's id, the creator and the latest brief."""
    latest = (
        select(Brief.member_id, func.max(Brief.version).label("version"))
        .where(Brief.campaign_id == campaign.id, col(Brief.sent_at).is_not(None))
        .group_by(col(Brief.member_id))
        .subquery()
    )
    rows = session.exec(
        select(RosterMember.id, Creator, Brief)
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .join(latest, latest.c.member_id == col(RosterMember.id))
        .join(
            Brief,
            (col(Brief.member_id) == latest.c.member_id) & (col(Brief.version) == latest.c.version),
        )
        .where(RosterMember.campaign_id == campaign.id, RosterMember.status == RosterStatus.ACTIVE)
        .order_by(col(Creator.handle))
    ).all()
    return [(int(member_id or 0), creator, brief) for member_id, creator, brief in rows]


def _members_with_drafts(session: Session, campaign: Campaign) -> set[int]:
    return set(
        session.exec(
            select(Creative.member_id).where(
                Creative.campaign_id == campaign.id, Creative.current_version >= 1
            )
        ).all()
    )


def remind_drafts(
    session: Session, campaign: Campaign, step: Step, *, public_url: str, now: datetime
) -> dict[str, Any]:
    spec = campaign_spec(campaign)
    _, due = week_bounds(spec.sprint.start, step.week)
    drafted = _members_with_drafts(session, campaign)
    messages = []
    for member_id, creator, brief in _creators_with_briefs(session, campaign):
        if member_id in drafted or not creator.email:
            continue
        body = (
            f"Your first draft for {spec.name} is due by {due - timedelta(days=1):%A %B %d}. "
            "Your brief, and the place to upload the draft, are here:\n"
            f"{brief_link(public_url, brief.token)}\n\n"
            "Reply to this email if anything is in the way.\n"
        )
        subject = f"{spec.name}: your draft is due {due - timedelta(days=1):%b %d}"
        key = f"sprint:{campaign.id}:{step.key}:{member_id}"
        messages.append(to_creator(creator, subject, body, key))
    return {"reminded": enqueue(session, messages)}


def report_missing_drafts(
    session: Session, campaign: Campaign, step: Step, *, public_url: str, now: datetime
) -> dict[str, Any]:
    spec = campaign_spec(campaign)
    drafted = _members_with_drafts(session, campaign)
    missing = [
        creator.handle
        for member_id, creator, _ in _creators_with_briefs(session, campaign)
        if member_id not in drafted
    ]
    if not missing:
        return {"missing": []}
    text = (
        f"{len(missing)} creator(s) on {spec.name} have no first draft in, and drafts were due "
        f"this week:\n\n" + "\n".join(f"- @{h}" for h in missing) + "\n"
    )
    subject = f"{spec.name}: {len(missing)} draft(s) missing"
    tell_staff(session, campaign, step, subject, text, public_url=public_url, now=now)
    return {"missing": missing}


def remind_posting(
    session: Session, campaign: Campaign, step: Step, *, public_url: str, now: datetime
) -> dict[str, Any]:
    spec = campaign_spec(campaign)
    approved = session.exec(
        select(Creative, Creator)
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(Creative.campaign_id == campaign.id, Creative.status == CreativeStatus.APPROVED)
        .order_by(col(Creative.id))
    ).all()
    messages = []
    for creative, creator in approved:
        if not creator.email:
            continue
        body = (
            f'"{creative.title}" was approved for {spec.name} and is not posted yet. '
            f"Please post it this week (posting runs through week {spec.brief.posting_weeks[1]}), "
            "with the disclosure exactly as approved.\n"
        )
        subject = f"{spec.name}: your approved video is ready to post"
        key = f"sprint:{campaign.id}:{step.key}:{creative.id}"
        messages.append(to_creator(creator, subject, body, key))
    return {"reminded": enqueue(session, messages)}


def prompt_milestone(
    session: Session, campaign: Campaign, step: Step, *, public_url: str, now: datetime
) -> dict[str, Any]:
    spec = campaign_spec(campaign)
    planned = next(m for m in plan_milestones(spec) if m.key == step.milestone)
    owners = [planned.owner] if planned.owner else staff(spec)
    lines = [
        f'The milestone "{planned.name}" of {spec.name} is due by {planned.due_on:%A %B %d} '
        f"(week {planned.week}).",
        "",
    ]
    if step.week > 1:
        lines += numbers(build_report(session, campaign.slug, week=step.week - 1))
        lines += ["", f"The report: {public_url}/reports/{campaign.slug}/week-{step.week - 1}", ""]
    lines.append(
        f"When it is done, mark it: rally sprint milestone {campaign.slug} {planned.key} met "
        "(or missed, with --note saying what was decided)"
    )
    text = "\n".join(lines) + "\n"
    messages = [
        email(
            owner,
            f"{spec.name}: {planned.name} is due",
            text,
            f"sprint:{campaign.id}:{step.key}:{owner}",
        )
        for owner in owners
    ]
    return {"prompted": owners, "queued": enqueue(session, messages)}


def digest(
    session: Session,
    campaign: Campaign,
    step: Step,
    report: dict[str, Any],
    *,
    public_url: str,
    now: datetime,
) -> dict[str, Any]:
    """The week's digest to staff: the numbers, what needs a decision, where to read more."""
    spec = campaign_spec(campaign)
    phase = next(
        (p.name for p in plan_phases(spec) if p.first_week <= step.week <= p.last_week), ""
    )
    lines = [
        f"{spec.name}, week {step.week} of {campaign.weeks}" + (f" ({phase})" if phase else ""),
        "",
    ]
    lines += numbers(report)
    decisions = needs_decision(session, campaign, week=step.week)
    lines += ["", "Needs a decision:" if decisions else "Nothing needs a decision this week."]
    lines += [f"- {item}" for item in decisions]
    milestones = session.exec(
        select(Milestone).where(Milestone.campaign_id == campaign.id, Milestone.week == step.week)
    ).all()
    for m in milestones:
        lines.append(f"Milestone {m.name}: {m.status}")
    recommendation = report.get("recommendation")
    if recommendation and any(m.check == "kpi_progress" for m in milestones):
        lines += [
            "",
            f"Budget: {recommendation['action']} ({'; '.join(recommendation['because'])})",
        ]
    lines += ["", f"The week's report: {public_url}/reports/{campaign.slug}/week-{step.week}"]
    subject = f"{spec.name}: week {step.week} digest"
    if step.week >= campaign.weeks:
        subject = f"{spec.name}: the sprint is over: postmortem and next plan"
        lines.append(
            "The postmortem is the final report above; the next sprint's plan draft is beside it."
        )
    return {
        "digest": tell_staff(
            session,
            campaign,
            step,
            subject,
            "\n".join(lines) + "\n",
            public_url=public_url,
            now=now,
        )
    }


EMAIL_STEPS = {
    Kind.DRAFT_REMINDERS: remind_drafts,
    Kind.DRAFTS_MISSING: report_missing_drafts,
    Kind.POSTING_REMINDERS: remind_posting,
    Kind.MILESTONE_PROMPT: prompt_milestone,
}


def numbers(report: dict[str, Any]) -> list[str]:
    """The KPIs against their targets, a line each."""
    lines = [f"The numbers up to week {report['week']}:"]
    for name, progress in report["progress"].items():
        share = progress.get("share")
        shown = [_figure(name, v) for v in (progress.get("value"), progress.get("target"))]
        lines.append(
            f"- {name.replace('_', ' ')}: {shown[0]} of {shown[1]}"
            + (f" ({share:.0%} of the target)" if share is not None else "")
        )
    return lines


@dataclass(frozen=True)
class Decision:
    """Something staff are waiting on: a step's go-ahead, or a milestone to mark."""

    kind: str  # "go-ahead" or "milestone"
    key: str  # the step's or the milestone's
    title: str
    since: datetime | None = None  # a go-ahead's: when the step began to wait
    detail: list[str] = field(default_factory=list)  # a go-ahead's: the creators it sends to


def open_decisions(session: Session, campaign: Campaign, *, week: int) -> list[Decision]:
    """The go-aheads steps wait for, then the milestones people judge that are due by `week`
    and not yet marked."""
    titles = {s.key: s.title for s in calendar(campaign_spec(campaign))}
    waiting = session.exec(
        select(SprintStep)
        .where(
            SprintStep.campaign_id == campaign.id,
            SprintStep.status == StepStatus.WAITING,
            col(SprintStep.go_ahead_at).is_(None),
        )
        .order_by(col(SprintStep.due_at))
    ).all()
    pending = session.exec(
        select(Milestone)
        .where(
            Milestone.campaign_id == campaign.id,
            Milestone.week <= week,
            Milestone.status == MilestoneStatus.PENDING,
        )
        .order_by(col(Milestone.week))
    ).all()
    return [
        Decision(
            "go-ahead",
            row.key,
            titles.get(row.key, row.key),
            row.done_at,
            list(row.outcome.get("to_send", [])),
        )
        for row in waiting
    ] + [Decision("milestone", m.key, f"{m.name} (week {m.week})") for m in pending]


def needs_decision(session: Session, campaign: Campaign, *, week: int) -> list[str]:
    """`open_decisions` as lines of a digest, each with the command that settles it."""
    lines = []
    for item in open_decisions(session, campaign, week=week):
        if item.kind == "go-ahead":
            lines.append(
                f"the go-ahead for {item.key}: rally sprint approve {campaign.slug} {item.key}"
            )
        else:
            lines.append(
                f"milestone {item.title}: rally sprint milestone {campaign.slug} {item.key} met"
            )
    return lines


def _figure(name: str, value: Any) -> str:
    """A KPI's value as staff read it: rates in percent, costs in money, counts with commas."""
    if value is None:
        return "-"
    if name.endswith("_rate"):
        return f"{value:.1%}"
    if name in ("cpa", "cost_per_engaged_user"):
        return f"${value:,.2f}"
    return f"{value:,.0f}"

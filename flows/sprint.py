"""The sprint: `sprint` starts a campaign's sprint on the calendar or rehearses it;
`sprint-calendar` does each live sprint's steps as they come due (`tasks.sprint.calendar`:
briefs on the go-ahead, reminders, prompts, each week's close, report and digest);
`sprint-go-ahead` gives staff's go-ahead from the Prefect UI; `report` reports a campaign up to
a week, by hand.

A rehearsal runs the same calendar in one flow run on a simulated clock, each step at its own
moment and the go-ahead given by a simulated staff member: per week the steps due by its start,
one task for the simulated people, the same tasks the recurring flows run (review deadlines,
the rules, delivery, lead sync), then the steps due by its end (the week's close).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.input import RunInput
from pydantic import Field
from sqlalchemy import Engine

from config.settings import get_settings
from flows.briefing import generate
from flows.delivery import deliver_all, deliver_email_task
from flows.engagement import apply_all
from flows.leads import drain
from flows.review import fire_timers
from store.db import Lock, only_one, open_store, transaction
from store.types import clock, utcnow
from tasks import progress
from tasks.campaigns.campaign import campaign_spec, get_campaign, staff
from tasks.payments.ledger import earn_due
from tasks.payments.payouts import pay, rehearse_payouts
from tasks.reporting.report import build_report, weeks_so_far
from tasks.reporting.stored import keep_report
from tasks.sprint.calendar import (
    BRIEFS,
    EMAIL_STEPS,
    CalendarError,
    Kind,
    Step,
    StepStatus,
    ask_go_ahead,
    briefs_to_send,
    digest,
    give_go_ahead,
    live_sprints,
    mark,
    needs_new_briefs,
    note_outcome,
    recorded,
    step_named,
    steps_due,
)
from tasks.sprint.next_plan import write_next_plan
from tasks.sprint.state import (
    LIVE,
    REHEARSAL,
    finish_week,
    refuse_rehearsal,
    sprint_run,
    start_sprint,
    summary,
)
from tasks.sprint.week import rehearse_week, week_bounds

SAMPLE = 0.1


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """Sync flow runs wait about a second on their heartbeat thread when they end; a rehearsal
    or a local timer runs many short ones, so they turn heartbeats off for their own runs."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def report_folder(slug: str, week: int) -> Path:
    return get_settings().home / "reports" / slug / f"week-{week:02d}"


@task(name="start-sprint")
def start(slug: str, mode: str, seed: int | None, at: datetime, sample: float = 1.0) -> list[str]:
    settings = get_settings()
    with transaction(open_store(settings)) as session:
        run = start_sprint(
            session, slug, mode=mode, seed=seed, now=at, actor=settings.actor, sample=sample
        )
        return list(run.holdout)


@task(name="rehearse-week")
def rehearse(slug: str, week: int, seed: int) -> dict[str, Any]:
    settings = get_settings()
    return rehearse_week(open_store(settings), slug, week, seed, public_url=settings.public_url)


@task(name="rehearse-payouts")
def rehearse_payouts_task(slug: str, approvers: list[str], at: datetime) -> dict[str, int]:
    """The week's money in a rehearsal: simulated staff approve what each creator earned and
    it is paid to the rehearsal's payouts folder (`tasks.payments.payouts`)."""
    settings = get_settings()
    engine = open_store(settings)
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        queued = rehearse_payouts(session, campaign, approvers, now=at)
    paid = pay(engine, settings, now=lambda: at, campaign_id=campaign.id)  # never a live one's
    return {"payouts": queued.payouts, "cents": queued.cents, "paid": paid.sent}


@task(name="rehearse-boosts")
def rehearse_boosts_task(slug: str, seed: int, at: datetime) -> dict[str, int]:
    """The week's Spark Ads in a rehearsal (`tasks.rehearsal.boosts`): the posts worth it
    boosted in the amplification weeks, and the boosts' paid figures so far."""
    from tasks.rehearsal.boosts import rehearse_boosts

    return rehearse_boosts(open_store(get_settings()), slug, seed, at=at)


@task(name="weekly-report")
def weekly_report(slug: str, week: int, publish: bool = True) -> str:
    """The report up to `week`, stored (staff read it on Rally's pages) and written to files;
    its weekly table also as a Prefect artifact."""
    engine = open_store(get_settings())
    with transaction(engine, write=False) as session:
        report = build_report(session, slug, week=week)
    return str(_keep(engine, slug, week, report, publish)["html"])


def _keep(
    engine: Engine, slug: str, week: int, report: dict[str, Any], publish: bool
) -> dict[str, Path]:
    paths = keep_report(engine, report, report_folder(slug, week), now=utcnow())
    if publish:
        _publish(slug, week, report)
    return paths


def _publish(slug: str, week: int, report: dict[str, Any]) -> None:
    from prefect.artifacts import create_table_artifact

    columns = ("week", "views", "engagement_rate", "clicks", "signups", "cpa", "spend")
    create_table_artifact(
        key=f"{slug}-weekly".lower().replace("_", "-"),
        table=[{c: row[c] for c in columns} for row in report["weekly"]],
        description=f"{report['campaign']['name']}: KPIs by week, up to week {week}",
    )


@task(name="sprint-step")
def sprint_step(slug: str, key: str, at: datetime, publish: bool = True) -> dict[str, Any]:
    """One step of the sprint's calendar other than the briefs (see `tasks.sprint.calendar`):
    its work and the record that it was done commit together."""
    settings = get_settings()
    engine = open_store(settings)
    with transaction(engine, write=False) as session:
        step = step_named(get_campaign(session, slug), key)
    outcome: dict[str, Any] = {}
    if step.kind == Kind.CLOSE:
        with transaction(engine) as session:
            outcome["milestones"] = finish_week(
                session, slug, step.week, now=at, actor=settings.actor
            )
        with transaction(engine, write=False) as session:
            report = build_report(session, slug, week=step.week)
        paths = _keep(engine, slug, step.week, report, publish)
        outcome["report"] = str(paths["html"])
        if step.week >= report["campaign"]["weeks"]:
            plan = paths["html"].parent / "next-plan.yaml"
            with transaction(engine, write=False) as session:
                write_next_plan(session, slug, report, plan)
            outcome["next_plan"] = str(plan)
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        if step.kind == Kind.CLOSE:
            outcome["postings"] = earn_due(session, campaign, actor=settings.actor, now=at)
            outcome |= digest(
                session, campaign, step, report, public_url=settings.public_url, now=at
            )
        else:
            outcome |= EMAIL_STEPS[step.kind](
                session, campaign, step, public_url=settings.public_url, now=at
            )
        mark(session, campaign, step, StepStatus.DONE, now=at, outcome=outcome)
    return outcome


def briefs_step(slug: str, step: Step, at: datetime, simulated_staff: str | None) -> dict[str, Any]:
    """The briefs, generated when the sprint starts with staff asked for the go-ahead, and
    sent once it is given (a rehearsal's simulated staff give it at once)."""
    settings = get_settings()
    engine = open_store(settings)
    with transaction(engine, write=False) as session:
        waiting = recorded(session, get_campaign(session, slug)).get(step.key)
    if waiting is None:
        with transaction(engine, write=False) as session:
            campaign = get_campaign(session, slug)
            new = step.key == BRIEFS or needs_new_briefs(session, campaign)
        made = generate(slug, send=False, at=at) if new else {}
        with transaction(engine, write=False) as session:
            campaign = get_campaign(session, slug)
            made["to_send"] = briefs_to_send(session, campaign) if new else []
        if not made["to_send"]:
            with transaction(engine) as session:
                campaign = get_campaign(session, slug)
                done = {"sent": 0, "spec_hash": campaign.spec_hash}
                mark(session, campaign, step, StepStatus.DONE, now=at, outcome=done)
            return done
        with transaction(engine) as session:
            campaign = get_campaign(session, slug)
            ask_go_ahead(session, campaign, step, made, now=at, public_url=settings.public_url)
        if simulated_staff is None:
            run = start_go_ahead_run(slug, step)
            with transaction(engine) as session:
                note_outcome(session, get_campaign(session, slug), step.key, go_ahead_run=run)
            return {"waiting": "go-ahead", "go_ahead_run": run, **made}
        with transaction(engine) as session:
            give_go_ahead(session, slug, step.key, actor=simulated_staff, now=at)
    sent = generate(slug, send=True, at=at)
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        sent["spec_hash"] = campaign.spec_hash
        mark(session, campaign, step, StepStatus.DONE, now=at, outcome=sent)
    if waiting is not None and waiting.outcome.get("go_ahead_run"):
        end_go_ahead_run(waiting.outcome["go_ahead_run"])
    return sent


GO_AHEAD = "sprint-go-ahead/sprint-go-ahead"


def start_go_ahead_run(slug: str, step: Step) -> str:
    """A `sprint-go-ahead` run that waits, suspended, for staff to resume it from the Prefect
    UI: its id, or why there is none (Rally's deployments are not registered when it runs
    embedded, and then the CLI gives the go-ahead)."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(
            GO_AHEAD,
            parameters={"slug": slug, "step": step.key},
            timeout=0,
            as_subflow=False,
            flow_run_name=f"{slug}: go-ahead for {step.key}",
        )
    except ObjectNotFound:
        return "none: the sprint-go-ahead deployment is not registered ('rally deploy')"
    assert isinstance(run, FlowRun)  # from sync code, the run itself (not a coroutine)
    return str(run.id)


def end_go_ahead_run(run_id: str) -> None:
    """Cancel the go-ahead run still waiting once the go-ahead came another way (the CLI), so
    that the Prefect UI shows no question that was answered already."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        return
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and not run.state.is_final():
            client.set_flow_run_state(
                flow_run_id, Cancelled(message="the go-ahead was given another way"), force=True
            )


def run_calendar(
    slug: str, *, until: datetime, simulated_staff: str | None = None, publish: bool = True
) -> dict[str, Any]:
    """Every step of the sprint due by `until` and not done, in order, each once: on the
    calendar at `until` (now), in a rehearsal each at its own moment with `simulated_staff`
    giving the go-aheads. A week's close publishes its table as an artifact with `publish`.
    A failing step stops the sprint's pass; the next pass retries it."""
    engine = open_store(get_settings())
    with transaction(engine, write=False) as session:
        due = steps_due(session, get_campaign(session, slug), now=until)
    done: dict[str, Any] = {}
    for step in due:
        at = step.due if simulated_staff is not None else until
        if step.kind == Kind.BRIEFS:
            done[step.key] = briefs_step(slug, step, at, simulated_staff)
        else:
            named = sprint_step.with_options(task_run_name=f"{slug}: {step.title}")
            done[step.key] = named(slug, step.key, at, publish=publish)
    return done


@flow(name="sprint")
def run_sprint(
    slug: str,
    simulate: bool = False,
    seed: int = 0,
    weeks: Annotated[int | None, Field(ge=1, le=52)] = None,
    sample: Annotated[float, Field(gt=0, le=1)] = SAMPLE,
) -> dict[str, Any]:
    """Start the campaign's sprint on the calendar (`sprint-calendar` then runs its steps as
    they come due, and the recurring flows the rest), or, with `simulate`, rehearse every
    week now with simulated creators, approvers, staff and audience in the campaign's store.

    Args:
        slug: The campaign's slug, as in its campaign.yaml.
        simulate: Rehearse the sprint now instead of starting it live.
        seed: The rehearsal's seed: the same seed, the same run.
        weeks: Rehearse only this many weeks; empty means all of them.
        sample: Share of the simulated audience met one by one as events, follow-ups and
            leads (the rest is counted in aggregate).
    """
    settings = get_settings()
    with transaction(open_store(settings), write=False) as session:
        campaign = get_campaign(session, slug)
        total_weeks, already = campaign.weeks, sprint_run(session, campaign)
        if simulate:
            refuse_rehearsal(session, slug)
        approvers = staff(campaign_spec(campaign)) or [settings.actor]
        simulated_staff = approvers[0]
    first, _ = week_bounds(campaign.start_date, 1)
    if not simulate:
        start(slug, LIVE, None, utcnow())
        return {"campaign": slug, "mode": LIVE}
    if already is None:
        start(slug, REHEARSAL, seed, first, sample)
    last = min(weeks or total_weeks, total_weeks)
    report = ""
    for week in range((already.weeks_done if already else 0) + 1, last + 1):
        begins, ends = week_bounds(campaign.start_date, week)
        progress.report("week", week - 1, last)
        run_calendar(slug, until=begins, simulated_staff=simulated_staff, publish=False)
        rehearse(slug, week, seed)
        fire_timers(at=ends)
        deliver_email_task(at=ends)
        apply_all(at=ends)
        deliver_all(at=ends)
        drain(slug, None, at=ends)
        rehearse_boosts_task(slug, seed, at=ends - timedelta(seconds=1))
        done = run_calendar(slug, until=ends, simulated_staff=simulated_staff, publish=week == last)
        rehearse_payouts_task(slug, approvers, at=ends)
        report = done.get(f"close-w{week:02d}", {}).get("report", report)
        progress.report("week", week, last)
    with transaction(open_store(settings), write=False) as session:
        return {**summary(session, slug), "report": report}


@flow(name="sprint-steps", flow_run_name="{slug}: sprint steps")
def sprint_steps(slug: str, until: datetime) -> dict[str, Any]:
    """One live sprint's steps due by `until`: a run of its own under the calendar's pass,
    named after the campaign, so the Prefect UI lists each sprint's steps together."""
    return run_calendar(slug, until=until)


@flow(name="sprint-calendar")
def sprint_calendar(at: datetime | None = None) -> dict[str, Any]:
    """Every live sprint's steps that have come due (briefs, reminders, prompts, each week's
    close, report and digest), each once and in order, catching up on any missed while Rally
    was stopped. One pass at a time across every machine.

    Args:
        at: Run as if it were this moment (a rehearsal of the calendar); empty means now.
    """
    engine = open_store(get_settings())
    now = clock(at)()
    done: dict[str, Any] = {}
    failed: list[str] = []
    with only_one(engine, Lock.SPRINT_CALENDAR) as mine:
        if not mine:
            return {"steps": done}
        with transaction(engine, write=False) as session:
            slugs = live_sprints(session)
        for slug in slugs:
            try:
                steps = sprint_steps(slug, now)
            except Exception as exc:  # the other sprints go on; this one is retried next pass
                failed.append(f"{slug}: {type(exc).__name__}: {exc}")
                continue
            if steps:
                done[slug] = list(steps)
    return {"steps": done, "failed": failed}


class GoAhead(RunInput):
    """The Prefect UI's Resume form of a go-ahead run."""

    by: str = Field(description="Who gives the go-ahead (your email), for the audit log.")
    note: str = Field("", description="Anything to keep with it (what was checked).")


@flow(name="sprint-go-ahead")
def go_ahead(slug: str, step: str = BRIEFS, by: str = "", note: str = "") -> dict[str, Any]:
    """Staff's go-ahead for a step of the sprint that waits for one: the briefs, once generated,
    wait for it before they are sent, and the next pass of `sprint-calendar` sends them.

    Rally starts this run when the step comes due, without `by`: it waits, suspended (holding
    no worker), until staff resume it from the Prefect UI and give their name. Run by hand with
    `by`, it gives the go-ahead at once.

    Args:
        slug: The campaign's slug, as in its campaign.yaml.
        step: The step's key, as the go-ahead email and `rally sprint status` name it.
        by: Who gives it (kept in the audit log); empty waits for the Prefect UI's Resume.
        note: Anything to keep with it.
    """
    logger = get_run_logger()
    if not by:
        from prefect.flow_runs import suspend_flow_run

        logger.info(
            "%s of %s waits for a go-ahead. Read the briefs on their pages or with 'rally briefs "
            "show %s HANDLE'; to change them, edit the campaign file and apply it again. Then "
            "press Resume and give your name.",
            step,
            slug,
            slug,
        )
        answer = suspend_flow_run(wait_for_input=GoAhead, key="go-ahead")
        by, note = f"{answer.by} (Prefect UI)", answer.note
    with transaction(open_store(get_settings())) as session:
        try:
            given = give_go_ahead(session, slug, step, actor=by, now=utcnow(), note=note)
        except CalendarError as exc:
            logger.warning("No go-ahead recorded: %s", exc)
            return {"campaign": slug, "step": step, "go_ahead": None, "why": str(exc)}
    logger.info(
        "Go-ahead for %s of %s %s; the next sprint-calendar pass does it.",
        step,
        slug,
        f"given by {by}" if given else "was given already",
    )
    return {"campaign": slug, "step": step, "go_ahead": by if given else "given already"}


@flow(name="report")
def report(slug: str, week: Annotated[int | None, Field(ge=1, le=52)] = None) -> dict[str, Any]:
    """Store the campaign's report (KPIs by week, scorecards, attribution, holdout lift, the
    milestones) for Rally's pages, write it as HTML, JSON and CSV files, and publish its
    weekly table as an artifact.

    Args:
        slug: The campaign's slug, as in its campaign.yaml.
        week: Report up to this week; empty means the weeks so far.
    """
    if week is None:
        with transaction(open_store(get_settings()), write=False) as session:
            week = weeks_so_far(session, get_campaign(session, slug))
    return {"campaign": slug, "week": week, "html": weekly_report(slug, week)}

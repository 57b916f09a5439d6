"""The sprint: `sprint` starts a campaign's sprint on the calendar or rehearses it;
`weekly-close` closes each live sprint's ended weeks (milestones, weekly report); `report`
reports a campaign up to a week, by hand.

A rehearsal runs all twelve weeks in one flow run on a simulated clock: per week one task for
the simulated people, then the same tasks the recurring flows run (review deadlines, the
rules, delivery, lead sync), then the week's close and report.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, task
from pydantic import Field

from config.settings import get_settings
from flows.briefing import generate
from flows.delivery import deliver_all, deliver_email_task
from flows.engagement import apply_all
from flows.leads import drain
from flows.review import fire_timers
from store.db import Lock, only_one, open_store, transaction
from store.types import utcnow
from tasks import progress
from tasks.campaigns.campaign import get_campaign
from tasks.reporting.report import build_report, weeks_so_far
from tasks.reporting.stored import keep_report
from tasks.sprint.state import LIVE, REHEARSAL, finish_week, sprint_run, start_sprint, summary
from tasks.sprint.week import rehearse_week, week_bounds, weeks_to_close

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


@task(name="close-week")
def close_week(slug: str, week: int, at: datetime) -> list[dict[str, Any]]:
    settings = get_settings()
    with transaction(open_store(settings)) as session:
        return finish_week(session, slug, week, now=at, actor=settings.actor)


@task(name="weekly-report")
def weekly_report(slug: str, week: int, publish: bool = True) -> str:
    """The report up to `week`, stored (staff read it on Rally's pages) and written to files;
    its weekly table also as a Prefect artifact."""
    engine = open_store(get_settings())
    with transaction(engine, write=False) as session:
        report = build_report(session, slug, week=week)
    paths = keep_report(engine, report, report_folder(slug, week), now=utcnow())
    if publish:
        _publish(slug, week, report)
    return str(paths["html"])


def _publish(slug: str, week: int, report: dict[str, Any]) -> None:
    from prefect.artifacts import create_table_artifact

    columns = ("week", "views", "engagement_rate", "clicks", "signups", "cpa", "spend")
    create_table_artifact(
        key=f"{slug}-weekly".lower().replace("_", "-"),
        table=[{c: row[c] for c in columns} for row in report["weekly"]],
        description=f"{report['campaign']['name']}: KPIs by week, up to week {week}",
    )


@flow(name="sprint")
def run_sprint(
    slug: str,
    simulate: bool = False,
    seed: int = 0,
    weeks: Annotated[int | None, Field(ge=1, le=52)] = None,
    sample: Annotated[float, Field(gt=0, le=1)] = SAMPLE,
) -> dict[str, Any]:
    """Start the campaign's sprint on the calendar (the recurring flows then run it week by
    week), or, with `simulate`, rehearse every week now with simulated creators, approvers
    and audience in the campaign's store.

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
        if week == 1:
            generate(slug, send=True, at=begins)
        rehearse(slug, week, seed)
        fire_timers(at=ends)
        deliver_email_task(at=ends)
        apply_all(at=ends)
        deliver_all(at=ends)
        drain(slug, None, at=ends)
        close_week(slug, week, ends)
        report = weekly_report(slug, week, publish=week == last)
        progress.report("week", week, last)
    with transaction(open_store(settings), write=False) as session:
        return {**summary(session, slug), "report": report}


@flow(name="weekly-close")
def weekly_close() -> dict[str, dict[str, list[int]]]:
    """For every live sprint, close each week that has ended since the last close (its
    milestones met or missed) and write its weekly report. One close at a time across every
    machine, and a week closed already is left alone."""
    engine = open_store(get_settings())
    closed: dict[str, list[int]] = {}
    with only_one(engine, Lock.WEEKLY_CLOSE) as mine:
        if not mine:
            return {"closed": closed}
        now = utcnow()
        for slug, weeks in weeks_to_close(engine, now=now).items():
            for week in weeks:
                close_week(slug, week, now)
                weekly_report(slug, week)
            closed[slug] = weeks
    return {"closed": closed}


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

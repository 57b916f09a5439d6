"""The sprint: each week's work through the other flows, the milestones, the weekly report.

`run_sprint(simulate=True)` rehearses all twelve weeks in one flow run on a simulated clock:
per week one task for the simulated people, then the review sweep, engagement and lead sync
flows, then the week's close and report. A live sprint runs on the calendar instead:
`rally serve` looks hourly for a week that has ended and runs `sprint_day`, which closes it
and reports it (the sweeps, rules and syncs run on the serve process's own tick).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task

from config.settings import get_settings
from flows.briefs import generate_briefs
from flows.engagement import process_engagement
from flows.leads import sync_leads
from flows.review import review_sweep
from store.db import open_store, transaction
from store.types import utcnow
from tasks import progress
from tasks.campaigns.campaign import get_campaign
from tasks.reporting.report import build_report, write_report
from tasks.sprint.state import LIVE, REHEARSAL, finish_week, sprint_run, start_sprint, summary
from tasks.sprint.week import rehearse_week, week_bounds, weeks_to_close

SAMPLE = 0.1


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """Sync flow runs wait about a second on their heartbeat thread when they end; a rehearsal
    runs dozens of short ones, so it turns heartbeats off for its own run."""
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
    """The report up to `week`, written to files; its weekly table also as a Prefect artifact."""
    with transaction(open_store(get_settings()), write=False) as session:
        report = build_report(session, slug, week=week)
    paths = write_report(report, report_folder(slug, week))
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
    weeks: int | None = None,
    sample: float = SAMPLE,
) -> dict[str, Any]:
    """Rehearse the sprint of `slug` week by week (`simulate`), or start it on the calendar.
    A rehearsal meets `sample` of its simulated audience one by one."""
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
            generate_briefs(slug, send=True, at=begins)
        rehearse(slug, week, seed)
        review_sweep(at=ends)
        process_engagement(at=ends)
        sync_leads(campaign=slug, at=ends)
        close_week(slug, week, ends)
        report = weekly_report(slug, week, publish=week == last)
        progress.report("week", week, last)
    with transaction(open_store(settings), write=False) as session:
        return {**summary(session, slug), "report": report}


@flow(name="sprint-day")
def sprint_day(at: datetime | None = None) -> dict[str, Any]:
    """For every live sprint, close and report each week that has ended since the last."""
    now = at or utcnow()
    closed: dict[str, list[int]] = {}
    for slug, weeks in weeks_to_close(open_store(get_settings()), now=now).items():
        for week in weeks:
            close_week(slug, week, now)
            weekly_report(slug, week)
        closed[slug] = weeks
    return closed

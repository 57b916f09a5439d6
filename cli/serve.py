"""`rally serve`: the long-running process: web pages, and the timers and outbox on a tick."""

import gc
import logging
from datetime import UTC, datetime

import typer

from cli.common import console, store


def tick() -> None:
    """Fire due timers (brief reminders, reviews), apply the follow-up rules to new events, and
    deliver what the outbox holds."""
    from store.types import utcnow
    from tasks.briefs.reminders import send_reminders
    from tasks.engagement.delivery import deliver_followups
    from tasks.engagement.poll import poll_tiktok
    from tasks.engagement.processing import process_pending
    from tasks.mail import deliver_email
    from tasks.review.deadlines import sweep_reviews

    settings, engine = store()
    polled, processed = None, None
    try:
        reminders = send_reminders(engine, settings, now=utcnow())
        sweep_reviews(engine, now=utcnow(), public_url=settings.public_url)
        polled = poll_tiktok(engine, settings, now=utcnow)
        processed = process_pending(engine, now=utcnow(), public_url=settings.public_url)
    finally:  # whatever happened to the timers, what is queued still goes out
        email = deliver_email(engine, settings, now=utcnow)
        others = deliver_followups(engine, settings, now=utcnow)
    said = []
    if reminders or email.sent or email.errors:
        said.append(
            f"{reminders} reminder(s) queued; email: {email.sent} sent, "
            f"{email.retrying} to retry, {email.dead} failed"
            + (f" ({email.stopped})" if email.stopped else "")
        )
    if processed and processed.events:
        said.append(f"{processed.events} event(s) through the rules")
    for channel, report in others.items():
        if report.sent or report.errors:
            said.append(f"{channel}: {report.sent} sent, {report.dead} failed")
    if polled and polled.errors:
        said.append("TikTok polling: " + "; ".join(polled.errors[:3]))
    for line in said:
        console.print(f"{utcnow():%H:%M:%S} {line}", markup=False)


def lead_tick() -> None:
    """Sync queued leads and purge those past retention: a job of its own, as a large sync
    paced by a CRM's rate limit may take longer than a tick."""
    from store.types import utcnow
    from tasks.leads.forget import purge_expired
    from tasks.leads.sync import sync_leads

    settings, engine = store()
    for label, report in sync_leads(engine, settings, now=utcnow).items():
        if report.sent or report.errors:
            console.print(
                f"{utcnow():%H:%M:%S} leads to {label}: {report.sent} sent, "
                f"{report.retrying} to retry, {report.dead} dead"
                + (f" ({report.stopped})" if report.stopped else ""),
                markup=False,
            )
    purged = purge_expired(engine, now=utcnow())
    if purged:
        console.print(f"{utcnow():%H:%M:%S} {purged} lead(s) past retention erased")


def sprint_tick() -> None:
    """Close and report each live sprint's weeks that have ended, through the `sprint-day`
    Prefect flow; Prefect only starts when a week is due."""
    from store.types import utcnow
    from tasks.sprint.week import weeks_to_close

    _, engine = store()
    if not weeks_to_close(engine, now=utcnow()):
        return
    from flows.sprint import sprint_day

    for slug, weeks in sprint_day().items():
        shown = ", ".join(str(w) for w in weeks)
        console.print(f"{utcnow():%H:%M:%S} {slug}: week {shown} closed and reported", markup=False)


def serve_command(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    every: int = typer.Option(60, "--every", help="Seconds between timer and outbox ticks."),
) -> None:
    """Serve the web pages; run the timers, rules and outbox every minute, and close each live
    sprint's week (milestones, weekly report) when it ends."""
    import uvicorn
    from apscheduler.schedulers.background import BackgroundScheduler

    from web.app import create_app

    settings, _ = store()
    web = create_app(settings)
    scheduler = BackgroundScheduler(timezone="UTC")
    for job, seconds in ((tick, every), (lead_tick, every), (sprint_tick, 3600)):
        scheduler.add_job(
            job,
            "interval",
            seconds=seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),  # catch up at once on what came due while stopped
        )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    console.print(f"Rally serving on http://{host}:{port} (links use {settings.public_url})")
    scheduler.start()
    # Everything loaded so far lives as long as the process: keep the collector from walking
    # it again and again (full collections otherwise pause every request for tens of ms).
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(web, host=host, port=port, log_level="warning")
    finally:
        scheduler.shutdown(wait=False)

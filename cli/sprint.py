"""`rally sprint`, `rally report` and `rally demo`: run the sprint, see where it stands, report."""

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.common import (
    JSON_OPTION,
    console,
    count,
    flow_progress,
    percent,
    print_json,
    shown_path,
    store,
)
from store.db import transaction

app = typer.Typer(
    help="The sprint: start it (or rehearse it), see where it stands.", no_args_is_help=True
)
EXAMPLES_FOLDER = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = {  # `rally demo --example NAME`: the folder and the campaign's slug
    "youth-vote": (EXAMPLES_FOLDER / "youth-vote", "first-vote-pa-2027"),
    "river-week": (EXAMPLES_FOLDER / "river-week", "river-week-2027"),
}


def run_rehearsal(
    slug: str, seed: int, weeks: int | None, *, quiet: bool, sample: float = 0.1
) -> dict[str, Any]:
    """The whole rehearsal in one flow run, with a progress bar by week."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.sprint import run_sprint, without_heartbeats
    from tasks.progress import listening

    bar = flow_progress("Sprint week", quiet=quiet)
    task = bar.add_task("weeks", total=None)

    def moved(what: str, done: int, total: int) -> None:
        if what == "week":
            bar.update(task, completed=done, total=total)

    with bar, listening(moved), without_heartbeats():
        return run_sprint(slug, simulate=True, seed=seed, weeks=weeks, sample=sample)


@app.command("start")
def start_command(
    slug: str,
    simulate: bool = typer.Option(
        False, "--simulate", help="Rehearse all the weeks now with simulated people."
    ),
    seed: int = typer.Option(
        7, "--seed", help="The rehearsal's seed: the same seed, the same run."
    ),
    example: str = typer.Option(
        "youth-vote",
        "--example",
        help="Which example: youth-vote (political, organic only) or river-week (a "
        "nonprofit's creator program with Spark Ads and HubSpot).",
    ),
    weeks: int = typer.Option(0, "--weeks", min=0, help="Rehearse only this many weeks (0: all)."),
    sample: float = typer.Option(
        0.1,
        "--sample",
        min=0.001,
        max=1.0,
        help="Share of the simulated audience met one by one as events, follow-ups and leads.",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Start the sprint on the calendar (`rally serve` then runs it), or rehearse it."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.sprint.state import refuse_rehearsal

    settings, engine = store()
    with transaction(engine, write=False) as session:
        get_campaign(session, slug)  # a wrong slug is named before Prefect starts
        if simulate:
            refuse_rehearsal(session, slug)  # never beside real activity
    if simulate:
        quiet = json_output or not sys.stderr.isatty()
        result = run_rehearsal(slug, seed, weeks or None, quiet=quiet, sample=sample)
        print_json(result) if json_output else print_summary(result)
        return
    from store.types import utcnow
    from tasks.sprint.state import LIVE, start_sprint

    with transaction(engine) as session:
        run = start_sprint(session, slug, mode=LIVE, seed=None, now=utcnow(), actor=settings.actor)
        held = list(run.holdout)
    if json_output:
        print_json({"campaign": slug, "mode": LIVE, "holdout": held})
        return
    console.print(
        f"Sprint of {slug} started; {len(held)} creator(s) held out. "
        "'rally serve' (or Prefect's workers) run it: on its first day the briefs are made and "
        f"staff are asked for the go-ahead ('rally sprint approve {slug} briefs'); then "
        "reminders, reviews, follow-ups, syncs and each week's close, report and digest as "
        f"they come due. 'rally sprint status {slug}' shows its calendar.",
        markup=False,
    )


@app.command("status")
def status_command(slug: str, json_output: bool = JSON_OPTION) -> None:
    """Where the sprint stands: its week, phase and milestones."""
    from store.types import utcnow
    from tasks.sprint.state import sprint_status

    _, engine = store()
    with transaction(engine, write=False) as session:
        status = sprint_status(session, slug, today=utcnow())
    if json_output:
        print_json(status)
        return
    if not status["started"]:
        console.print(f"The sprint of {slug} has not started: 'rally sprint start {slug}'.")
    else:
        console.print(
            f"{slug}: {status['mode']} sprint, week {status['week']} of {status['weeks']}"
            + (f" ({status['phase']})" if status["phase"] else "")
            + ("; finished" if status["finished"] else "")
            + f"; {len(status['holdout'])} creator(s) held out.",
            markup=False,
        )
    table = Table("Week", "Milestone", "Status", "Why", title="Milestones", title_justify="left")
    for m in status["milestones"]:
        table.add_row(str(m["week"]), m["name"], m["status"], m["why"])
    console.print(table)
    steps = Table("Due (UTC)", "Step", "Key", "Status", title="Calendar", title_justify="left")
    for step in status["steps"]:
        steps.add_row(
            step["due"][:16].replace("T", " "), step["title"], step["key"], step["status"]
        )
    console.print(steps)


@app.command("approve")
def approve_command(
    slug: str, step: str = typer.Argument("briefs", help="The step's key.")
) -> None:
    """Give the go-ahead for a step that waits for one (the briefs, before they are sent)."""
    from store.types import utcnow
    from tasks.sprint.calendar import give_go_ahead

    settings, engine = store()
    with transaction(engine) as session:
        give_go_ahead(session, slug, step, actor=settings.actor, now=utcnow())
    console.print(
        f"Go-ahead given for {step} of {slug}: the sprint's calendar does it on its next pass "
        "(within five minutes under 'rally serve').",
        markup=False,
    )


def _set_state(slug: str, state: str, said: str) -> None:
    from store.types import utcnow
    from tasks.sprint.calendar import set_state

    settings, engine = store()
    with transaction(engine) as session:
        set_state(session, slug, state, actor=settings.actor, now=utcnow())
    console.print(said, markup=False)


@app.command("pause")
def pause_command(slug: str) -> None:
    """Pause a live sprint's calendar: its steps wait, and are caught up on when it resumes."""
    _set_state(slug, "paused", f"Sprint of {slug} paused: 'rally sprint resume {slug}' goes on.")


@app.command("resume")
def resume_command(slug: str) -> None:
    """Resume a paused sprint: the steps that came due meanwhile run in order, once each."""
    _set_state(slug, "running", f"Sprint of {slug} resumed.")


@app.command("stop")
def stop_command(slug: str) -> None:
    """Stop a live sprint for good: no more briefs, reminders, digests or closes."""
    _set_state(slug, "stopped", f"Sprint of {slug} stopped.")


@app.command("milestone")
def milestone_command(
    slug: str,
    key: str,
    status: str = typer.Argument(..., help="met or missed"),
    note: str = typer.Option("", "--note", help="What was decided, for the record."),
) -> None:
    """Mark a milestone that people judge (the strategy, the reviews, the postmortem)."""
    from store.types import utcnow
    from tasks.sprint.state import mark_milestone

    settings, engine = store()
    with transaction(engine) as session:
        mark_milestone(session, slug, key, status, actor=settings.actor, now=utcnow(), note=note)
    console.print(f"Milestone {key} of {slug}: {status}.", markup=False)


def print_summary(s: dict[str, Any]) -> None:
    """The sprint in a few lines."""
    briefs = s["briefs"]
    lines = [
        f"Sprint of {s['campaign']} ({s['mode']}, seed {s['seed']}): {s['weeks_done']} week(s), "
        f"{s['creators']} creators, {s['holdout_creators']} held out",
        f"Briefs: {briefs['generated']} generated, {briefs['sent']} sent, "
        f"{briefs['acknowledged']} acknowledged",
        f"Drafts: {s['drafts']}; reviews: " + _pairs(s["reviews"]),
        "Findings by rule: " + _pairs(s["findings"]),
        "Events: " + _pairs(s["events"]),
        "Follow-ups: " + _pairs(s["followups"]) + "; withheld: " + _pairs(s["withheld"]),
        f"Leads synced: {s['leads_synced']}"
        + "".join(f"; {n:,} waiting for {name}" for name, n in s.get("leads_waiting", {}).items()),
        "Contracts: {offered} offered, {signed} signed, {countersigned} countersigned".format(
            **s["contracts"]
        ),
        _payments(s["payments"], s["campaign"]),
        *_boosts(s.get("boosts"), s["payments"]["currency"]),
        f"Audit chain: {s['audit']['entries']} entries, "
        + ("verified" if s["audit"]["verified"] else "BROKEN"),
    ]
    for line in lines:
        console.print(line, markup=False)
    if s.get("report"):
        console.print(f"Report: {shown_path(Path(s['report']))}", markup=False)


def _payments(money: dict[str, Any], slug: str) -> str:
    """What creators earned, what was paid, what is still owed."""

    def amount(key: str) -> str:
        return f"{money[key] / 100:,.2f}"

    return (
        f"Payments: {amount('earned_cents')} {money['currency']} earned by {money['creators']} "
        f"creators, {amount('paid_cents')} paid, {amount('owed_cents')} owed "
        f"(rally payments balances {slug})"
    )


def _boosts(boosts: dict[str, int] | None, currency: str) -> list[str]:
    """Spark Ads, for a campaign that boosted anything."""
    if not boosts or not boosts["boosts"]:
        return []
    return [
        f"Boosts: {boosts['boosts']}, {boosts['spend_cents'] / 100:,.2f} {currency} spent for "
        f"{boosts['conversions']:,} conversions, as TikTok counts them"
    ]


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def report_command(
    slug: str,
    week: int = typer.Option(0, "--week", min=0, help="Up to this week (default: the last done)."),
    out: Path = typer.Option(
        None, "--out", "--output", "-o", help="Folder to write to (default: under RALLY_HOME)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the report (HTML with charts, the numbers as CSV and JSON) and store it for
    `rally serve`'s report pages."""
    from store.types import utcnow
    from tasks.reporting.report import build_report
    from tasks.reporting.stored import keep_report

    settings, engine = store()
    with transaction(engine, write=False) as session:
        report = build_report(session, slug, week=week or None)
    folder = out or settings.home / "reports" / slug / f"week-{report['week']:02d}"
    paths = keep_report(engine, report, folder, now=utcnow())
    if json_output:
        print_json(report)
        return
    totals = report["totals"]
    console.print(
        f"{report['campaign']['name']}, weeks 1-{report['week']}: {count(totals['views'])} views, "
        f"engagement {percent(totals['engagement_rate'])}, {totals['signups']:,} signups, "
        f"cost per signup {_money(totals['cpa'])}",
        markup=False,
    )
    console.print(f"Recommendation: {report['recommendation']['action']}", markup=False)
    console.print(f"Report: {shown_path(paths['html'])} (and CSV, JSON beside it)", markup=False)
    page = f"{settings.public_url}/reports/{slug}/week-{report['week']}"
    console.print(f"Staff read it on 'rally serve': {page}", markup=False)


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def demo_command(
    seed: int = typer.Option(
        7, "--seed", help="The rehearsal's seed: the same seed, the same run."
    ),
    example: str = typer.Option(
        "youth-vote",
        "--example",
        help="Which example: youth-vote (political, organic only) or river-week (a "
        "nonprofit's creator program with Spark Ads and HubSpot).",
    ),
    json_output: bool = typer.Option(
        False, "--json", help="End with the summary as one JSON line."
    ),
) -> None:
    """Rehearse an example campaign's 12-week sprint in a fresh demo store and report it."""
    from config.settings import get_settings

    if example not in EXAMPLES:
        raise typer.BadParameter(f"one of {', '.join(EXAMPLES)}", param_hint="--example")
    folder, slug = EXAMPLES[example]

    settings = get_settings()
    demo_home = settings.home / "demo"
    shutil.rmtree(demo_home, ignore_errors=True)
    os.environ["RALLY_HOME"] = str(demo_home)
    os.environ.pop("RALLY_DATABASE_URL", None)
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    get_settings.cache_clear()
    from cli.campaign import apply

    quiet = not sys.stderr.isatty()
    apply(folder / "campaign.yaml", roster_file=None, json_output=False)
    result = run_rehearsal(slug, seed, None, quiet=quiet)
    if not json_output:
        print_summary(result)
        console.print(
            f"The demo's store is in {shown_path(demo_home)}: "
            f"RALLY_HOME={shown_path(demo_home)} rally sprint status {slug}",
            markup=False,
        )
        return
    sys.stdout.write(json.dumps(result, default=str, sort_keys=True) + "\n")

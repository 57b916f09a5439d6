"""`rally events` and `rally rules`: take engagement in, rehearse it, apply the rules, see what
happened; `rules test` shows what a rules file would do with events, sending nothing."""

import json
import sys
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.common import JSON_OPTION, console, print_json, store
from config.errors import RallyError

app = typer.Typer(
    help="Engagement events: ingest, rehearse, process, status.", no_args_is_help=True
)
rules_app = typer.Typer(help="Follow-up rules: try them on events.", no_args_is_help=True)


@app.command("ingest")
def ingest_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL or CSV export."),
    process: bool = typer.Option(True, help="Apply the rules to the new events at once."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Store the events of a file (each once); bad lines are reported and the rest kept."""
    from store.types import utcnow
    from tasks.engagement.events import ingest
    from tasks.engagement.files import read_events
    from tasks.engagement.processing import process_pending

    settings, engine = store()
    report = ingest(engine, read_events(file), now=utcnow())
    summary: dict[str, Any] = {
        "received": report.received,
        "stored": report.stored,
        "repeated": report.repeated,
        "errors": [str(e) for e in report.errors],
    }
    if process:
        summary["processed"] = process_pending(
            engine, now=utcnow(), public_url=settings.public_url
        ).as_dict()
    if json_output:
        print_json(summary)
    else:
        console.print(
            f"{report.received:,} line(s): {report.stored:,} new event(s), "
            f"{report.repeated:,} already stored, {len(report.errors):,} with errors"
        )
        for error in report.errors[:20]:
            console.print(f"  {error}", markup=False)
        if len(report.errors) > 20:
            console.print(f"  ... and {len(report.errors) - 20:,} more (use --json to see all)")
        if process:
            _print_processed(summary["processed"])
    if report.errors and not report.stored and not report.repeated:
        raise typer.Exit(1)


def _print_processed(processed: dict[str, Any]) -> None:
    outcomes = ", ".join(f"{n:,} {k}" for k, n in processed["outcomes"].items()) or "none"
    console.print(f"Processed {processed['events']:,} event(s); follow-ups: {outcomes}")
    if processed["opted_out"] or processed["opted_in"]:
        console.print(f"  {processed['opted_out']} opted out, {processed['opted_in']} opted in")


@app.command("process")
def process_command(json_output: bool = JSON_OPTION) -> None:
    """Apply the rules to every event not processed yet (the served flow does this each minute)."""
    from store.types import utcnow
    from tasks.engagement.processing import process_pending

    settings, engine = store()
    processed = process_pending(engine, now=utcnow(), public_url=settings.public_url).as_dict()
    print_json(processed) if json_output else _print_processed(processed)


@app.command("simulate")
def simulate_command(
    slug: str,
    days: int = typer.Option(7, min=1, max=120, help="Days of engagement to simulate."),
    seed: int = typer.Option(1, help="The same seed gives the same events."),
    scale: float = typer.Option(
        0.01, min=0.0001, max=1.0, help="Share of each audience simulated person by person."
    ),
    start: str = typer.Option("", help="First day (YYYY-MM-DD); default: the sprint's start."),
    out: Path | None = typer.Option(None, help="Write JSONL here instead of to standard output."),
) -> None:
    """Write a plausible stream of events (JSONL) from the roster's followers at benchmark rates."""
    from sqlmodel import col, select

    from store.db import transaction
    from store.models import Creator, RosterMember, RosterStatus
    from tasks.campaigns.campaign import get_campaign
    from tasks.rehearsal.simulate import SimCreator, simulate

    _, engine = store()
    with transaction(engine, write=False) as session:
        campaign = get_campaign(session, slug)
        rows = session.exec(
            select(Creator.handle, Creator.followers, RosterMember.source_code)
            .join(RosterMember, col(RosterMember.creator_id) == col(Creator.id))
            .where(
                RosterMember.campaign_id == campaign.id,
                RosterMember.status == RosterStatus.ACTIVE,
            )
            .order_by(col(Creator.handle))
        ).all()
    creators = [SimCreator(h, f or 10_000, code) for h, f, code in rows]
    try:
        first = datetime.fromisoformat(start).date() if start else campaign.start_date
    except ValueError:
        raise RallyError(f"--start: not a date: {start!r} (use YYYY-MM-DD)") from None
    moment = datetime.combine(first, time(), UTC)
    handle = out.open("w", encoding="utf-8") if out else sys.stdout
    written = 0
    try:
        for event in simulate(slug, creators, start=moment, days=days, seed=seed, scale=scale):
            handle.write(json.dumps(event, ensure_ascii=False) + "\n")
            written += 1
    finally:
        if out:
            handle.close()
    if out:
        console.print(f"{written:,} events for {len(creators)} creators written to {out}")


@app.command("status")
def status_command(slug: str, json_output: bool = JSON_OPTION) -> None:
    """Events by type, and follow-ups by rule and outcome (sent, delayed, capped, opted out...)."""
    from store.db import transaction
    from store.types import utcnow
    from tasks.engagement.status import engagement_status

    _, engine = store()
    with transaction(engine, write=False) as session:
        status = engagement_status(session, slug, now=utcnow())
    if json_output:
        print_json(status)
        return
    console.print(
        f"{slug}: {status['events_total']:,} event(s), {status['redelivered']:,} redelivery(ies) "
        f"counted once, {status['unprocessed']:,} waiting for the rules"
    )
    console.print("  " + ", ".join(f"{n:,} {t}" for t, n in status["events"].items()))
    table = Table("rule", "outcomes", box=None)
    for rule, outcomes in status["by_rule"].items():
        table.add_row(rule, ", ".join(f"{n:,} {k}" for k, n in outcomes.items()))
    console.print(table)


@rules_app.command("test")
def rules_test_command(
    rules: Path = typer.Argument(..., exists=True, dir_okay=False, help="A follow-ups YAML file."),
    events: Path = typer.Argument(..., exists=True, dir_okay=False, help="Events (JSONL/CSV)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show which rules would fire for which events. Sends nothing and stores nothing."""
    from config.campaign_file import read_yaml
    from config.followups import parse_followups
    from tasks.engagement.consent import command, event_channel
    from tasks.engagement.files import read_events
    from tasks.engagement.rules import check_messages, rule_holds

    followups = parse_followups(read_yaml(rules), file=str(rules))
    check_messages(followups)
    results: list[dict[str, Any]] = []
    for where, record in read_events(events):
        if not isinstance(record, dict):
            results.append({"event": where, "error": str(record)})
            continue
        kind, text = record.get("type"), record.get("text")
        consent = command(text) if event_channel(str(record.get("source")), str(kind)) else None
        fired = (
            []
            if consent
            else [
                rule.id
                for rule in followups.spec.rules
                if kind in rule.when.types
                and rule_holds(
                    followups,
                    rule,
                    text=text,
                    creator=str(record.get("creator") or "").removeprefix("@") or None,
                    segment=record.get("segment"),
                    video=record.get("video"),
                )
            ]
        )
        results.append(
            {"event": where, "type": kind, "text": text, "fires": fired}
            | ({"consent": f"opt {'out' if consent == 'revoked' else 'in'}"} if consent else {})
        )
    if json_output:
        print_json(results)
        return
    table = Table("event", "type", "text", "fires", box=None)
    for r in results:
        fires = r.get("error") or r.get("consent") or ", ".join(r["fires"]) or "-"
        table.add_row(r["event"], str(r.get("type") or ""), (r.get("text") or "")[:50], fires)
    console.print(table)
    firing = sum(1 for r in results if r.get("fires"))
    console.print(f"{firing:,} of {len(results):,} event(s) fire a rule; nothing was sent.")

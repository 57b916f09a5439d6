"""`rally leads`: the people a campaign gathered, their sync to CRMs and volunteer systems, and
forgetting someone on request."""

import sys
from typing import Any

import typer

from cli.common import JSON_OPTION, console, print_json, store
from config.errors import RallyError

app = typer.Typer(
    help="Leads: list, show, check, sync, status, retry, forget.", no_args_is_help=True
)


@app.command("list")
def list_command(slug: str, json_output: bool = JSON_OPTION) -> None:
    """Every lead of a campaign: contact, consent, source code and creator, sync state (and
    their subscription status at a destination that says)."""
    from store.db import transaction
    from tasks.campaigns.campaign import get_campaign
    from tasks.leads.status import list_leads

    _, engine = store()
    with transaction(engine, write=False) as session:
        leads = list_leads(session, get_campaign(session, slug))
    if json_output:
        print_json(leads)
        return
    from rich.table import Table

    from tasks.formats import plain_text

    table = Table("id", "email", "phone", "name", "source", "consent", box=None)
    table.add_column("sync", no_wrap=True)  # a destination's state and status there, whole
    for lead in leads:  # text stored before it was cleaned is printed clean too
        table.add_row(
            str(lead["id"]),
            plain_text(lead["email"] or ""),
            plain_text(lead["phone"] or ""),
            plain_text(lead["name"] or ""),
            plain_text(lead["last_source_code"] or ""),
            ", ".join(f"{c} {s}" for c, s in sorted(lead["consent"].items())),
            plain_text(
                ", ".join(
                    f"{d} {s}" + _held(lead["subscriptions"].get(d, {}))
                    for d, s in sorted(lead["sync"].items())
                )
            ),
        )
    console.print(table)
    console.print(f"{len(leads):,} lead(s)")


def _held(subscriptions: dict[str, str]) -> str:
    """What a destination holds of a person's subscriptions, ` (email unsubscribed)`."""
    if not subscriptions:
        return ""
    return " (" + ", ".join(f"{c} {s}" for c, s in sorted(subscriptions.items())) + ")"


@app.command("sync")
def sync_command(
    destination: str = typer.Option(None, "--destination", help="Only this destination."),
    campaign: str = typer.Option(None, "--campaign", help="Only this campaign's destinations."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Send queued leads to each destination now, within its rate limit (the served process
    does this every minute)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from store.types import utcnow
    from tasks.leads.sync import sync_leads
    from tasks.progress import listening

    settings, engine = store()
    quiet = json_output or not sys.stderr.isatty()
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, highlight=False),
        transient=True,
        disable=quiet,
    )
    tasks: dict[str, Any] = {}

    def show(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what.capitalize(), total=total)
        bar.update(tasks[what], completed=done, total=total)

    with bar, listening(show):
        reports = sync_leads(
            engine, settings, now=utcnow, campaign=campaign, destination=destination
        )
    result = {label: vars(report) for label, report in reports.items()}
    if json_output:
        print_json(result)
    else:
        if not result:
            console.print("Nothing to sync.")
        for label, r in result.items():
            console.print(
                f"{label}: {r['sent']:,} sent, {r['retrying']:,} to retry, {r['dead']:,} dead"
                + (f" (stopped: {r['stopped']})" if r["stopped"] else ""),
                markup=False,
            )
            for error in r["errors"][:5]:
                console.print(f"  {error}", markup=False)
    if any(r["stopped"] for r in result.values()):
        raise typer.Exit(1)


@app.command("check")
def check_command(
    slug: str,
    create_missing: bool = typer.Option(
        False,
        "--create-missing",
        help="Create what a destination lacks that Rally writes (HubSpot's contact properties).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Check each of a campaign's destinations before leads go: its settings, its credentials
    (one read that changes nothing) and what the remote must hold first. Exits 1 when one is
    not ready, saying why."""
    from tasks.leads.check import check_destinations

    settings, engine = store()
    checks = check_destinations(engine, settings, slug, create_missing=create_missing)
    if json_output:
        print_json([{**vars(c), "ready": c.ready} for c in checks])
    else:
        for c in checks:
            head = f"{c.destination} ({c.type})"
            if not c.enabled:
                console.print(f"{head}: disabled, not checked", markup=False)
                continue
            for problem in c.problems:
                console.print(f"{head}: {problem}", markup=False)
            if c.created:
                console.print(f"{head}: created {', '.join(c.created)}", markup=False)
            if c.missing:
                console.print(
                    f"{head}: {len(c.missing)} missing that Rally writes there; "
                    f"`rally leads check {slug} --create-missing` would create:",
                    markup=False,
                )
                for missing in c.missing:
                    console.print(f"  {missing}", markup=False)
            if c.ready:
                console.print(f"{head}: ready ({'; '.join(c.verified)})", markup=False)
    if not all(c.ready for c in checks):
        raise typer.Exit(1)


@app.command("status")
def status_command(json_output: bool = JSON_OPTION) -> None:
    """Per destination: leads pending, failed (to retry), sent and dead, and how many it holds
    as subscribed or not, where it says."""
    from store.db import transaction
    from tasks.leads.sync_state import dead_letters, destination_name, sync_status

    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = sync_status(session)
        dead = [(m.destination, m.subject_id, m.last_error) for m in dead_letters(session)[:10]]
    if json_output:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("campaign", "destination", "pending", "failed", "sent", "dead", box=None)
    for row in rows:
        table.add_row(
            row["campaign"],
            row["destination"],
            *(f"{row[k]:,}" for k in ("pending", "failed", "sent", "dead")),
        )
    console.print(table if rows else "No leads queued for any destination yet.")
    for row in rows:
        if row["subscriptions"]:
            held = "; ".join(
                f"{channel}: "
                + ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
                for channel, counts in sorted(row["subscriptions"].items())
            )
            console.print(f"  {row['destination']} holds them as {held}", markup=False)
    for destination, contact, error in dead:
        console.print(f"  dead: lead {contact} to {destination_name(destination)}: {error}")


@app.command("retry")
def retry_command(
    dead: bool = typer.Option(False, "--dead", help="Queue the dead letters again."),
    destination: str = typer.Option(None, "--destination", help="Only this destination."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Send dead letters again after fixing what the remote refused (then `rally leads sync`)."""
    from store.types import utcnow
    from tasks.leads.status import retry_dead

    if not dead:
        raise RallyError("say what to retry: `rally leads retry --dead`")
    _, engine = store()
    count = retry_dead(engine, now=utcnow(), destination=destination)
    if json_output:
        return print_json({"queued": count})
    console.print(f"{count:,} dead letter(s) queued again; `rally leads sync` sends them.")


@app.command("show")
def show_command(
    who: str = typer.Argument(..., help="The person's email or phone."),
    json_output: bool = JSON_OPTION,
) -> None:
    """One person: who they are here, their consent per channel, and its whole record (when
    and how each consent was given, confirmed or withdrawn)."""
    from store.db import transaction
    from tasks.leads.consent_records import lead_view

    _, engine = store()
    with transaction(engine, write=False) as session:
        lead = lead_view(session, who)
    if json_output:
        return print_json(lead)
    name = lead["name"] or lead["handle"] or "(no name)"
    console.print(f"Lead {lead['contact']}: {name} <{lead['email'] or '-'}> {lead['phone'] or ''}")
    consent = ", ".join(f"{k} {v}" for k, v in sorted(lead["consent"].items())) or "none"
    console.print(f"Consent now: {consent}", markup=False)
    for r in lead["consent_record"]:
        console.print(
            f"  {r['at'][:19]}  {r['channel']:<5} {r['status']:<8} {r['source']}"
            + (f" from {r['origin']}" if r["origin"] else "")
            + (f": {r['wording']!r}" if r["wording"] else ""),
            markup=False,
        )


@app.command("forget")
def forget_command(
    who: str = typer.Argument(..., help="The person's email or phone."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Erase a person's data here (a tombstone stays) and ask each destination that holds them
    to delete them."""
    from store.types import utcnow
    from tasks.leads.forget import forget
    from tasks.leads.sync_state import destination_name

    settings, engine = store()
    result = forget(engine, who, actor=settings.actor, now=utcnow())
    if json_output:
        names = [destination_name(d) for d in result.deletions]
        return print_json({"contact": result.contact_id, "deletions_queued": names})
    console.print(f"Forgot lead {result.contact_id}: their personal data is erased here.")
    if result.deletions:
        console.print(
            "Deletion queued at: "
            + ", ".join(destination_name(d) for d in result.deletions)
            + " (`rally leads sync` sends it; `rally leads status` shows where it cannot)."
        )

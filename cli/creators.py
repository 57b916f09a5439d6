"""`rally creators`: import and list a campaign's roster."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.common import JSON_OPTION, console, count, print_json, shown_path, store
from config.errors import RallyError
from store.db import transaction
from tasks.campaigns.campaign import campaign_row, campaign_spec, get_campaign, roster

if TYPE_CHECKING:  # what import needs is loaded by import alone; list reads and prints
    from rich.table import Table

    from tasks.campaigns.roster import RowProblem
    from tasks.campaigns.roster_import import RosterChange

app = typer.Typer(help="A campaign's creators: import a roster CSV, list it.", no_args_is_help=True)


def roster_report(
    file: Path, change: "RosterChange", problems: "list[RowProblem]"
) -> dict[str, Any]:
    """Print what an import did; fail (after the good rows are saved) if any row was skipped."""
    skipped = problems + change.problems
    return {
        "file": shown_path(file),
        "added": change.added,
        "updated": change.updated,
        "unchanged": change.unchanged,
        "skipped": [
            {"row": p.row, "handle": p.handle, "field": p.field, "message": p.message}
            for p in skipped
        ],
    }


def print_roster_report(report: dict[str, Any]) -> None:
    skipped = report["skipped"]
    console.print(
        f"Roster {report['file']}: {report['added']} added, {report['updated']} updated, "
        f"{report['unchanged']} unchanged"
        + (f", {len(skipped)} row problem(s):" if skipped else ".")
    )
    for p in skipped:
        who = f" (@{p['handle']})" if p["handle"] else ""
        console.print(
            f"  {report['file']}: row {p['row']}{who}: {p['field']}: {p['message']}", markup=False
        )


def fail_on_skipped(report: dict[str, Any]) -> None:
    skipped = report["skipped"]
    if skipped:
        rows = len({p["row"] for p in skipped})
        raise RallyError(
            f"{rows} roster row(s) not imported: fix them and import again "
            "(the other rows are saved; importing them again changes nothing)"
        )


@app.command("import")
def import_command(slug: str, csv_file: Path, json_output: bool = JSON_OPTION) -> None:
    """Add or update creators from a roster CSV (an upsert on platform and handle)."""
    from tasks.campaigns.roster import read_roster
    from tasks.campaigns.roster_import import import_roster

    settings, engine = store()
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        spec = campaign_spec(campaign)
        rows, problems = read_roster(csv_file, spec)
        change = import_roster(session, campaign, spec, rows, actor=settings.actor)
    report = roster_report(csv_file, change, problems)
    print_json(report) if json_output else print_roster_report(report)
    fail_on_skipped(report)


@app.command("list")
def list_command(slug: str, json_output: bool = JSON_OPTION) -> None:
    """List a campaign's creators with their terms, codes and links."""
    settings, engine = store()
    with transaction(engine, write=False) as session:
        campaign = campaign_row(session, slug)
        rows = roster(session, campaign, public_url=settings.public_url)
        currency = campaign.spec["budget"]["currency"]
    if json_output:
        print_json(rows)
        return
    console.print(roster_table(rows, currency, settings.public_url))


def roster_table(rows: list[dict[str, Any]], currency: str, public_url: str) -> "Table":
    from rich.table import Table

    from tasks.formats import money

    table = Table(
        title=f"Roster ({len(rows)} creators)",
        title_justify="left",
        caption=f"Links are on {public_url} (RALLY_PUBLIC_URL); rates marked * are the tier's.",
        caption_justify="left",
    )
    for name in ("Creator", "Name", "Segment", "Tier", "Followers", "Rate", "Code", "Link"):
        table.add_column(name, justify="right" if name in ("Followers", "Rate") else "left")
    for r in rows:
        handle = f"@{r['handle']}" + ("" if r["platform"] == "tiktok" else f" ({r['platform']})")
        rate = money(r["rate_cents"], currency) + ("*" if r["rate_from"] == "tier" else "")
        link = str(r["tracking_link"]).removeprefix(public_url)
        table.add_row(
            handle,
            r["name"] or "-",
            r["segment"] or "-",
            r["tier"] or "-",
            count(r["followers"]),
            rate,
            r["source_code"],
            link,
        )
    return table

"""`rally campaign`: apply a campaign file, list and show campaigns."""

from pathlib import Path
from typing import Any

import typer

from cli.common import JSON_OPTION, console, count, percent, print_json, store
from store.db import transaction
from tasks.campaigns.campaign import campaign_overview, list_campaigns

app = typer.Typer(
    help="Campaigns as code: apply a campaign.yaml, list, show.", no_args_is_help=True
)


@app.command("apply")
def apply(
    file: Path,
    roster_file: Path | None = typer.Option(
        None, "--roster", help="Roster CSV (default: the file's `roster:`)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Create or update a campaign from its file; applying the same files again changes nothing."""
    # Here, not at the top: the read commands (show, list) do without the roster's import.
    from cli.creators import fail_on_skipped, roster_report
    from config.campaign_file import load_campaign
    from tasks.campaigns.apply import apply_campaign, check_references
    from tasks.campaigns.roster import read_roster
    from tasks.campaigns.roster_import import import_roster

    spec = load_campaign(file)
    configs = check_references(spec, file.parent, file=str(file))
    roster_path = roster_file or (file.parent / spec.roster if spec.roster else None)
    rows, problems = read_roster(roster_path, spec) if roster_path else ([], [])
    settings, engine = store()
    with transaction(engine) as session:
        change = apply_campaign(
            session, spec, configs=configs, source_path=str(file.resolve()), actor=settings.actor
        )
        imported = (
            import_roster(session, change.campaign, spec, rows, actor=settings.actor)
            if roster_path
            else None
        )
    report: dict[str, Any] = {
        "campaign": spec.slug,
        "outcome": change.outcome,
        "changed": change.changed,
    }
    report["plan_changed"] = change.plan_changed
    if roster_path and imported:
        report["roster"] = roster_report(roster_path, imported, problems)
    if json_output:
        print_json(report)
    else:
        _print_apply(report, spec.name, f"{spec.sprint.weeks}-week sprint from {spec.sprint.start}")
    if "roster" in report:
        fail_on_skipped(report["roster"])


def _print_apply(report: dict[str, Any], name: str, sprint: str) -> None:
    outcome = report["outcome"]
    line = f"Campaign {report['campaign']} ({name}): {outcome}"
    if outcome == "updated":
        shown = report["changed"][:6]
        more = len(report["changed"]) - len(shown)
        line += f" ({', '.join(shown)}{f' and {more} more' if more > 0 else ''})"
    console.print(f"{line}; {sprint}.", markup=False)
    if "roster" in report:
        from cli.creators import print_roster_report

        print_roster_report(report["roster"])
    roster_changed = "roster" in report and (
        report["roster"]["added"] or report["roster"]["updated"]
    )
    if outcome == "unchanged" and not report["plan_changed"] and not roster_changed:
        console.print("Nothing changed: the store already matches these files.")


@app.command("list")
def list_command(json_output: bool = JSON_OPTION) -> None:
    """List the campaigns in the store."""
    _, engine = store()
    with transaction(engine, write=False) as session:
        campaigns = list_campaigns(session)
    if json_output:
        print_json(campaigns)
        return
    from rich.table import Table

    if not campaigns:
        console.print("No campaigns yet: `rally campaign apply campaign.yaml` adds one.")
        return
    table = Table(
        "Slug", "Name", "Kind", "Sprint", "Creators", title="Campaigns", title_justify="left"
    )
    for c in campaigns:
        kind = ("political" if c["political"] else "non-political") + (
            ", paid" if c["paid"] else ", organic"
        )
        table.add_row(
            c["slug"],
            c["name"],
            kind,
            f"{c['weeks']} weeks from {c['start_date']}",
            str(c["creators"]),
        )
    console.print(table)


@app.command("show")
def show(slug: str, json_output: bool = JSON_OPTION) -> None:
    """Show a campaign: its terms, KPI targets, budget, sprint plan and roster."""
    settings, engine = store()
    with transaction(engine, write=False) as session:
        overview = campaign_overview(session, slug, public_url=settings.public_url)
    if json_output:
        print_json(overview)
        return
    _print_overview(overview)


def _print_overview(overview: dict[str, Any]) -> None:
    from rich.table import Table

    from tasks.formats import money

    c = overview["campaign"]
    currency = c["budget"]["currency"]
    console.rule(f"[bold]{c['name']}[/] ({c['slug']})", align="left")
    console.print(c["objective"], markup=False)
    kind = ("Political" if c["political"] else "Non-political") + (
        ", paid media" if c["paid"] else ", organic"
    )
    console.print(f"{kind} · {c['jurisdiction']} · {c['timezone']}", markup=False)
    if c["committee"]:
        console.print(
            f'Committee: {c["committee"]["name"]} · "{c["committee"]["paid_for_by"]}"', markup=False
        )
    kpis = c["kpis"]
    targets = [
        f"{k.replace('_', ' ')} {percent(v)}"
        for k, v in kpis.items()
        if v is not None and k.endswith("rate")
    ]
    targets += [f"{k} {count(v)}" for k in ("views", "signups") if (v := kpis.get(k)) is not None]
    targets += [
        f"{k.replace('_', ' ')} {money(round(v * 100), currency)}"
        for k in ("cpa", "cost_per_engaged_user")
        if (v := kpis.get(k)) is not None
    ]
    console.print("KPI targets: " + (", ".join(targets) or "none"), markup=False)
    budget = c["budget"]
    split = ", ".join(
        f"{k} {money(round(budget['total'] * share * 100), currency)}"
        for k, share in budget["split"].items()
        if share
    )
    console.print(
        f"Budget: {money(round(budget['total'] * 100), currency)} ({split})", markup=False
    )
    console.print(
        "Segments: " + ", ".join(f"{s['id']} ({s['name']})" for s in c["segments"]), markup=False
    )
    plan = Table("Weeks", "Dates", "Phase", title="Sprint plan", title_justify="left")
    for p in overview["plan"]["phases"]:
        plan.add_row(
            f"{p['first_week']}-{p['last_week']}", f"{p['starts_on']} to {p['ends_on']}", p["name"]
        )
    console.print(plan)
    milestones = Table(
        "Week", "Due", "Milestone", "Status", title="Milestones", title_justify="left"
    )
    for m in overview["plan"]["milestones"]:
        milestones.add_row(str(m["week"]), m["due_on"], m["name"], m["status"])
    console.print(milestones)
    from cli.creators import roster_table

    console.print(roster_table(overview["roster"], currency, overview["public_url"]))

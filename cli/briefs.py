"""`rally briefs`: generate, send, show, follow and compare creators' briefs."""

import os
import sys
from collections import defaultdict
from typing import Any

import typer
from rich.table import Table

from cli.common import JSON_OPTION, console, flow_progress, print_json, store
from config.errors import RallyError
from store.db import transaction

app = typer.Typer(
    help="Creators' briefs: generate and send them, see who acknowledged, compare versions.",
    no_args_is_help=True,
)
FORMATS = ("md", "html", "text")


@app.command("generate")
def generate_command(
    slug: str,
    creators: list[str] = typer.Option(
        [], "--creator", help="Only this creator's brief (repeat for several)."
    ),
    send: bool = typer.Option(False, "--send", help="Email each brief that was not sent yet."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Render every creator's brief; a new version only where the campaign or creator changed."""
    from tasks.briefs.run import prepare, select_members

    settings, engine = store()
    with transaction(engine, write=False) as session:  # mistakes are named before Prefect starts
        run = prepare(session, slug, public_url=settings.public_url)
        select_members(session, run.campaign, creators)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.briefing import generate_briefs
    from tasks.progress import listening

    quiet = json_output or not sys.stderr.isatty()
    bar = flow_progress("Briefs", quiet=quiet)
    task = bar.add_task("briefs", total=None)
    with bar, listening(lambda _what, done, total: bar.update(task, completed=done, total=total)):
        summary = generate_briefs(slug, handles=creators or None, send=send)
    print_json(summary) if json_output else print_summary(summary)
    if summary["failed"]:
        raise RallyError(
            f"{len(summary['failed'])} brief(s) not generated: fix the values named above "
            "and generate again (the other briefs are saved)"
        )


def print_summary(summary: dict[str, Any]) -> None:
    console.print(
        f"Briefs for {summary['campaign']}: {summary['rendered']} new or updated, "
        f"{summary['unchanged']} unchanged, {len(summary['failed'])} failed, "
        f"{summary['queued']} queued to send."
    )
    grouped: dict[str, list[str]] = defaultdict(list)
    for problem in summary["failed"]:
        grouped[problem["message"]].append("@" + problem["handle"])
    for message, handles in grouped.items():
        console.print(f"  {message}: {', '.join(sorted(handles))}", markup=False)
    delivery = summary.get("delivery")
    if delivery and (delivery["sent"] or delivery["errors"]):
        console.print(
            f"Email: {delivery['sent']} sent, {delivery['retrying']} to retry, "
            f"{delivery['dead']} failed."
        )
        for error in delivery["errors"][:10]:
            console.print(f"  {error}", markup=False)
        if delivery["stopped"]:
            console.print(f"  Stopped: {delivery['stopped']}", markup=False)
        settings, _ = store()
        if not settings.smtp_host and delivery["sent"]:
            console.print(f"No SMTP server is set (RALLY_SMTP_HOST): mail is in {settings.mailbox}")


@app.command("show")
def show_command(
    slug: str,
    handle: str,
    format: str = typer.Option("md", "--format", help="md, html or text."),
    version: int | None = typer.Option(None, "--version", help="An earlier version."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Print a creator's brief as it was rendered and stored."""
    from tasks.briefs.status import find_brief
    from tasks.formats import html_to_text

    if format not in FORMATS:
        raise RallyError(f"--format must be one of {', '.join(FORMATS)} (got {format!r})")
    _, engine = store()
    with transaction(engine, write=False) as session:
        brief = find_brief(session, slug, handle, version)
    shown = {"md": brief.content_markdown, "html": brief.content_html}
    content = shown[format] if format in shown else html_to_text(brief.content_html)
    if json_output:
        print_json(
            {
                "campaign": slug,
                "creator": handle.lstrip("@"),
                "version": brief.version,
                "created_at": brief.created_at,
                "sent_at": brief.sent_at,
                "acknowledged_at": brief.acknowledged_at,
                "format": format,
                "content": content,
            }
        )
    else:
        sys.stdout.write(content)


@app.command("status")
def status_command(slug: str, json_output: bool = JSON_OPTION) -> None:
    """Per creator: brief version, email, acknowledgement and reminder."""
    from tasks.briefs.status import brief_status

    settings, engine = store()
    with transaction(engine, write=False) as session:
        rows = brief_status(session, slug, public_url=settings.public_url)
    if json_output:
        print_json(rows)
        return
    acknowledged = sum(1 for r in rows if r["acknowledged_at"])
    table = Table(
        title=f"Briefs of {slug}: {acknowledged} of {len(rows)} acknowledged",
        title_justify="left",
    )
    for name in ("Creator", "Version", "Email", "Acknowledged", "Reminder"):
        table.add_column(name)
    for r in rows:
        table.add_row(
            f"@{r['handle']}",
            str(r["version"] or "-"),
            r["email_status"] + (f" ({r['email_error']})" if r["email_error"] else ""),
            _day(r["acknowledged_at"]),
            _day(r["reminder_sent_at"]),
        )
    console.print(table)


def _day(value: str | None) -> str:
    return value[:16].replace("T", " ") + " UTC" if value else "-"


@app.command("diff")
def diff_command(
    slug: str,
    handle: str,
    old: int | None = typer.Option(None, "--from", help="Older version (default: the one before)."),
    new: int | None = typer.Option(None, "--to", help="Newer version (default: the newest)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """What changed in a creator's brief between two versions: inputs, then the text."""
    from tasks.briefs.status import brief_diff

    _, engine = store()
    with transaction(engine, write=False) as session:
        diff = brief_diff(session, slug, handle, old=old, new=new)
    if json_output:
        print_json(diff)
        return
    console.print(f"@{handle.removeprefix('@')}: brief v{diff['from']} -> v{diff['to']}")
    for path, (before, after) in diff["inputs"].items():
        console.print(f"  {path}: {before!r} -> {after!r}", markup=False)
    if not diff["inputs"]:
        console.print("  No input changed.")
    if not diff["markdown_diff"]:
        console.print("  The text is the same.")
        return
    console.print()
    for line in diff["markdown_diff"]:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(line, style=style, markup=False)

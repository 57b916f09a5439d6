"""`rally creatives`: submit drafts for review, record posts, print the chain of custody."""

from typing import Any

import typer

from cli.common import JSON_OPTION, console, print_json, store
from store.db import transaction
from store.types import utcnow

app = typer.Typer(
    help="Creatives: submit a draft (checked, then routed to review), record its post.",
    no_args_is_help=True,
)


@app.command("submit")
def submit_command(
    slug: str,
    handle: str,
    caption: str = typer.Option(..., "--caption", help="The caption, as it will be posted."),
    script: str = typer.Option("", "--script", help="Script or transcript."),
    video: str | None = typer.Option(None, "--video", help="Link to the video file or draft."),
    duration: float | None = typer.Option(None, "--duration", help="Length in seconds."),
    paid: bool = typer.Option(False, "--paid", help="A paid placement or boosted post."),
    ai: bool = typer.Option(False, "--ai", help="Contains AI-generated or altered media."),
    creative: int | None = typer.Option(None, "--creative", help="Resubmit this creative."),
    title: str | None = typer.Option(None, "--title", help="A name for a new creative."),
    by: str | None = typer.Option(None, "--as", "--by", help="Who submits (default: the creator)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Submit a draft: the policy checks it, then it goes to review or back to the creator."""
    from tasks.review.creatives import Submission, submit

    settings, engine = store()
    draft = Submission(caption, script, video, duration, paid, ai, title)
    with transaction(engine) as session:
        result = submit(
            session,
            slug=slug,
            handle=handle,
            submission=draft,
            submitted_by=by or f"creator:@{handle.removeprefix('@')}",
            now=utcnow(),
            creative_id=creative,
            public_url=settings.public_url,
        )
    report: dict[str, Any] = {
        "creative": result.creative_id,
        "version": result.version,
        "outcome": "changes_requested" if result.blocked else "in_review",
        "tiers": result.tiers,
        "policy_version": result.policy_version,
        "findings": [vars(f) for f in result.findings],
    }
    if json_output:
        print_json(report)
        return
    where = (
        "sent back to the creator" if result.blocked else "in review: " + " -> ".join(result.tiers)
    )
    console.print(f"Creative {result.creative_id} version {result.version}: {where}.")
    for f in result.findings:
        mark = "ok  " if f.passed else ("BLOCK" if f.severity == "block" else "warn")
        console.print(f"  {mark:5} {f.rule_id}: {f.message}", markup=False)


@app.command("posted")
def posted_command(
    creative: int,
    url: str,
    force: bool = typer.Option(False, "--force", help="Replace an address recorded already."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Record where a creative was posted (flagged if it was not approved)."""
    from tasks.review.creatives import posted

    settings, engine = store()
    with transaction(engine) as session:
        approved = posted(
            session,
            creative_id=creative,
            url=url,
            actor=settings.actor,
            now=utcnow(),
            force=force,
        )
    if json_output:
        print_json({"creative": creative, "url": url, "approved": approved})
    elif approved:
        console.print(f"Creative {creative} posted at {url}.")
    else:
        console.print(f"Creative {creative} was posted BEFORE APPROVAL; recorded and flagged.")
    if not approved:
        raise typer.Exit(1)


@app.command("list")
def list_command(
    slug: str,
    status: str | None = typer.Option(
        None,
        "--status",
        help="Only these: draft, in_review, changes_requested, approved, "
        "rejected, posted or taken_down.",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """The campaign's creatives, newest first: creator, status, version, the review tier each
    waits on, and where it was posted."""
    from rich.table import Table

    from store.models import CreativeStatus
    from tasks.campaigns.campaign import get_campaign
    from tasks.review.views import creatives_of

    if status is not None and status not in set(CreativeStatus):
        known = ", ".join(CreativeStatus)
        raise typer.BadParameter(
            f"{status!r} is not a status (one of {known})", param_hint="--status"
        )
    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = creatives_of(session, get_campaign(session, slug), status=status)
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print(f"No creatives on {slug}" + (f" with status {status}." if status else "."))
        return
    table = Table()
    for name in ("Id", "Creator", "Title", "Status", "Version", "Waits on", "Posted at"):
        table.add_column(name, no_wrap=name in ("Creator", "Status"))
    for r in rows:
        table.add_row(
            str(r["id"]),
            f"@{r['creator']}",
            r["title"],
            r["status"],
            str(r["version"]),
            r["waiting_on"] or "",
            r["posted_url"] or "",
        )
    console.print(table)


@app.command("history")
def history_command(creative: int, json_output: bool = JSON_OPTION) -> None:
    """The chain of custody: brief, every draft, findings, decisions, post."""
    from tasks.review.views import history

    _, engine = store()
    with transaction(engine, write=False) as session:
        chain = history(session, creative)
    if json_output:
        print_json(chain)
        return
    console.print(f"Creative {chain['creative']} ({chain['title']}): {chain['status']}")
    for v in chain["versions"]:
        brief = f"brief v{v['brief_version']}" if v["brief_version"] else "no brief"
        console.print(
            f"  v{v['version']} by {v['submitted_by']} ({brief}): {v['status']}", markup=False
        )
        console.print(f"    caption: {v['caption']}", markup=False)
        for f in v["findings"]:
            if not f["passed"]:
                console.print(f"    {f['severity']} {f['rule']}: {f['message']}", markup=False)
        for r in v["reviews"]:
            who = f" by {r['decided_by']}" if r["decided_by"] else ""
            note = f": {r['note']}" if r["note"] else ""
            console.print(f"    {r['tier']}: {r['status']}{who}{note}", markup=False)
    if chain["posted_url"]:
        console.print(f"  posted {chain['posted_at']} at {chain['posted_url']}", markup=False)
    console.print("Audit log:")
    for e in chain["audit"]:
        console.print(f"  #{e['seq']} {e['at'][:19]} {e['actor']}: {e['summary']}", markup=False)

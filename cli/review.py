"""`rally review`: the review queue and an approver's decisions."""

import os

import typer

from cli.common import JSON_OPTION, console, print_json, store
from config.errors import RallyError
from store.db import transaction
from store.types import utcnow

app = typer.Typer(help="Review creatives: the queue, one task, decisions.", no_args_is_help=True)
AS = typer.Option(
    ..., "--as", help="Your email, as listed in the campaign's approvers (and your API token)."
)
NOTE = typer.Option("", "--note", help="What must change, or anything unchecked and why.")


@app.command("queue")
def queue_command(
    tier: str | None = typer.Option(None, "--tier", help="Only this tier."),
    overdue: bool = typer.Option(False, "--overdue", help="Only tasks past their deadline."),
    approver: str | None = typer.Option(None, "--as", help="Only tasks this approver may decide."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Open review tasks, overdue first."""
    from tasks.review.queue import review_queue

    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = review_queue(session, approver=approver, tier=tier, overdue=overdue, now=utcnow())
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print("No review tasks waiting.")
    for r in rows:
        late = "OVERDUE " if r["overdue"] else ""
        console.print(
            f"{late}task {r['task']}: {r['tier']} of creative {r['creative']} v{r['version']} "
            f"({r['campaign']}), due {r['due_at'][:16]}",
            markup=False,
        )


@app.command("show")
def show_command(task: int, json_output: bool = JSON_OPTION) -> None:
    """A review task: the draft, its findings with the rules' explanations, the checklist."""
    from tasks.review.views import task_view

    _, engine = store()
    with transaction(engine, write=False) as session:
        data = task_view(session, task)
    if json_output:
        print_json(data)
        return
    t = data["task"]
    console.print(
        f"Task {task}: {t['tier']} review of creative {data['creative']} v{data['version']} "
        f"({t['status']})"
    )
    paid = data.get("paid_placement")
    if paid:
        console.print(
            f"Paid placement: this video is posted ({paid['posted_url'] or 'no address kept'}) "
            "and is to be boosted as a Spark Ad; the decision is about the boost only",
            markup=False,
        )
    console.print(f"Caption: {data['caption']}", markup=False)
    for f in data["findings"]:
        mark = "ok" if f["passed"] else f["severity"]
        console.print(f"  [{mark}] {f['rule']}: {f['message']}", markup=False)
    console.print("Checklist: " + ", ".join(i["id"] for i in data["checklist"]))


def _decide(
    task: int, decision: str, approver: str, note: str, confirmed: list[str], json_output: bool
) -> None:
    from tasks.review.approvers import who
    from tasks.review.decisions import decide

    settings, engine = store()
    with transaction(engine) as session:
        owner = who(session, os.environ.get("RALLY_REVIEW_TOKEN"), kinds=("api",), now=utcnow())
        if owner is None:
            raise RallyError(
                "decisions need your API token in RALLY_REVIEW_TOKEN "
                "(campaign staff issue one with `rally review token EMAIL`)"
            )
        if owner != approver.strip().lower():
            raise RallyError(f"your API token is {owner}'s, not {approver}'s")
        result = decide(
            session,
            task_id=task,
            decision=decision,
            approver=approver,
            now=utcnow(),
            note=note,
            confirmed=confirmed,
            public_url=settings.public_url,
        )
    if json_output:
        print_json(
            {
                "task": task,
                "decision": decision,
                "applied": result.applied,
                "status": result.task.status,
                "next_tier": result.next_tier,
                "creative": result.creative.id,
                "creative_status": result.creative.status,
            }
        )
    elif not result.applied:
        console.print(f"Task {task} already had this decision; nothing changed.")
    elif result.next_tier:
        console.print(f"Task {task}: approved; the {result.next_tier} review is open now.")
    else:
        creative = result.creative
        console.print(
            f"Task {task}: {result.task.status}; creative {creative.id} is {creative.status}."
        )


@app.command("approve")
def approve_command(
    task: int,
    approver: str = AS,
    note: str = NOTE,
    confirm: list[str] = typer.Option(
        [], "--confirm", help="A checklist item you confirm (repeat), or 'all'."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Approve: the next tier opens, or the creative is approved for posting."""
    _decide(task, "approve", approver, note, confirm, json_output)


@app.command("request-changes")
def request_changes_command(
    task: int, approver: str = AS, note: str = NOTE, json_output: bool = JSON_OPTION
) -> None:
    """Send the draft back with notes; the next version starts at the first tier."""
    _decide(task, "request_changes", approver, note, [], json_output)


@app.command("reject")
def reject_command(
    task: int, approver: str = AS, note: str = NOTE, json_output: bool = JSON_OPTION
) -> None:
    """Reject the creative for good."""
    _decide(task, "reject", approver, note, [], json_output)


@app.command("token")
def token_command(
    email: str,
    days: int = typer.Option(90, "--days", min=1, max=365, help="How long it is valid."),
) -> None:
    """Issue an API token for an approver's scripts (shown once; only its hash is kept)."""
    from datetime import timedelta

    from store.audit import Change, record
    from tasks.review.approvers import issue, reviews_anything

    settings, engine = store()
    with transaction(engine) as session:
        if not reviews_anything(session, email.strip().lower()):
            raise RallyError(
                f"{email} is not an approver or staff of any campaign: add them to a campaign "
                "file's `approvers:` (or `staff:`) and apply it, then issue the token"
            )
        secret = issue(session, email, kind="api", lifetime=timedelta(days=days), now=utcnow())
        record(
            session,
            [
                Change(
                    settings.actor,
                    "approver.token_issued",
                    "approver",
                    email.lower(),
                    f"API token for {email.lower()}, valid {days} days",
                    {"days": days},
                )
            ],
        )
    console.print(f"API token for {email} (valid {days} days; shown only now):")
    print(secret)

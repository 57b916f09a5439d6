"""`rally audit`: check and export the hash-chained audit log."""

import sys
from pathlib import Path

import typer

from cli.common import JSON_OPTION, console, print_json, store
from config.errors import RallyError
from store import audit
from store.db import transaction

app = typer.Typer(help="The audit log: verify the chain, export it.", no_args_is_help=True)


@app.command("verify")
def verify(json_output: bool = JSON_OPTION) -> None:
    """Check every entry; exit non-zero naming the first entry edited, deleted or reordered."""
    _, engine = store()
    with transaction(engine, write=False) as session:
        result = audit.verify(session)
    if json_output:
        print_json(
            {
                "ok": result.ok,
                "entries": result.entries,
                "first_bad": result.first_bad,
                "problem": result.problem,
                "last_hash": result.last_hash if result.ok else None,
            }
        )
        if not result.ok:
            raise SystemExit(1)
        return
    if not result.ok:
        raise RallyError(f"audit log broken at entry {result.first_bad}: {result.problem}")
    console.print(f"Audit log intact: {result.entries} entries, each linked to the one before.")
    console.print(
        f"Newest entry {result.entries} has hash {result.last_hash}: note it somewhere else to "
        "check later that no one rewrote the log, hashes and all."
    )


@app.command("export")
def export(
    output: Path | None = typer.Option(
        None, "--out", "--output", "-o", help="Write to this file instead of stdout."
    ),
    since: int = typer.Option(
        0, "--since", min=0, max=2**63 - 1, help="Only entries after this sequence number."
    ),
    consent: bool = typer.Option(
        False, "--consent", help="The consent records instead: each consent given or withdrawn."
    ),
) -> None:
    """Write the audit log as JSON lines (one entry per line, oldest first), or with
    --consent its companion: every consent given, confirmed or withdrawn, with its source,
    wording and origin."""
    from tasks.leads.consent_records import export_consent_records

    write = export_consent_records if consent else audit.export
    _, engine = store()
    with transaction(engine, write=False) as session:
        if output is None:
            written = write(session, sys.stdout, since=since)
        else:
            with output.open("w", encoding="utf-8") as out:
                written = write(session, out, since=since)
    what = "consent records" if consent else "audit entries"
    print(f"{written} {what} exported" + (f" to {output}" if output else ""), file=sys.stderr)

"""`rally`: the entry point. Errors are one clear line and a non-zero exit; --debug shows more."""

import sys
import traceback

import typer

from cli import (
    audit,
    briefs,
    campaign,
    creatives,
    creators,
    db,
    deploy,
    events,
    leads,
    review,
    serve,
    sprint,
)
from config.errors import RallyError

app = typer.Typer(
    name="rally",
    help=(
        "Rally runs creator campaigns: the sprint, briefs, compliance review, follow-ups, "
        "lead sync, reports."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(campaign.app, name="campaign")
app.add_typer(creators.app, name="creators")
app.add_typer(briefs.app, name="briefs")
app.add_typer(creatives.app, name="creatives")
app.add_typer(review.app, name="review")
app.add_typer(events.app, name="events")
app.add_typer(events.rules_app, name="rules")
app.add_typer(leads.app, name="leads")
app.add_typer(sprint.app, name="sprint")
app.command("report")(sprint.report_command)
app.command("demo")(sprint.demo_command)
app.add_typer(audit.app, name="audit")
app.add_typer(db.app, name="db")
app.command("serve")(serve.serve_command)
app.command("deploy")(deploy.deploy_command)

_debug = False


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"rally {version('rally')}")
        except PackageNotFoundError:  # run from a checkout that is not installed
            print("rally (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback when something fails."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print Rally's version."
    ),
) -> None:
    global _debug
    _debug = debug


def main(argv: list[str] | None = None) -> None:
    global _debug
    _debug = False
    try:
        app(args=argv, prog_name="rally")
    except RallyError as exc:
        if _debug:
            traceback.print_exc()
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        if _debug:
            raise
        print(f"error: {describe(exc)} (run with --debug for details)", file=sys.stderr)
        raise SystemExit(1) from None


def describe(exc: Exception) -> str:
    """One line for an unexpected failure. A database error shows the database's own first
    line only: the full text repeats the SQL and its parameters, which may be personal data."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        first = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        return f"database error: {first}"
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    main()

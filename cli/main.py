"""`rally`: the entry point. Errors are one clear line and a non-zero exit; --debug shows more."""

import os
import sys
import traceback
from importlib import import_module
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from config.errors import RallyError

# Each command, where it lives, and its one line of help. A command's module (and with it the
# store, Prefect or httpx) is imported only when that command runs, so `rally --help` and
# `rally --version` answer without loading any of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "campaign": ("cli.campaign:app", "Campaigns as code: apply a campaign.yaml, list, show."),
    "creators": ("cli.creators:app", "A campaign's creators: import a roster CSV, list it."),
    "briefs": (
        "cli.briefs:app",
        "Creators' briefs: generate and send them, see who acknowledged, compare versions.",
    ),
    "creatives": (
        "cli.creatives:app",
        "Creatives: submit a draft (checked, then routed to review), record its post.",
    ),
    "review": ("cli.review:app", "Review creatives: the queue, one task, decisions."),
    "staff": ("cli.staff:app", "The staff console: a staff member's sign-in link."),
    "events": ("cli.events:app", "Engagement events: ingest, rehearse, process, status."),
    "rules": ("cli.events:rules_app", "Follow-up rules: try them on events."),
    "leads": ("cli.leads:app", "Leads: list, show, check, sync, status, retry, forget."),
    "sprint": ("cli.sprint:app", "The sprint: start it (or rehearse it), see where it stands."),
    "report": (
        "cli.sprint:report_command",
        "Write the report (HTML with charts, the numbers as CSV and JSON) and store it for "
        "`rally serve`'s report pages.",
    ),
    "demo": (
        "cli.sprint:demo_command",
        "Rehearse an example campaign's 12-week sprint in a fresh demo store and report it.",
    ),
    "tiktok": (
        "cli.tiktok:app",
        "TikTok: connect a business account, subscribe to its webhooks, see their state.",
    ),
    "audit": ("cli.audit:app", "The audit log: verify the chain, export it."),
    "tokens": (
        "cli.tokens:app",
        "API tokens: create (shown once), list, revoke; end a person's sign-ins.",
    ),
    "webhooks": (
        "cli.webhooks:app",
        "Outgoing webhooks: add a subscription, list, test, replay, enable, remove.",
    ),
    "contracts": (
        "cli.contracts:app",
        "Creator contracts: offer them, see who signed, countersign (the PDF is mailed).",
    ),
    "payments": (
        "cli.payments:app",
        "Payments: the ledger, approvals, payouts, W-9s, tax year, disbursement reports.",
    ),
    "boost": (
        "cli.boost:app",
        "Spark Ads: posts worth boosting, creators' authorizations, boosts (pause, resume).",
    ),
    "db": ("cli.db:app", "The store's schema: status and upgrades."),
    "serve": (
        "cli.serve:serve_command",
        "Serve the web pages and run the recurring flows on a local timer.",
    ),
    "deploy": (
        "cli.deploy:deploy_command",
        "Register every flow as a deployment (schedules for the recurring ones) with the "
        "Prefect server or Cloud workspace configured here, and say how to start workers.",
    ),
}


class LazyCommand(TyperCommand):
    """A command listed by name and help, its module imported when it is run."""

    def __init__(self, name: str, target: str, help_text: str) -> None:
        super().__init__(name=name, help=help_text, add_help_option=False)
        self.command_name, self.target = name, target

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        found = getattr(import_module(module), attribute)
        outer = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        if isinstance(found, typer.Typer):  # a group, even of one command (`rally rules test`)
            outer.add_typer(found, name=self.command_name)
        else:
            outer.command(self.command_name)(found)
            outer.callback()(lambda: None)  # keeps `outer` a group, so the command is found
        group = typer.main.get_command(outer)
        assert isinstance(group, TyperGroup)
        return group.commands[self.command_name]


class LazyGroup(TyperGroup):
    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, LazyCommand) and name is not None:
            command = self.commands[name] = command.load()
        return name, command, rest


app = typer.Typer(
    name="rally",
    cls=LazyGroup,
    help=(
        "Rally runs creator campaigns: the sprint, briefs, compliance review, follow-ups, "
        "lead sync, reports."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command_group() -> LazyGroup:
    """The `rally` command with every subcommand listed, none of them imported yet."""
    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    for name, (target, help_text) in COMMANDS.items():
        group.add_command(LazyCommand(name, target, help_text))
    return group


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
    if not debug:  # a failing flow is said once, in one line, below (and in Prefect's run logs)
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def main(argv: list[str] | None = None) -> None:
    global _debug
    _debug = False
    try:
        command_group().main(args=argv, prog_name="rally")
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
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        first = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        return f"database error: {first}"
    if isinstance(exc, ValidationError) and exc.title.endswith("Settings"):
        return "; ".join(_setting_problem(error) for error in exc.errors())
    return f"{type(exc).__name__}: {exc}"


def _setting_problem(error: Any) -> str:
    """A bad setting by the name its user set it by: `RALLY_SMTP_PORT: Input should be a valid
    integer, ...`. The value is left out: it may be a secret."""
    name = "RALLY_" + "_".join(str(part) for part in error["loc"]).upper()
    return f"setting {name}: {error['msg']}"


if __name__ == "__main__":
    main()

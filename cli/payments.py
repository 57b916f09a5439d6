"""`rally payments`: what each creator has earned, from the ledger, and corrections to it."""

import typer

from cli.common import JSON_OPTION, console, print_json, store
from store.db import transaction
from store.types import utcnow

app = typer.Typer(
    help="Payments: the ledger, what each creator is owed, earnings come due, reversals.",
    no_args_is_help=True,
)


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


@app.command("ledger")
def ledger_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    creator: str = typer.Option(None, "--creator", help="One creator's lines (handle)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Every posting in the order it was made: what it added to (or took from) what the
    creator is owed. `--json` gives each line of each posting (debits positive, credits
    negative), with what earned it."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.ledger import PAYABLE, ledger

    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = ledger(session, get_campaign(session, campaign), creator)
    if json_output:
        print_json(rows)
        return
    from rich.table import Column, Table

    table = Table(Column("posting", overflow="fold"), "creator", "owed", "on", box=None)
    for row in rows:
        if row["account"] == PAYABLE:
            owed = _money(-row["amount_cents"], row["currency"])
            table.add_row(row["posting"], row["creator"], owed, row["at"][:10])
    whose = f"@{creator.lstrip('@')} in {campaign}" if creator else campaign
    console.print(table if rows else f"No postings for {whose} yet.", markup=False)


@app.command("balances")
def balances_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """What the campaign owes each creator: for deliverables, as bonus, in all."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.ledger import balances

    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = balances(session, get_campaign(session, campaign))
    if json_output:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("creator", "fees", "bonus", "owed", box=None)
    for row in rows:
        money = [
            _money(row[k], row["currency"]) for k in ("fees_cents", "bonus_cents", "owed_cents")
        ]
        table.add_row(row["creator"], *money)
    console.print(table if rows else f"Nothing is owed to {campaign}'s creators yet.")


@app.command("earn")
def earn_command(campaign: str = typer.Argument(..., help="The campaign (slug).")) -> None:
    """Post what has come due (posts still up long enough, signup bonuses); safe to repeat."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.ledger import earn_due

    settings, engine = store()
    with transaction(engine) as session:
        made = earn_due(
            session, get_campaign(session, campaign), actor=settings.actor, now=utcnow()
        )
    console.print(f"{made} new posting(s) for {campaign}.", markup=False)


@app.command("reverse")
def reverse_command(
    posting: str = typer.Argument(..., help="The posting to undo (its key, from `ledger`)."),
    reason: str = typer.Option(..., "--reason", help="Why: kept with the reversal."),
) -> None:
    """Undo a posting with its opposite, citing it and the reason (both are kept)."""
    from tasks.payments.ledger import reverse

    settings, engine = store()
    with transaction(engine) as session:
        cents = reverse(session, posting, reason=reason, actor=settings.actor, now=utcnow())
    console.print(f"Reversed {posting}: {cents / 100:,.2f} no longer owed.", markup=False)

"""`rally payments`: what each creator has earned, from the ledger, and corrections to it."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from cli.common import JSON_OPTION, console, flow_progress, print_json, shown_path, store
from store.db import transaction
from store.types import utcnow

app = typer.Typer(
    help="Payments: the ledger, approvals, payouts, W-9s, tax year, disbursement reports.",
    no_args_is_help=True,
)


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


@contextmanager
def _progress_bar(label: str) -> Iterator[None]:
    """A progress bar on stderr (a terminal's only) for long work told through
    `tasks.progress`."""
    from tasks.progress import listening

    bar = flow_progress(label, quiet=not sys.stderr.isatty(), starting=False)
    shown: dict[str, Any] = {}

    def show(what: str, done: int, total: int) -> None:
        if what not in shown:
            shown[what] = bar.add_task(what, total=total)
        bar.update(shown[what], completed=done, total=total)

    with bar, listening(show):
        yield


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
    from tasks.payments.approvals import member_by_handle
    from tasks.payments.ledger import PAYABLE, ledger

    _, engine = store()
    with transaction(engine, write=False) as session:
        the_campaign = get_campaign(session, campaign)
        if creator is not None:
            member_by_handle(session, the_campaign, creator)  # a misspelt handle is named
        rows = ledger(session, the_campaign, creator)
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
    """What each creator earned (for deliverables, as bonus), where it stands (awaiting
    approval, approved, paid) and what is still owed."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.ledger import balances

    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = balances(session, get_campaign(session, campaign))
    if json_output:
        print_json(rows)
        return
    from rich.table import Table

    columns = {"fees": "fees_cents", "bonus": "bonus_cents", "to approve": "awaiting_cents"}
    columns |= {"approved": "approved_cents", "in payout": "in_transit_cents"}
    columns |= {"paid": "paid_cents", "owed": "owed_cents"}
    currency = rows[0]["currency"] if rows else ""
    table = Table("creator", *columns, box=None, caption=f"Amounts in {currency}.")
    for row in rows:
        money = [f"{row[k] / 100:,.2f}" for k in columns.values()]
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


@app.command("kill-fee")
def kill_fee_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    creator: str = typer.Argument(..., help="The creator (handle)."),
    reason: str = typer.Option(..., "--reason", help="Why the deliverables are cancelled."),
) -> None:
    """Cancel a creator's deliverables not yet approved: they earn the terms' kill fee (the
    campaign file's `payments.kill_fee` share of each one's fee), once."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.approvals import member_by_handle
    from tasks.payments.ledger import earn_kill_fee

    settings, engine = store()
    with transaction(engine) as session:
        found = get_campaign(session, campaign)
        member = member_by_handle(session, found, creator)
        cents = earn_kill_fee(
            session, found, member, reason=reason, actor=settings.actor, now=utcnow()
        )
    console.print(f"@{creator.lstrip('@')}: kill fee of {cents / 100:,.2f} earned.", markup=False)


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


@app.command("approve")
def approve_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    creator: str = typer.Argument(..., help="The creator (handle)."),
    by: str = typer.Option(..., "--by", help="Who approves (a name or email): kept with it."),
) -> None:
    """Approve what a creator has waiting for payment. From the campaign's
    `payments.second_approval_from` up, a second, different person must approve it too."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.approvals import approve

    _, engine = store()
    with transaction(engine) as session:
        done = approve(session, get_campaign(session, campaign), creator, by=by, now=utcnow())
    amount = _money(done.amount_cents, done.currency)
    if done.posted:
        console.print(f"{done.creator}: {amount} approved for payment.", markup=False)
    else:
        console.print(
            f"{done.creator}: {amount} approved by {', '.join(done.approvers)}; "
            f"it needs {done.needed} people: a second must approve it too.",
            markup=False,
        )


@app.command("approvals")
def approvals_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Approvals waiting for a second person."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.approvals import waiting_approvals

    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = waiting_approvals(session, get_campaign(session, campaign))
    if json_output:
        print_json(rows)
        return
    for row in rows:
        console.print(
            f"@{row['creator']}: {_money(row['amount_cents'], row['currency'])} approved by "
            f"{', '.join(row['approvers'])}, waiting for a second person since {row['since'][:16]}",
            markup=False,
        )
    if not rows:
        console.print(f"No approval of {campaign} waits for a second person.", markup=False)


@app.command("account")
def account_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    creator: str = typer.Argument(..., help="The creator (handle)."),
    account: str = typer.Argument(
        ..., help="Their Stripe connected account id (acct_...), or PayPal email or id."
    ),
    provider: str = typer.Option(
        "stripe", "--provider", help="stripe (a connected account) or paypal."
    ),
) -> None:
    """Record where a creator is paid: their Stripe connected account, or PayPal account."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.payouts import PAYPAL, STRIPE, set_account

    if provider not in (STRIPE, PAYPAL):  # a rehearsal's accounts are the rehearsal's own
        raise typer.BadParameter("stripe or paypal", param_hint="--provider")
    settings, engine = store()
    with transaction(engine) as session:
        set_account(
            session, get_campaign(session, campaign), creator, account, provider=provider,
            actor=settings.actor, now=utcnow(),
        )  # fmt: skip
    where = "Stripe account" if provider == "stripe" else "PayPal account"
    console.print(f"@{creator.lstrip('@')} is paid to {where} {account}.", markup=False)


@app.command("payout")
def payout_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
) -> None:
    """Pay each creator their approved amount through their account's provider (Stripe,
    PayPal), once. Safe to run again after a crash: payouts already on their way are finished,
    never sent a second time. PayPal pays later: its webhook or `reconcile` settles them."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.payouts import NotConfigured, pay, start_payouts

    settings, engine = store()
    with transaction(engine) as session:
        the_campaign = get_campaign(session, campaign)
        started = start_payouts(session, the_campaign, actor=settings.actor, now=utcnow())
    for handle, why in started.skipped.items():
        console.print(f"{handle}: not paid: {why}.", markup=False)
    if started.payouts:
        console.print(
            f"{started.payouts} payout(s) of {started.cents / 100:,.2f} queued.", markup=False
        )
    try:
        with _progress_bar("Payouts"):
            report = pay(engine, settings, now=utcnow, campaign_id=the_campaign.id)
    except NotConfigured as exc:
        console.print(
            f"Not sent: {exc}. Queued payouts wait, and go with the next `rally payments "
            "payout` (none is queued twice).",
            markup=False,
        )
        raise typer.Exit(1) from None
    console.print(
        f"{report.sent} payout(s) made, {report.dead} refused, {report.retrying} to try again.",
        markup=False,
    )
    for error in report.errors:
        console.print(f"  {error}", markup=False)
    if report.stopped:
        raise typer.Exit(1)


@app.command("payouts")
def payouts_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """The campaign's payouts, newest first: to whom, how much, and what became of each."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.payouts import payouts

    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = payouts(session, get_campaign(session, campaign))
    if json_output:
        print_json(rows)
        return
    from rich.table import Column, Table

    table = Table("creator", "amount", "status", Column("transfer or error", overflow="fold"))
    for row in rows:
        said = row["transfer"] or row["error"] or ""
        table.add_row(row["creator"], _money(row["amount_cents"], row["currency"]),
                      row["status"], said)  # fmt: skip
    console.print(table if rows else f"No payouts for {campaign} yet.")


@app.command("reconcile")
def reconcile_command() -> None:
    """Ask the providers about payouts in transit: Stripe payouts whose tries ran out without
    an answer (settled if made, else returned to approved), PayPal payouts whose tries ran out
    (sent again with the same ids: PayPal answers with the first batch if it made one), and
    PayPal payouts it took (settled or returned as their items stand)."""
    from tasks.payments.payouts import reconcile

    settings, engine = store()
    counts = reconcile(engine, settings, now=utcnow())
    console.print(
        f"{counts['settled']} payout(s) settled, {counts['returned']} returned to approved"
        + (f", {counts['taken_back']} taken back after being paid" if counts["taken_back"] else "")
        + ".",
        markup=False,
    )


@app.command("w9")
def w9_command(
    creator: str = typer.Argument(..., help="The creator (handle)."),
    collected_on: str = typer.Option(
        None, "--collected-on", help="The day it was collected, YYYY-MM-DD (default: today)."
    ),
    legal_name: str = typer.Option(None, "--name", help="The name on the form."),
    tin_last4: str = typer.Option(
        None, "--tin-last4", help="The last four digits of their taxpayer id (never the whole)."
    ),
    business: bool = typer.Option(
        False, "--business", help="The W-9 is a business's: --name is its name."
    ),
    street: str = typer.Option(None, "--street", help="The address on the form: street."),
    street2: str = typer.Option(None, "--street2", help="A second address line."),
    city: str = typer.Option(None, "--city", help="City."),
    state: str = typer.Option(None, "--state", help="Two-letter state code."),
    zip_code: str = typer.Option(None, "--zip", help="ZIP code (12345 or 12345-6789)."),
) -> None:
    """Record that a creator's W-9 is on file, with the name and address on it (what
    disbursement reports itemize). Only the last four digits of the taxpayer id are kept;
    Rally refuses a whole one."""
    from datetime import date

    from tasks.payments.tax import Address, record_w9

    settings, engine = store()
    now = utcnow()
    try:
        day = date.fromisoformat(collected_on) if collected_on else now.date()
    except ValueError:
        raise typer.BadParameter(
            "give the day as YYYY-MM-DD", param_hint="--collected-on"
        ) from None
    given = [street, city, state, zip_code]
    address = Address.checked(street, city, state, zip_code, street2) if any(given) else None
    with transaction(engine) as session:
        record_w9(
            session, creator, collected_on=day, legal_name=legal_name, tin_last4=tin_last4,
            actor=settings.actor, now=now, address=address, business=business,
        )  # fmt: skip
    console.print(f"@{creator.lstrip('@')}: W-9 on file, collected {day}.", markup=False)


@app.command("tax-year")
def tax_year_command(
    year: int = typer.Argument(..., min=2000, max=2999, help="The payment year (2026)."),
    payer: str | None = typer.Option(
        None, "--payer", help="One payer's list (its FEC committee id or the campaign's payer)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Who was paid in a year (settled payouts, USD), who needs a 1099-NEC (paid at least the
    year's threshold) and whose W-9 is missing: for each payer the store's campaigns name."""
    from tasks.payments.tax import tax_year

    settings, engine = store()
    with transaction(engine, write=False) as session:
        found = tax_year(session, year, override_usd=settings.nec_threshold, payer=payer)
    if json_output:
        print_json(found)
        return
    threshold = f"{found['threshold_cents'] / 100:,.2f} {found['currency']}"
    console.print(f"{year}: 1099-NEC threshold {threshold} ({found['threshold']}).", markup=False)
    if not found["payers"]:
        console.print(f"Nobody was paid in {year}.", markup=False)
    named = len(found["payers"]) > 1 or any(p["payer"] for p in found["payers"])
    for paid in found["payers"]:
        if named:
            whose = paid["payer"] or "campaigns that name no payer"
            console.print(f"\nPaid by {whose} ({', '.join(paid['campaigns'])}):", markup=False)
        _payer_year(paid, year, found["currency"])


def _payer_year(paid: dict, year: int, currency: str) -> None:
    """One payer's part of `rally payments tax-year`."""
    from rich.table import Table

    table = Table("creator", "paid", "1099-NEC", "W-9", box=None)
    for row in paid["creators"]:
        w9 = row["w9_collected_on"] or ("MISSING" if row["missing_w9"] else "no")
        table.add_row(
            row["creator"], f"{row['paid_cents'] / 100:,.2f}",
            "needed" if row["needs_1099_nec"] else "-", w9,
        )  # fmt: skip
    if paid["creators"]:
        console.print(table)
    elif not paid["agencies"]:
        console.print(f"Nobody was paid in {year}.", markup=False)
    missing = sum(1 for row in paid["creators"] if row["missing_w9"])
    if missing:
        console.print(f"{missing} creator(s) need a 1099-NEC and have no W-9 on file.")
    for row in paid["agencies"]:
        needed = "1099-NEC needed" if row["needs_1099_nec"] else "no 1099-NEC"
        console.print(
            f"Paid through agency {row['agency']}: {row['paid_cents'] / 100:,.2f} "
            f"{currency}, {needed} (its W-9 is kept outside Rally).",
            markup=False,
        )


@app.command("disbursements")
def disbursements_command(
    campaign: str = typer.Argument(..., help="The campaign (slug): its FEC filing settings."),
    start: str = typer.Option(..., "--from", help="The period's first day, YYYY-MM-DD."),
    end: str = typer.Option(..., "--to", help="The period's last day, YYYY-MM-DD."),
) -> None:
    """Creators' payments in a period as itemized disbursements: Schedule B records for the
    FEC (.fec text and CSV of the same fields) and a plain CSV for state filings, written to
    the exports folder; money that came back after a payout was paid, as offsets (Schedule A)
    in files of their own. A payee without a name or address on file is left out and named
    (exit code 1)."""
    from datetime import date

    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.disbursements import report

    settings, engine = store()
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        raise typer.BadParameter("give days as YYYY-MM-DD", param_hint="--from/--to") from None
    with transaction(engine, write=False) as session:
        filed = report(session, get_campaign(session, campaign), first, last)
    folder = settings.exports / campaign
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in filed.files.items():
        (folder / name).write_text(text, encoding="ascii", errors="replace", newline="")
    for line in filed.summary:
        console.print(line, markup=False)
    for name in filed.files:
        console.print(f"  {shown_path(folder / name)}", markup=False)
    for problem in filed.problems:
        console.print(f"Not itemized: {problem}", markup=False)
    if filed.problems:
        raise typer.Exit(1)


@app.command("disclaimers")
def disclaimers_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """The disclaimer archive: each posted creative's caption and its "Paid for by" sentence,
    the reviews that approved it, what it earned and the payouts that paid its creator;
    written as CSV to the exports folder (`--json`: printed in full)."""
    import csv
    import json

    from tasks.campaigns.campaign import get_campaign
    from tasks.payments.disclaimers import disclaimer_archive

    settings, engine = store()
    with transaction(engine, write=False) as session:
        rows = disclaimer_archive(session, get_campaign(session, campaign))
    if json_output:
        print_json(rows)
        return
    folder = settings.exports / campaign
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "disclaimer-archive.csv"
    columns = ["creative", "creator", "title", "status", "posted_at", "posted_url"]
    columns += ["version", "caption", "paid_for_by", "approvals", "earned_cents"]
    columns += ["creator_payouts"]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                [json.dumps(row[c]) if isinstance(row[c], list) else row[c] for c in columns]
            )
    missing = [row for row in rows if not row["paid_for_by"]]
    console.print(f"{len(rows)} posted creative(s): {shown_path(path)}", markup=False)
    for row in missing:
        console.print(
            f'creative {row["creative"]} (@{row["creator"]}): no "Paid for by" in its caption',
            markup=False,
        )

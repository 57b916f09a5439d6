"""`rally contracts`: creators' contracts, offered from their briefs and terms, signed on their
brief pages, countersigned by staff."""

import typer

from cli.common import JSON_OPTION, console, print_json, store
from store.db import transaction
from store.types import utcnow

app = typer.Typer(
    help="Creator contracts: offer them, see who signed, countersign (the PDF is mailed).",
    no_args_is_help=True,
)


@app.command("offer")
def offer_command(campaign: str = typer.Argument(..., help="The campaign (slug).")) -> None:
    """A contract for each creator with a brief and a fee, from the brief's clauses and their
    terms; a new version only where the text changed (it is signed again). Creators sign on
    their brief page."""
    from tasks.briefs.contracts import offer
    from tasks.campaigns.campaign import get_campaign

    settings, engine = store()
    with transaction(engine) as session:
        counts = offer(session, get_campaign(session, campaign), actor=settings.actor, now=utcnow())
    console.print(
        f"{counts['offered']} contract(s) offered, {counts['unchanged']} unchanged; "
        f"{counts['no_brief']} creator(s) without a brief yet, {counts['no_fee']} without a fee.",
        markup=False,
    )


@app.command("list")
def list_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Each creator's newest contract: its version, who signed it and when, countersigned."""
    from sqlmodel import col, select

    from store.models import Contract, Creator, RosterMember
    from tasks.campaigns.campaign import get_campaign

    _, engine = store()
    with transaction(engine, write=False) as session:
        found = get_campaign(session, campaign)
        rows = session.exec(
            select(Contract, Creator.handle)
            .join(RosterMember, col(RosterMember.id) == col(Contract.member_id))
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(Contract.campaign_id == found.id)
            .order_by(col(Creator.handle), col(Contract.version))
        ).all()
    newest = {handle: contract for contract, handle in rows}  # the last version wins
    listed = [
        {
            "creator": handle,
            "version": c.version,
            "text_sha256": c.text_hash,
            "signed_name": c.signed_name,
            "signed_at": c.signed_at.isoformat() if c.signed_at else None,
            "countersigned_by": c.countersigned_by,
            "countersigned_at": c.countersigned_at.isoformat() if c.countersigned_at else None,
            "pdf": c.pdf_file,
        }
        for handle, c in newest.items()
    ]
    if json_output:
        print_json(listed)
        return
    for row in listed:
        state = (
            f"countersigned by {row['countersigned_by']}"
            if row["countersigned_at"]
            else f"signed by {row['signed_name']}, to countersign"
            if row["signed_at"]
            else "waiting for the creator's signature"
        )
        console.print(f"@{row['creator']}: version {row['version']}, {state}", markup=False)
    if not listed:
        console.print(f"No contracts for {campaign} yet (`rally contracts offer`).", markup=False)


@app.command("countersign")
def countersign_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    creator: str = typer.Argument(..., help="The creator (handle)."),
    by: str = typer.Option(..., "--by", help="Who countersigns for the campaign."),
) -> None:
    """Countersign a creator's signed contract: the signed PDF is written and mailed to them
    and to the campaign's staff."""
    from tasks.briefs.contracts import countersign
    from tasks.campaigns.campaign import get_campaign

    settings, engine = store()
    with transaction(engine) as session:
        contract = countersign(
            session, get_campaign(session, campaign), creator, by=by, home=settings.home,
            now=utcnow(),
        )  # fmt: skip
    console.print(
        f"@{creator.lstrip('@')}: version {contract.version} countersigned; "
        f"{settings.home / (contract.pdf_file or '')} is mailed with the next email run.",
        markup=False,
    )

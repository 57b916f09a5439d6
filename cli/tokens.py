"""`rally tokens`: API tokens for the systems that plug into Rally, and ending sign-ins."""

import typer

from cli.common import JSON_OPTION, console, id_argument, print_json, store
from config.errors import RallyError
from store.db import transaction
from store.types import utcnow

app = typer.Typer(
    help="API tokens: create (shown once), list, revoke; end a person's sign-ins.",
    no_args_is_help=True,
)


@app.command("create")
def create_command(
    name: str = typer.Argument(..., help="What the token is for (n8n, the data warehouse...)."),
    scopes: list[str] = typer.Option(
        [], "--scope", help="campaign:read, leads:write, ... (repeat; write includes read)."
    ),
    campaign: str | None = typer.Option(None, "--campaign", help="The one campaign it may use."),
    all_campaigns: bool = typer.Option(
        False, "--all-campaigns", help="Let it use every campaign instead of one."
    ),
    days: int = typer.Option(90, "--days", help="How long it is valid (1 to 365)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Make a token for Rally's API. Its secret is printed once; Rally keeps only a hash."""
    from tasks.api.tokens import create_token
    from tasks.campaigns.campaign import get_campaign

    if campaign and all_campaigns:
        raise RallyError("give --campaign SLUG or --all-campaigns, not both")
    if not campaign and not all_campaigns:
        raise RallyError(
            "name the campaign it is for with --campaign SLUG, or give --all-campaigns"
        )
    settings, engine = store()
    with transaction(engine) as session:
        found = get_campaign(session, campaign) if campaign else None
        token, secret = create_token(
            session,
            name=name,
            scopes=scopes,
            campaign=found,
            days=days,
            actor=settings.actor,
            now=utcnow(),
        )
        shown = {
            "id": token.id,
            "name": token.name,
            "scopes": token.scopes,
            "campaign": campaign,
            "expires_at": token.expires_at.isoformat(),
            "secret": secret,
        }
    if json_output:
        print_json(shown)
        return
    where = f"campaign {campaign}" if campaign else "every campaign"
    console.print(
        f"API token {token.id} ({token.name}) for {where}: {', '.join(token.scopes)}; "
        f"valid until {token.expires_at:%Y-%m-%d %H:%M} UTC.",
        markup=False,
    )
    console.print("Its secret, shown this once (Rally keeps only a hash):", markup=False)
    print(secret)


@app.command("list")
def list_command(json_output: bool = JSON_OPTION) -> None:
    """Every token: its scopes, campaign, state and last use (never its secret)."""
    from tasks.api.tokens import list_tokens

    _, engine = store()
    with transaction(engine, write=False) as session:
        rows = list_tokens(session, now=utcnow())
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print("No API tokens yet (`rally tokens create NAME --scope ...` makes one).")
        return
    from rich.table import Table

    table = Table("id", "name", "campaign", "scopes", "state", "expires", "last used", box=None)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["campaign"] or "(every campaign)",
            " ".join(r["scopes"]),
            r["state"],
            r["expires_at"][:10],
            (r["last_used_at"] or "never")[:16].replace("T", " "),
        )
    console.print(table)


@app.command("revoke")
def revoke_command(
    token_id: int = id_argument("The token's id (`tokens list`)."),
) -> None:
    """Revoke a token: requests with it are refused from now on."""
    from tasks.api.tokens import revoke_token

    settings, engine = store()
    with transaction(engine) as session:
        token = revoke_token(session, token_id, actor=settings.actor, now=utcnow())
        name = token.name
    console.print(
        f"API token {token_id} ({name}) revoked: it is refused from now on.", markup=False
    )


@app.command("end-sign-ins")
def end_sign_ins_command(
    email: str = typer.Argument(..., help="The approver's or staff member's email."),
) -> None:
    """End a person's sign-ins at once: sessions, unused links, approver API tokens.

    They can ask for a new sign-in link; nothing else of theirs changes."""
    from tasks.api.tokens import revoke_sign_ins

    settings, engine = store()
    with transaction(engine) as session:
        ended = revoke_sign_ins(session, email, actor=settings.actor, now=utcnow())
    console.print(f"{ended} sign-in(s) of {email} ended.", markup=False)

"""`rally tiktok`: connect a TikTok business account (OAuth), register the app's webhooks,
see when tokens expire and where webhooks go."""

from datetime import datetime
from typing import Any

import httpx
import typer
from rich.table import Table

from cli.common import JSON_OPTION, console, print_json, store
from integrations.http import http_client

app = typer.Typer(
    help="TikTok: connect a business account, subscribe to its webhooks, see their state.",
    no_args_is_help=True,
)


def _http() -> httpx.Client:
    return http_client(timeout=httpx.Timeout(15.0, connect=5.0))


@app.command("connect")
def connect_command(
    campaign: str | None = typer.Option(
        None, "--campaign", help="The campaign whose account this is (default: every campaign)."
    ),
    creator: str | None = typer.Option(
        None, "--creator", help="A creator on --campaign who authorizes their own account."
    ),
    region: str | None = typer.Option(
        None,
        "--region",
        help="Where the account is registered (US, GB, ...): TikTok offers no DMs to "
        "accounts in the EEA, Switzerland or the UK.",
    ),
    code: str | None = typer.Option(
        None, "--code", help="The code TikTok sent back (asked for when not given)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Print the address where the account's owner authorizes Rally, take the code TikTok sends
    back, and keep the account's tokens (sealed with RALLY_SECRET_KEY)."""
    from store.types import utcnow
    from tasks.engagement.accounts import authorization, code_from, connect

    settings, engine = store()
    url, state = authorization(settings)
    if code is None:
        console.print(
            "Open this address signed in as the TikTok business account and authorize Rally:\n"
        )
        console.print(url, markup=False, soft_wrap=True)
        answer = code_from(
            typer.prompt("\nThen paste the address TikTok sent you to (or just its code)"), state
        )
    else:  # from an authorization made before this run: its state is not known here
        answer = code_from(code, None)
    with _http() as http:
        done = connect(
            engine,
            settings,
            http,
            answer,
            now=utcnow(),
            actor=settings.actor,
            campaign=campaign,
            creator=creator,
            region=region,
        )
    if json_output:
        print_json(vars(done))
        return
    whose = f"@{done.creator}'s on {done.campaign}" if done.creator else done.campaign
    console.print(
        f"Connected TikTok business account {done.business_id} "
        f"({'for ' + whose if whose else 'for every campaign'}). Access token valid until "
        f"{_at(done.access_expires_at)} (refreshed as needed), refresh token until "
        f"{_at(done.refresh_expires_at)}.",
        markup=False,
    )
    if done.missing_scopes:
        console.print(
            f"Not granted: {', '.join(done.missing_scopes)}: what needs them will fail; "
            "connect again and allow them.",
            markup=False,
        )


@app.command("subscribe")
def subscribe_command(json_output: bool = JSON_OPTION) -> None:
    """Have TikTok send comment and direct-message webhooks to RALLY_PUBLIC_URL/webhooks/tiktok."""
    from tasks.engagement.accounts import subscribe

    settings, _ = store()
    with _http() as http:
        done = subscribe(settings, http)
    if json_output:
        print_json([vars(s) for s in done])
        return
    for subscription in done:
        console.print(
            f"{subscription.event_type}: webhooks go to {subscription.callback_url}", markup=False
        )


@app.command("status")
def status_command(json_output: bool = JSON_OPTION) -> None:
    """The connected accounts (whose, when their tokens expire, what they were granted) and
    where TikTok sends each kind of webhook."""
    from store.types import utcnow
    from tasks.engagement.accounts import status

    settings, engine = store()
    with _http() as http:
        report = status(engine, settings, http, now=utcnow())
    if json_output:
        print_json(vars(report))
        return
    if not report.accounts:
        console.print("No TikTok account connected: run `rally tiktok connect`.")
    else:
        table = Table("account", "for", "region", "access token", "refresh token", "DMs", "missing")
        for a in report.accounts:
            whose = f"@{a['creator']} on {a['campaign']}" if a["creator"] else a["campaign"]
            table.add_row(
                a["business_id"],
                whose or "every campaign",
                a["region"] or "-",
                _expiry(a["access_expires_at"], a["access_expired"], "refreshed when used"),
                _expiry(a["refresh_expires_at"], a["refresh_expired"], "connect again"),
                "yes" if a["dms"] else "no (EEA, CH, UK)",
                ", ".join(a["missing_scopes"]) or "-",
            )
        console.print(table)
    for kind, found in report.subscriptions.items():
        console.print(f"{kind} webhooks: {_subscription(found)}", markup=False)


def _subscription(found: dict[str, Any]) -> str:
    if "error" in found:
        return f"unknown ({found['error']})"
    if not found["callback_url"]:
        return "not registered: run `rally tiktok subscribe`"
    if not found["ours"]:
        return f"go to {found['callback_url']}, not here: run `rally tiktok subscribe`"
    return f"registered, to {found['callback_url']}"


def _expiry(at: datetime, expired: bool, then: str) -> str:
    return f"expired {_at(at)} ({then})" if expired else f"until {_at(at)}"


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"

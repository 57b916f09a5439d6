"""`rally webhooks`: where a campaign's events are posted (n8n, Zapier, a data team's endpoint)."""

from datetime import datetime
from typing import Any

import typer

from cli.common import JSON_OPTION, console, id_argument, print_json, store
from store.db import transaction
from store.types import utcnow

app = typer.Typer(
    help="Outgoing webhooks: add a subscription, list, test, replay, enable, remove.",
    no_args_is_help=True,
)


@app.command("add")
def add_command(
    campaign: str = typer.Argument(..., help="The campaign whose events it takes (slug)."),
    url: str = typer.Argument(..., help="The receiver: https, or http to this machine only."),
    event_types: list[str] = typer.Option(
        [], "--event", help="An event type it takes (repeat); none given: every type."
    ),
    description: str = typer.Option("", "--description", help="What it is for."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Subscribe a URL to a campaign's events. Its signing secret is printed once."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.engagement.accounts import sealer
    from tasks.webhooks.subscriptions import add_subscription, check_event_types

    settings, engine = store()
    with transaction(engine) as session:
        made = add_subscription(
            session,
            get_campaign(session, campaign),
            url=url,
            event_types=check_event_types(event_types),
            description=description,
            sealer=sealer(settings),
            actor=settings.actor,
            now=utcnow(),
        )
        shown: dict[str, Any] = {
            "id": made.subscription.id,
            "campaign": campaign,
            "url": made.subscription.url,
            "event_types": made.subscription.event_types,
            "secret": made.secret,
        }
    if json_output:
        print_json(shown)
        return
    console.print(
        f"Webhook subscription {shown['id']}: {campaign}'s "
        f"{', '.join(shown['event_types'])} to {shown['url']}.",
        markup=False,
    )
    console.print(
        "Its signing secret, shown this once (the receiver verifies deliveries with it, per "
        "the Standard Webhooks specification):",
        markup=False,
    )
    print(made.secret)


@app.command("list")
def list_command(
    campaign: str | None = typer.Option(None, "--campaign", help="One campaign's only."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Subscriptions: URL, event types, state, and deliveries waiting or given up on."""
    from tasks.campaigns.campaign import get_campaign
    from tasks.webhooks.subscriptions import shown, subscriptions_of

    _, engine = store()
    with transaction(engine, write=False) as session:
        campaign_id = get_campaign(session, campaign).id if campaign else None
        rows: list[dict[str, Any]] = [
            shown(s, slug, counts)
            | {"state": state_of(s.disabled_reason, s.failing_since, s.retry_at)}
            for s, slug, counts in subscriptions_of(session, campaign_id)
        ]
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print("No webhook subscriptions (`rally webhooks add SLUG URL` makes one).")
        return
    from rich.table import Column, Table

    url = Column("url", overflow="fold")  # a receiver's address is no use cut short
    table = Table("id", "campaign", url, "events", "state", "waiting", "given up", box=None)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["campaign"],
            r["url"],
            str(len(r["event_types"])),
            r["state"],
            str(r["waiting"]),
            str(r["given_up"]),
        )
    console.print(table)
    for r in rows:
        if r["last_error"]:
            console.print(f"  {r['id']}: last error: {r['last_error']}", markup=False)


def state_of(
    disabled: str | None, failing_since: datetime | None, retry_at: datetime | None
) -> str:
    if disabled:
        return f"disabled: {disabled}"
    if failing_since is not None and retry_at is not None:
        return f"failing since {failing_since:%Y-%m-%d %H:%M}, next try {retry_at:%H:%M:%S} UTC"
    return "enabled"


@app.command("test")
def test_command(
    subscription_id: int = id_argument("The subscription's id (`webhooks list`)."),
) -> None:
    """Queue a `webhook.test` delivery, posted with the next delivery run."""
    from tasks.webhooks.subscriptions import send_test

    settings, engine = store()
    with transaction(engine) as session:
        payload = send_test(session, subscription_id, actor=settings.actor, now=utcnow())
    console.print(
        f"Test delivery {payload['id']} queued for subscription {subscription_id}; "
        "`rally serve` posts it within a minute.",
        markup=False,
    )


@app.command("replay")
def replay_command(
    subscription_id: int = id_argument("The subscription's id (`webhooks list`)."),
    since: datetime | None = typer.Option(
        None, "--since", help="Also send again what was delivered since then (UTC)."
    ),
) -> None:
    """Queue again the deliveries given up on, and with --since the ones delivered since then,
    each with its first webhook-id."""
    from datetime import UTC

    from tasks.webhooks.subscriptions import replay

    settings, engine = store()
    when = since.replace(tzinfo=since.tzinfo or UTC) if since else None
    with transaction(engine) as session:
        queued = replay(session, subscription_id, since=when, actor=settings.actor, now=utcnow())
    console.print(
        f"Subscription {subscription_id}: {queued['dead']} given up on and "
        f"{queued['delivered']} delivered queued again.",
        markup=False,
    )


@app.command("enable")
def enable_command(
    subscription_id: int = id_argument("The subscription's id (`webhooks list`)."),
) -> None:
    """Start a disabled subscription again; what waited for it goes out, oldest first."""
    from tasks.webhooks.subscriptions import enable_subscription

    settings, engine = store()
    with transaction(engine) as session:
        found = enable_subscription(session, subscription_id, actor=settings.actor, now=utcnow())
        url = found.url
    console.print(f"Subscription {subscription_id} to {url} enabled.", markup=False)


@app.command("remove")
def remove_command(
    subscription_id: int = id_argument("The subscription's id (`webhooks list`)."),
) -> None:
    """Stop a subscription for good; what waited for it is withdrawn."""
    from tasks.webhooks.subscriptions import remove_subscription

    settings, engine = store()
    with transaction(engine) as session:
        found = remove_subscription(session, subscription_id, actor=settings.actor, now=utcnow())
        url = found.url
    console.print(f"Subscription {subscription_id} to {url} removed.", markup=False)

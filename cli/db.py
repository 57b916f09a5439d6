"""`rally db`: the store's schema."""

import typer

from cli.common import JSON_OPTION, console, print_json
from config.settings import get_settings, prefect_choice
from store.db import current_revision, engine_for, head_revision, masked, upgrade

app = typer.Typer(help="The store's schema: status and upgrades.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command() -> None:
    """Apply pending migrations to the store (an empty store is created)."""
    done = upgrade(engine_for(get_settings().store_url))
    if done.before == done.after:
        console.print(f"Store {done.url} is up to date (revision {done.after}).")
    else:
        console.print(
            f"Store {done.url} upgraded from {done.before or 'empty'} to revision {done.after}."
        )


@app.command("status")
def status(json_output: bool = JSON_OPTION) -> None:
    """Show where the store is, whether its schema is current, and which Prefect runs flows."""
    url = get_settings().store_url
    revision, head = current_revision(engine_for(url)), head_revision()
    prefect = prefect_choice()
    info = {
        "url": masked(url),
        "revision": revision,
        "head": head,
        "current": revision == head,
        "prefect_api_url": prefect.api_url,
        "prefect_configured_by": prefect.source,
    }
    if json_output:
        print_json(info)
        return
    state = (
        "current"
        if revision == head
        else ("empty" if revision is None else f"behind ({head} available)")
    )
    console.print(f"Store {info['url']}: revision {revision or '-'}, {state}.")
    if prefect.api_url:
        console.print(f"Prefect API {masked_api(prefect.api_url)} ({prefect.source}).")
    else:
        where = prefect.source or f"home {get_settings().prefect_home}"
        console.print(f"Prefect: a temporary local server per process ({where}).")


def masked_api(url: str) -> str:
    """A Prefect API URL without any credentials in it."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=host).geturl()

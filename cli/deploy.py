"""`rally deploy`: every flow as a Prefect deployment on the configured Prefect API."""

import os

import typer

from cli.common import JSON_OPTION, console, print_json
from config.errors import RallyError
from config.settings import prefect_choice


def deploy_command(
    pool: str = typer.Option("rally", "--pool", help="The process work pool to run them on."),
    paused: bool = typer.Option(
        False, "--paused", help="Register the recurring schedules paused (resume them in the UI)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Register every flow as a deployment (schedules for the recurring ones) with the Prefect
    server or Cloud workspace configured here, and say how to start workers."""
    choice = prefect_choice()
    if choice.api_url is None:
        raise RallyError(
            "no Prefect API is configured, so there is nothing to deploy to: point Rally at a "
            "server (`prefect config set PREFECT_API_URL=http://HOST:4200/api`, or set "
            "PREFECT_API_URL) or at Cloud (`prefect cloud login`); `rally serve` runs the same "
            "flows on one machine without one"
        )
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.deployments import deploy_all

    try:
        registered = deploy_all(pool=pool, paused=paused)
    except Exception as exc:  # Prefect's client errors name the URL and the reason
        import httpx

        if isinstance(exc, httpx.TransportError):
            raise RallyError(f"cannot reach Prefect at {choice.api_url}: {exc}") from exc
        if type(exc).__module__.startswith(("httpx", "prefect")):
            raise RallyError(f"Prefect at {choice.api_url} refused the deployments: {exc}") from exc
        raise
    if json_output:
        print_json(
            {"api_url": choice.api_url, "pool": pool, "deployments": [vars(r) for r in registered]}
        )
        return
    console.print(
        f"Deployed to {choice.api_url} ({choice.source}), work pool {pool!r}:", markup=False
    )
    for r in registered:
        console.print(f"  {r.name:<40} {r.schedule}", markup=False)
    console.print(
        "\nStart a worker on each machine that runs flows (Rally installed, the store's "
        f"RALLY_DATABASE_URL in its environment):\n  prefect worker start --pool {pool}\n"
        "Start a run from the Prefect UI (Deployments, Run) or here:\n"
        "  prefect deployment run 'sprint/sprint' --param slug=<campaign> --param simulate=true",
        markup=False,
    )

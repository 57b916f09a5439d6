"""The staff console's buttons that start work: a rehearsal of the sprint, the briefs, a lead
sync, a report, a payout run. Where Rally's deployments are registered on a Prefect API, each
starts a deployment run (and the page links to it in the Prefect UI); otherwise the same
`rally` command runs in a process of its own, so the page answers at once and the web
server's interpreter never carries the work. Its output goes to a file under RALLY_HOME/runs,
which the run's page shows. Runs are kept in the store (`tasks.staff.runs`), so every web
process and machine lists them.
"""

import os
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from config.errors import RallyError
from config.settings import Settings, prefect_choice
from store.db import transaction
from store.models import StaffRun
from tasks.staff.runs import HERE

ROOT = Path(__file__).resolve().parents[1]


class NotDeployed(RallyError):
    """A run that may only start as a deployment run cannot: what is missing."""


@dataclass(frozen=True)
class Action:
    """A button: what it says, its deployment and parameters, and the `rally` command that does
    the same here."""

    title: str
    deployment: str  # flow-name/deployment-name, as `prefect deployment run` takes it
    parameters: dict[str, Any]
    command: list[str]


def actions(slug: str, *, weeks: int = 0, by: str | None = None) -> dict[str, Action]:
    """The work staff may start for campaign `slug`, by the name its button posts; `by`, who
    starts it, is named by the payouts' ledger postings."""
    rehearse_weeks = ["--weeks", str(weeks)] if weeks else []
    return {
        "rehearsal": Action(
            "Rehearse the sprint",
            "sprint/sprint",
            {"slug": slug, "simulate": True, **({"weeks": weeks} if weeks else {})},
            ["sprint", "start", slug, "--simulate", *rehearse_weeks],
        ),
        "briefs": Action(
            "Generate the briefs",
            "generate-briefs/generate-briefs",
            {"slug": slug},
            ["briefs", "generate", slug],
        ),
        "sync": Action(
            "Sync the leads",
            "sync-leads/sync-leads",
            {"campaign": slug},
            ["leads", "sync", "--campaign", slug],
        ),
        "report": Action("Make the report", "report/report", {"slug": slug}, ["report", slug]),
        "payouts": Action(
            "Pay approved amounts",
            "pay-creators/pay-creators",
            {"slug": slug, **({"by": by} if by else {})},
            ["payments", "payout", slug],
        ),
    }


def start(
    engine: Engine,
    action: Action,
    *,
    campaign_id: int,
    slug: str,
    by: str,
    now: datetime,
    settings: Settings,
    here: bool = True,
) -> StaffRun:
    """Start `action` as a deployment run if Rally's deployments are registered, else as a
    process here (unless not `here`: then `NotDeployed` says what is missing), with `by` as the
    actor its audit entries name; kept in the store either way."""
    run = StaffRun(
        id=secrets.token_hex(8),
        campaign_id=campaign_id,
        action=action.deployment,
        title=action.title,
        started_by=by,
        started_at=now,
        command=["rally", *action.command],
        host=HERE,
    )
    api_url = prefect_choice().api_url
    if not here and not api_url:
        raise NotDeployed(
            "no Prefect API is configured (PREFECT_API_URL): runs started this way are "
            "deployment runs, on the Prefect server where `rally deploy` registered them"
        )
    try:
        deployed = _deployment_run(action, api_url) if api_url else None
    except (httpx.HTTPError, OSError) as exc:
        if here:
            raise
        raise NotDeployed(f"the Prefect API at {api_url} did not answer ({exc})") from exc
    if deployed is None and not here:
        raise NotDeployed(
            f"the deployment {action.deployment} is not registered on the Prefect API at "
            f"{api_url} (`rally deploy` registers Rally's deployments)"
        )
    if deployed is not None:
        run.flow_run_id, run.link = deployed
        _save(engine, run)
        return run
    folder = settings.home / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{now:%Y%m%d-%H%M%S}-{slug}-{run.id}.log"
    run.log_path = str(log)
    _save(engine, run)  # before the process starts: it records its end on this row
    run.pid = _process(run.id, action, by, log)
    _save(engine, run)
    return run


def _save(engine: Engine, run: StaffRun) -> None:
    with transaction(engine) as session:
        session.merge(run)


def _deployment_run(action: Action, api_url: str) -> tuple[str, str] | None:
    """(flow run id, its page in the Prefect UI) on the Prefect API configured (as `rally
    deploy` found it), or None when the deployment is not registered there."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        try:
            flow_run = run_deployment(
                action.deployment, parameters=action.parameters, timeout=0, as_subflow=False
            )
        except ObjectNotFound:
            return None
        ui = PREFECT_UI_URL.value() or api_url.removesuffix("/api")
    assert isinstance(flow_run, FlowRun)
    return str(flow_run.id), f"{str(ui).rstrip('/')}/runs/flow-run/{flow_run.id}"


def _process(run_id: str, action: Action, by: str, log: Path) -> int:
    """`rally` with the action's arguments in a process of its own (`cli.staff_run`, which
    records how it ended), its output in `log`; its id. A thread here waits for it, so it
    leaves no zombie behind."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "RALLY_ACTOR": by, "PYTHONPATH": path}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.staff_run", run_id, *action.command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    threading.Thread(target=process.wait, name=f"run-{run_id}", daemon=True).start()
    return process.pid

"""The staff console's buttons that start work: a rehearsal of the sprint, the briefs, a lead
sync, a report. Where Rally's deployments are registered on a Prefect API, each starts a
deployment run (and the page links to it in the Prefect UI); otherwise the same `rally`
command runs in a process of its own, so the page answers at once and the web server's
interpreter never carries the work. Its output goes to a file under RALLY_HOME/runs, which the
run's page shows.
"""

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from config.settings import Settings, prefect_choice

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_SHOWN = 6000  # characters of a run's output shown on its page (its end)
KEPT_RUNS = 200  # runs this process remembers


@dataclass(frozen=True)
class Action:
    """A button: what it says, its deployment and parameters, and the `rally` command that does
    the same here."""

    title: str
    deployment: str  # flow-name/deployment-name, as `prefect deployment run` takes it
    parameters: dict[str, Any]
    command: list[str]


def actions(slug: str, *, weeks: int = 0) -> dict[str, Action]:
    """The work staff may start for campaign `slug`, by the name its button posts."""
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
    }


@dataclass
class Run:
    """One start of an action: as a deployment run (`flow_run`, `link`) or here (`process`)."""

    id: str
    slug: str
    title: str
    by: str
    started_at: datetime
    command: list[str] = field(default_factory=list)
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    flow_run: str | None = None
    link: str | None = None

    @property
    def state(self) -> str:
        """ "running", "finished", "failed", or "started" (a deployment run: see Prefect)."""
        if self.process is None:
            return "started"
        code = self.process.poll()
        return "running" if code is None else ("finished" if code == 0 else "failed")

    def output(self) -> str:
        """The end of what the command printed so far."""
        if self.log is None or not self.log.exists():
            return ""
        with self.log.open("rb") as file:
            file.seek(max(file.seek(0, os.SEEK_END) - OUTPUT_SHOWN, 0))
            return file.read().decode("utf-8", errors="replace")


RUNS: dict[str, Run] = {}


def start(action: Action, *, slug: str, by: str, now: datetime, settings: Settings) -> Run:
    """Start `action` as a deployment run if Rally's deployments are registered, else as a
    process here, with `by` as the actor its audit entries name."""
    run = Run(secrets.token_hex(8), slug, action.title, by, now)
    api_url = prefect_choice().api_url
    deployed = _deployment_run(action, api_url) if api_url else None
    if deployed is not None:
        run.flow_run, run.link = deployed
    else:
        _process(run, action, settings)
    while len(RUNS) >= KEPT_RUNS:
        RUNS.pop(next(iter(RUNS)))
    RUNS[run.id] = run
    return run


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


def _process(run: Run, action: Action, settings: Settings) -> None:
    """The `rally` command in a process of its own, its output in RALLY_HOME/runs."""
    folder = settings.home / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    run.log = folder / f"{run.started_at:%Y%m%d-%H%M%S}-{run.slug}-{run.id}.log"
    run.command = ["rally", *action.command]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "RALLY_ACTOR": run.by, "PYTHONPATH": path}
    with run.log.open("wb") as out:
        run.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *action.command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

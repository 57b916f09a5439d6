"""Rally on Prefect for real: a Prefect server, `rally deploy`, a process work pool and two
workers on one PostgreSQL store; runs started through Prefect's API, as the UI starts them."""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from store.db import engine_for, transaction
from tests.conftest import ROOT, SLUG
from tests.e2e.conftest import _free_port
from tests.helpers import make_leads

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["postgresql"], indirect=True),
]
BIN = Path(sys.executable).parent
WEEKS = 2


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Prefect or Rally setting, plus `extra`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RALLY_"))}
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    quiet = {
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
    }
    return {**kept, **quiet, "PYTHONPATH": path, **extra}


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server of its own (`prefect server start`), its API URL."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    server = Process(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        clean_env(PREFECT_HOME=str(home)),
        home / "server.log",
        home,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"the Prefect server did not start:\n{server.output()}")
        time.sleep(0.5)
    yield api
    server.stop()


def run_deployment(api: str, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Start a run of deployment `name` as the UI's run form does; its final flow run."""
    deployment = httpx.get(f"{api}/deployments/name/{name}", timeout=10).raise_for_status().json()
    run = (
        httpx.post(
            f"{api}/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": parameters},
            timeout=10,
        )
        .raise_for_status()
        .json()
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()
        if state["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state
        time.sleep(0.5)
    pytest.fail(f"the run of {name} did not finish in 10 minutes")


def test_a_rehearsal_through_deployments_and_two_workers_matches_the_embedded_one(
    rally, applied, settings, engine, postgres_server, prefect_api, tmp_path
) -> None:
    # Staff register the flows with the server; the recurring schedules stay off here, so
    # that only the runs this test starts touch the store.
    shown = subprocess.run(
        [str(BIN / "rally"), "deploy", "--paused"],
        env=clean_env(PREFECT_API_URL=prefect_api, RALLY_HOME=str(tmp_path / "staff")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"Deployed to {prefect_api}" in shown.stdout
    assert "sprint/sprint" in shown.stdout and "prefect worker start --pool rally" in shown.stdout
    deployments = httpx.post(f"{prefect_api}/deployments/filter", json={}, timeout=10).json()
    by_name = {d["name"]: d for d in deployments}
    assert by_name["deliver"]["schedules"][0]["schedule"]["interval"] == 60
    form = by_name["sprint"]["parameter_openapi_schema"]["properties"]
    assert form["seed"]["description"].startswith("The rehearsal's seed")
    assert not {"at", "now"} & set(form)  # the rehearsal's clock is not for the run form

    # Two workers on other "machines": their own folders, the same store and exports folder.
    shared = tmp_path / "shared-home"
    workers = [
        Process(
            [str(BIN / "prefect"), "worker", "start", "--pool", "rally", "--name", f"w{i}"],
            clean_env(
                PREFECT_API_URL=prefect_api,
                PREFECT_HOME=str(tmp_path / f"worker{i}"),
                PREFECT_WORKER_QUERY_SECONDS="1",
                RALLY_DATABASE_URL=settings.store_url,
                RALLY_HOME=str(shared),
            ),
            tmp_path / f"worker{i}.log",
            tmp_path,
        )
        for i in (1, 2)
    ]
    try:
        parameters = {"slug": SLUG, "simulate": True, "seed": 7, "weeks": WEEKS}
        run = run_deployment(prefect_api, "sprint/sprint", parameters)
        logs = "\n".join(w.output() for w in workers)
        assert run["state_type"] == "COMPLETED", logs

        # The same rehearsal, embedded (in-process, local Prefect), on a store of its own.
        embedded = postgres_server()
        env = clean_env(RALLY_DATABASE_URL=embedded, RALLY_HOME=str(tmp_path / "embedded"))
        env["PREFECT_HOME"] = os.environ["PREFECT_HOME"]  # the suite's, already migrated
        for args in (
            ["campaign", "apply", str(applied / "campaign.yaml")],
            ["sprint", "start", SLUG, "--simulate", "--seed", "7", "--weeks", str(WEEKS)],
        ):
            done = subprocess.run(
                [str(BIN / "rally"), *args], env=env, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, done.stderr
        assert _counts(engine) == _counts(engine_for(embedded))

        # A recurring deployment started by hand does its work: leads out to the export.
        make_leads(engine, SLUG, 25, prefix="deployed")
        run = run_deployment(prefect_api, "sync-leads/sync-leads", {})
        assert run["state_type"] == "COMPLETED", "\n".join(w.output() for w in workers)
        with (shared / "exports" / SLUG / "export.csv").open(newline="") as file:
            emails = [row["email"] for row in csv.DictReader(file)]
        assert sum(e.startswith("deployed") for e in emails) == 25
        assert len(emails) == len(set(emails))
    finally:
        for worker in workers:
            worker.stop()


def _counts(engine) -> dict[str, Any]:
    from tasks.sprint.state import summary

    with transaction(engine, write=False) as session:
        return json.loads(json.dumps(summary(session, SLUG), default=str))


def test_a_prefect_profile_is_used_when_rally_has_no_prefect_setting(tmp_path: Path) -> None:
    """`prefect config set PREFECT_API_URL=...` as a user types it, then Rally's flows."""
    user_home = tmp_path / "user"
    env = clean_env(HOME=str(user_home), RALLY_HOME=str(tmp_path / "rally"))
    api = "http://prefect.example.internal:4200/api"
    configured = subprocess.run(
        [str(BIN / "prefect"), "config", "set", f"PREFECT_API_URL={api}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert configured.returncode == 0, configured.stderr
    code = (
        "import flows\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().api.url)"
    )
    used = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert used.stdout.strip() == api, used.stderr
    assert not (tmp_path / "rally" / "prefect").exists()
    status = subprocess.run(
        [str(BIN / "rally"), "db", "status"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert status.returncode == 0, status.stderr
    assert f"Prefect API {api} (profile 'ephemeral'" in status.stdout
    shutil.rmtree(user_home / ".prefect")
    status = subprocess.run(
        [str(BIN / "rally"), "db", "status"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert "a temporary local server per process" in status.stdout

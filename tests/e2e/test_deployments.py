"""Rally on Prefect for real: a Prefect server, `rally deploy`, a process work pool and two
workers on one PostgreSQL store; runs started through Prefect's API, as the UI starts them, and
from the staff console."""

import csv
import email
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col

from cli.serve import TIMERS_NICENESS
from config.settings import get_settings
from store.db import engine_for, transaction
from tests.conftest import ROOT, SLUG
from tests.e2e.conftest import Server, _free_port
from tests.e2e.pages import assert_page_fits
from tests.e2e.test_staff_console import STAFF
from tests.helpers import make_leads

# on one parallel worker: the module's one Prefect server and deployments serve them all
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("prefect-server")]
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
def prefect_api(
    tmp_path_factory: pytest.TempPathFactory, migrated_prefect: Callable[[Path], Path]
) -> Iterator[str]:
    """A Prefect server of its own (`prefect server start`), its API URL."""
    home = migrated_prefect(tmp_path_factory.mktemp("prefect-server"))
    port = _free_port()
    server = Process(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        # Its database is a copy of the session's, where Prefect's block types are registered.
        clean_env(PREFECT_HOME=str(home), PREFECT_API_BLOCKS_REGISTER_ON_START="false"),
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


def prefect_call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One call to the Prefect server, tried again after a 503 or 429 as Prefect's own client
    does (its SQLite database answers "busy" with 503 on a loaded machine)."""
    for attempt in range(6):
        answer = httpx.request(method, url, timeout=10, **kwargs)
        if answer.status_code not in (429, 503) or attempt == 5:
            return answer.raise_for_status()
        time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def run_deployment(api: str, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Start a run of deployment `name` as the UI's run form does; its final flow run."""
    deployment = prefect_call("GET", f"{api}/deployments/name/{name}").json()
    run = prefect_call(
        "POST",
        f"{api}/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": parameters},
    ).json()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = prefect_call("GET", f"{api}/flow_runs/{run['id']}").json()
        if state["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state
        time.sleep(0.5)
    pytest.fail(f"the run of {name} did not finish in 10 minutes")


def deploy_paused(prefect_api: str, folder: Path, home: str) -> "subprocess.CompletedProcess[str]":
    """`rally deploy --paused` against the server at `prefect_api`, as staff run it from
    `folder` with a Rally home of their own (`home`, inside it)."""
    return subprocess.run(
        [str(BIN / "rally"), "deploy", "--paused"],
        env=clean_env(PREFECT_API_URL=prefect_api, RALLY_HOME=str(folder / home)),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def deployed(
    prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> "subprocess.CompletedProcess[str]":
    """Staff register the flows with the module's server once, for every test here; the
    recurring schedules stay off, so that only the runs a test starts touch its store."""
    shown = deploy_paused(prefect_api, tmp_path_factory.mktemp("deployer"), "staff")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return shown


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_rehearsal_through_deployments_and_two_workers_matches_the_embedded_one(
    rally, applied, settings, engine, postgres_server, prefect_api, deployed, tmp_path
) -> None:
    shown = deployed
    assert f"Deployed to {prefect_api}" in shown.stdout
    assert "sprint/sprint" in shown.stdout and "prefect worker start --pool rally" in shown.stdout
    listed = subprocess.run(  # Prefect's own client against a server run from Rally's pins
        [str(BIN / "prefect"), "deployment", "ls"],
        env=clean_env(PREFECT_API_URL=prefect_api, PREFECT_HOME=str(tmp_path / "cli")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0 and "sprint/sprint" in listed.stdout, listed.stderr
    deployments = prefect_call("POST", f"{prefect_api}/deployments/filter", json={}).json()
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

        # The same rehearsal, embedded (in-process, the suite's local Prefect), on a store of
        # its own.
        embedded = postgres_server()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RALLY_DATABASE_URL", embedded)
            patch.setenv("RALLY_HOME", str(tmp_path / "embedded"))
            get_settings.cache_clear()
            for args in (
                ["campaign", "apply", str(applied / "campaign.yaml")],
                ["sprint", "start", SLUG, "--simulate", "--seed", "7", "--weeks", str(WEEKS)],
            ):
                done = rally(*args)
                assert done.code == 0, done.err
        get_settings.cache_clear()
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


class Inbox:
    """An SMTP server's handler that keeps the Message-ID of everything it accepts."""

    def __init__(self) -> None:
        self.message_ids: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content)
        self.message_ids.append(str(message["Message-ID"]))
        return "250 OK"


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_serves_on_one_store_close_each_week_and_send_each_message_once(
    rally, example, settings, engine, prefect_api, tmp_path
) -> None:
    """Two full `rally serve`s (pages and timers) on one store, as two machines would run them,
    sharing the exports folder; their flow runs report to one Prefect server."""
    from aiosmtpd.controller import Controller
    from sqlmodel import func, select

    from store.audit import verify
    from store.models import AuditEvent, OutboxMessage, SprintRun
    from tests.helpers import generate

    campaign = example / "campaign.yaml"
    today = datetime.now(UTC).date()  # the sprint's weeks end on Mondays in UTC
    three_weeks_ago = today - timedelta(days=today.weekday() + 21)
    campaign.write_text(
        campaign.read_text().replace("start: 2027-02-01", f"start: {three_weeks_ago}")
    )
    assert rally("campaign", "apply", campaign).code == 0
    assert rally("sprint", "start", SLUG).code == 0
    assert generate(settings, engine, SLUG, send=True).queued == 50
    make_leads(engine, SLUG, 40, prefix="served")

    inbox = Inbox()
    port = _free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    shared = tmp_path / "shared-home"
    env = clean_env(
        PREFECT_API_URL=prefect_api,
        RALLY_DATABASE_URL=settings.store_url,
        RALLY_HOME=str(shared),
        RALLY_SMTP_HOST="127.0.0.1",
        RALLY_SMTP_PORT=str(port),
        RALLY_SMTP_SECURITY="none",
    )
    serves = [
        Process(
            [str(BIN / "rally"), "serve", "--port", str(_free_port()), "--every", "1"],
            env,
            tmp_path / f"serve{i}.log",
            tmp_path,
        )
        for i in (1, 2)
    ]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with transaction(engine, write=False) as session:
                waiting = session.exec(
                    select(func.count()).where(OutboxMessage.status != "sent")
                ).one()
                weeks = session.exec(select(SprintRun.weeks_done)).one()
            if not waiting and weeks == 3:
                break
            assert all(s.process.poll() is None for s in serves), serves[0].output()
            time.sleep(0.5)
        else:
            pytest.fail(
                f"{waiting} message(s) unsent, {weeks} week(s) closed:\n"
                + "\n".join(s.output()[-3000:] for s in serves)
            )
        for serve in serves:  # the pages come first: the timers yield the CPU to them
            web = serve.process.pid
            [timers] = Path(f"/proc/{web}/task/{web}/children").read_text().split()
            assert niceness(int(timers)) == niceness(web) + TIMERS_NICENESS
    finally:
        for serve in serves:
            serve.stop()
        smtp.stop()
    assert all("Rally serving on" in s.output() for s in serves)
    assert len(inbox.message_ids) == len(set(inbox.message_ids))
    with transaction(engine, write=False) as session:
        emailed = dict(
            session.exec(
                select(OutboxMessage.subject_type, func.count())
                .where(OutboxMessage.channel == "email")
                .group_by(col(OutboxMessage.subject_type))
            ).all()
        )
    # The briefs, and the sprint calendar's go-ahead request, prompts and weekly digests.
    assert emailed["brief"] == 50 and emailed["sprint"] >= 2 * 3
    assert sum(emailed.values()) == len(inbox.message_ids)
    with (shared / "exports" / SLUG / "export.csv").open(newline="") as file:
        emails = [row["email"] for row in csv.DictReader(file)]
    assert sorted(emails) == sorted(f"served{i}@example.org" for i in range(40))
    with transaction(engine, write=False) as session:
        closes = session.exec(
            select(AuditEvent.summary).where(col(AuditEvent.action).startswith("milestone."))
        ).all()
        assert verify(session).ok
    assert closes and len(closes) == len(set(closes))  # no milestone judged twice


def _wait_for_state(api: str, run_id: str, wanted: set[str], workers: list[Process]) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run = prefect_call("GET", f"{api}/flow_runs/{run_id}").json()
        if run["state_type"] in wanted:
            return run
        assert run["state_type"] not in ("FAILED", "CRASHED"), "\n".join(
            w.output() for w in workers
        )
        time.sleep(0.5)
    pytest.fail(f"run {run_id} never reached {wanted}:\n" + "\n".join(w.output() for w in workers))


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_the_briefs_wait_for_a_go_ahead_staff_give_by_resuming_a_run_in_the_prefect_ui(
    rally, running, settings, engine, prefect_api, deployed, tmp_path
) -> None:
    from sqlmodel import func, select

    from store.models import AuditEvent, OutboxMessage, SprintStep

    assert rally("sprint", "start", SLUG).code == 0  # the campaign starts this Monday
    worker = Process(
        [str(BIN / "prefect"), "worker", "start", "--pool", "rally", "--name", "go-ahead"],
        clean_env(
            PREFECT_API_URL=prefect_api,
            PREFECT_HOME=str(tmp_path / "worker"),
            PREFECT_WORKER_QUERY_SECONDS="1",
            RALLY_DATABASE_URL=settings.store_url,
            RALLY_HOME=str(tmp_path / "worker-home"),
        ),
        tmp_path / "worker.log",
        tmp_path,
    )
    try:
        # The calendar's pass makes the briefs and starts a go-ahead run, which suspends.
        first = run_deployment(prefect_api, "sprint-calendar/sprint-calendar", {})
        assert first["state_type"] == "COMPLETED", worker.output()
        with transaction(engine, write=False) as session:
            step = session.exec(select(SprintStep).where(SprintStep.key == "briefs")).one()
        assert step.status == "waiting" and step.go_ahead_at is None
        run_id = step.outcome["go_ahead_run"]
        waiting = _wait_for_state(prefect_api, run_id, {"PAUSED"}, [worker])
        assert waiting["state_name"] == "Suspended"
        assert waiting["name"] == f"{SLUG}: go-ahead for briefs"
        form = waiting["state"]["state_details"]["run_input_keyset"]["schema"]
        deadline = time.monotonic() + 60  # the run stores its form just after it suspends
        stored = f"{prefect_api}/flow_runs/{run_id}/input/{form}"
        while httpx.get(stored, timeout=10).status_code != 200:  # a 503 when busy: asked again
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.2)

        # Staff resume it in the UI with the form's answers (a form without a name is refused);
        # the rerun records the go-ahead.
        nameless = prefect_call(  # refused as 200 with REJECT in the body
            "POST", f"{prefect_api}/flow_runs/{run_id}/resume", json={"run_input": {"note": "ok"}}
        )
        assert nameless.json()["status"] == "REJECT" and "by" in nameless.text
        resumed = prefect_call(
            "POST",
            f"{prefect_api}/flow_runs/{run_id}/resume",
            json={"run_input": {"by": "dana.okafor@keystoneyouthvote.example.org", "note": "ok"}},
        )
        assert resumed.is_success and resumed.json()["status"] == "ACCEPT", resumed.text
        _wait_for_state(prefect_api, run_id, {"COMPLETED"}, [worker])
        with transaction(engine, write=False) as session:
            step = session.exec(select(SprintStep).where(SprintStep.key == "briefs")).one()
            assert step.go_ahead_by == "dana.okafor@keystoneyouthvote.example.org (Prefect UI)"
            assert session.exec(
                select(AuditEvent).where(AuditEvent.action == "sprint.go_ahead")
            ).one()

        # The next pass sends the briefs, once.
        second = run_deployment(prefect_api, "sprint-calendar/sprint-calendar", {})
        assert second["state_type"] == "COMPLETED", worker.output()
        with transaction(engine, write=False) as session:
            briefs = session.exec(
                select(func.count()).where(OutboxMessage.subject_type == "brief")
            ).one()
            step = session.exec(select(SprintStep).where(SprintStep.key == "briefs")).one()
        assert briefs == 50 and step.status == "done"
    finally:
        worker.stop()


# --- the staff console where deployments exist (here, to share this module's Prefect server) ---


@pytest.fixture
def prefect_configured(prefect_api: str, deployed, monkeypatch: pytest.MonkeyPatch) -> str:
    """Rally's deployments registered on a Prefect server of its own, whose API the web server
    started next is pointed at (as `rally serve --web-only` beside workers runs)."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    return prefect_api


@pytest.mark.serve_process
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_where_deployments_exist_the_console_starts_a_deployment_run(
    prefect_configured: str, server: Server, rally, applied, tabs
):
    printed = rally("staff", "link", STAFF, "--print")
    tab = tabs()
    page = tab.page
    page.goto(printed.out.strip().splitlines()[-1])
    with page.expect_navigation():
        page.click("#sign-in")
    page.goto(f"{server.url}/staff/campaigns/{SLUG}")
    with page.expect_navigation(timeout=60_000):  # the first run loads Prefect's client
        page.get_by_role("button", name="Make the report").click()
    assert "Started as a Prefect flow run" in page.inner_text("#state"), server.output()
    link = page.get_by_role("link", name="Follow it in the Prefect UI").get_attribute("href")
    assert link is not None
    ui = prefect_configured.removesuffix("/api")
    assert link.startswith(f"{ui}/runs/flow-run/")
    run = prefect_call("GET", f"{prefect_configured}/flow_runs/{link.rsplit('/', 1)[1]}").json()
    deployment = prefect_call("GET", f"{prefect_configured}/deployments/{run['deployment_id']}")
    assert deployment.json()["name"] == "report" and run["parameters"] == {"slug": SLUG}
    assert_page_fits(page, "staff-run-deployed")


def test_prefect_yaml_deploys_what_rally_deploy_does() -> None:
    """`prefect deploy --all` from the checkout and `rally deploy` register the same things."""
    import yaml

    from flows.deployments import DEPLOYMENTS, POOL

    listed = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert [(d["name"], d["entrypoint"]) for d in listed] == [
        (d.name, d.entrypoint) for d in DEPLOYMENTS
    ]
    for entry, deployment in zip(listed, DEPLOYMENTS, strict=True):
        assert entry["work_pool"]["name"] == POOL
        intervals = [s["interval"] for s in entry.get("schedules", [])]
        assert intervals == ([deployment.seconds] if deployment.seconds else [])
        assert ("concurrency_limit" in entry) == bool(deployment.seconds)


def test_every_flow_loads_by_its_file_path_too() -> None:
    """What `prefect deploy flows/x.py:f` does: Prefect puts flows/ first on sys.path, where no
    module may shadow one of Rally's packages."""
    from flows.deployments import DEPLOYMENTS

    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert not packages & {p.stem for p in (ROOT / "flows").glob("*.py")}
    entrypoints = [
        f"{d.entrypoint.split(':')[0].replace('.', '/')}.py:{d.entrypoint.split(':')[1]}"
        for d in DEPLOYMENTS
    ]
    code = (
        "import sys\nfrom prefect.flows import load_flow_from_entrypoint\n"
        "for e in sys.argv[1:]:\n    print(load_flow_from_entrypoint(e, False).name)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code, *entrypoints],
        env=clean_env(PREFECT_HOME=os.environ["PREFECT_HOME"]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert len(loaded.stdout.split()) == len(DEPLOYMENTS)


def test_a_worker_takes_secrets_from_prefect_secret_blocks(prefect_api, tmp_path) -> None:
    """A worker whose environment holds no credentials reads them from Secret blocks; a
    variable in the environment still wins."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = clean_env(
        PREFECT_API_URL=prefect_api,
        PREFECT_HOME=str(tmp_path / "prefect"),
        RALLY_HOME=str(tmp_path / "home"),
    )
    names = ("rally-smtp-password", "rally-hubspot-token")
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        for name, value in zip(names, ("from-the-block", "hub-token"), strict=True):
            # Prefect's sync call, which a running event loop (Playwright's) would make async
            Secret(value=value).save(name, overwrite=True, _sync=True)  # type: ignore[call-arg]
    read = (  # as a flow run on a worker starts: Prefect's engine, then Rally's flows
        "import prefect.engine, flows\n"
        "from config.settings import get_settings\n"
        "from integrations.hubspot import HubSpotSettings\n"
        "s = get_settings()\n"
        "hub = s.section(HubSpotSettings).token\n"
        "print(s.smtp_password.get_secret_value(), hub.get_secret_value())\n"
    )
    try:
        shown = subprocess.run(
            [sys.executable, "-c", read], env=env, capture_output=True, text=True
        )
        assert shown.stdout.split() == ["from-the-block", "hub-token"], shown.stderr
        shown = subprocess.run(
            [sys.executable, "-c", read],
            env=env | {"RALLY_SMTP_PASSWORD": "from-the-environment"},
            capture_output=True,
            text=True,
        )
        assert shown.stdout.split() == ["from-the-environment", "hub-token"], shown.stderr
    finally:  # the server is shared with this module's other tests
        with (
            temporary_settings(updates={PREFECT_API_URL: prefect_api}),
            get_client(sync_client=True) as client,
        ):
            for name in names:
                client.delete_block_document(client.read_block_document_by_name(name, "secret").id)


def test_a_serve_that_cannot_listen_stops_before_its_timers_run_anything(tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home = tmp_path / "home"
        result = subprocess.run(
            [str(BIN / "rally"), "serve", "--port", str(port)],
            env=clean_env(RALLY_HOME=str(home)),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not (home / "prefect").exists()  # no flow ran: Prefect never started

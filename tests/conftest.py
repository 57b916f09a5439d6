"""Fixtures: a fresh store per test on SQLite and on PostgreSQL, and a way to run `rally`.

PostgreSQL tests use the server at RALLY_TEST_DATABASE_URL (default: 127.0.0.1:5432, user
postgres) and a throwaway database per test session. When no server answers they are skipped,
unless RALLY_REQUIRE_POSTGRES=1 (as in CI), which turns the skip into a failure.

Each test's store is laid from one prepared earlier in the session, empty or with the example
applied (`tests.stores`), rather than migrated or applied again.
"""

import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from config.settings import Settings, get_settings
from store.db import engine_for, open_store, upgrade
from tests.fakes.s3_api import FakeS3
from tests.processes import ROOT, RallyProcess, fork_server
from tests.stores import PreparedStores, database_name, drop_leftovers

EXAMPLE = ROOT / "examples" / "youth-vote"

# Flows run in-process against one local Prefect home for the whole session (its first start
# migrates a database for about 30 s; later sessions on this checkout reuse it), quietly. Each
# of the suite's parallel workers (pytest-xdist: gw0, gw1, ...) has a home and server of its own.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
HOME = "rally-prefect" + (f"-{WORKER}" if WORKER else "")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".pytest_cache" / HOME))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Every httpx client the tests make, and the first of Rally's in each process the tests start
# (Rally's share one context a process), loads a whole bundle of certificates (SSL_CERT_FILE's,
# else certifi's), 20-50 ms of CPU, hundreds of times a run; a folder of them
# (SSL_CERT_DIR) is read only when a certificate is checked. The tests talk plain HTTP on
# loopback only, so they take the system's folder.
if Path("/etc/ssl/certs").is_dir():
    os.environ.pop("SSL_CERT_FILE", None)
    os.environ["SSL_CERT_DIR"] = "/etc/ssl/certs"


# `make test` runs the tests not marked `slow`; `make test-slow` runs those, and CI both. A test
# outside `slow` that starts a process (a `rally` run, a server, a browser, the local Prefect
# server a flow run starts) fails, so `make test` stays the quick half: see README, Testing.
# Processes a library starts to look something up (ctypes finding a shared library, as
# WeasyPrint's import does; `platform` asking `uname`) are let through. Not seen: the spawn
# and forkserver start methods of multiprocessing, and uvloop's processes (no audit event).
_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system"}
)
_LOOKUPS = frozenset({"ctypes.util", "platform"})
_quick_test: list[str] = []  # the node id of the running test that is not marked slow, if any
_refused: list[str] = []  # what the running test was refused, even where its code caught it


def _refuse_processes(event: str, args: tuple[Any, ...]) -> None:
    if not _quick_test or event not in _PROCESS_EVENTS:
        return
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") in _LOOKUPS:
            return
        frame = frame.f_back  # type: ignore[assignment]
    what = " ".join(map(str, args[1]))[:120] if event == "subprocess.Popen" else event
    thread = threading.current_thread().name
    _refused.append(
        f"{_quick_test[0]} starts a process ({what}, in thread {thread}); mark it "
        "@pytest.mark.slow (make test leaves those tests to make test-slow)"
    )
    raise RuntimeError(_refused[-1])


sys.addaudithook(_refuse_processes)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Set up, run and tear down a test not marked slow with processes refused."""
    if item.get_closest_marker("slow") is None:
        _quick_test.append(item.nodeid)
    try:
        yield
    finally:
        _quick_test.clear()
        _refused.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """A quick test that was refused a process fails, even where its code caught the error."""
    outcome = yield
    report = outcome.get_result()
    if _refused and report.passed:
        report.outcome = "failed"
        report.longrepr = "\n".join(_refused)
        _refused.clear()


def _server_url() -> str:
    return Settings().test_database_url.get_secret_value()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Callable[[], str] | None]:
    """A maker of throwaway PostgreSQL databases (dropped at the end); None if no server.

    Databases that a killed session left behind are dropped first (`tests.stores`)."""
    server = make_url(_server_url()).set(drivername="postgresql")
    try:
        admin = psycopg.connect(
            server.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError as exc:
        if os.environ.get("RALLY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but not reachable at {server}: {exc}")
        yield None
        return
    drop_leftovers(admin)
    made: list[str] = []

    def make() -> str:
        name = database_name(uuid.uuid4().hex[:8])
        admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        url = server.set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    yield make
    for name in made:
        engine_for(
            server.set(drivername="postgresql+psycopg", database=name).render_as_string(
                hide_password=False
            )
        ).dispose()
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: Callable[[], str] | None) -> str | None:
    """A PostgreSQL database for this session, migrated to head; None if no server."""
    if postgres_server is None:
        return None
    url = postgres_server()
    upgrade(engine_for(url))
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: Callable[[], str] | None
) -> str:
    """The URL of a store never used: no tables at all."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty' / 'rally.db'}"
    if postgres_server is None:
        pytest.skip("no PostgreSQL server at RALLY_TEST_DATABASE_URL")
    return postgres_server()


@pytest.fixture(scope="session")
def prepared(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str | None
) -> Iterator[PreparedStores]:
    """Stores made once and copied into each test's (`tests.stores`): faster than migrating,
    or applying the example, each time."""
    folder = tmp_path_factory.mktemp("prepared")
    empty = folder / "empty.db"
    engine = engine_for(f"sqlite:///{empty}")
    upgrade(engine)
    engine.dispose()
    stores = PreparedStores(folder, empty, postgres_url)
    yield stores
    stores.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, prepared: PreparedStores
) -> Iterator[str]:
    """The URL of an empty, migrated store: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store' / 'rally.db'}"
        prepared.lay_empty(url)
        yield url
        engine_for(url).dispose()
        return
    if prepared.postgres_url is None:
        pytest.skip("no PostgreSQL server at RALLY_TEST_DATABASE_URL")
    prepared.lay_empty(prepared.postgres_url)
    yield prepared.postgres_url


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store_url: str) -> Iterator[Settings]:
    """Settings for one test: its own RALLY_HOME and store, nothing read from the user's .env."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RALLY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RALLY_DATABASE_URL", store_url)
    monkeypatch.setenv("RALLY_ACTOR", "staff:test")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


SECRET_KEY = "a-test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[Settings]:
    """`settings` with a `RALLY_SECRET_KEY`, which sealed secrets (webhooks, TikTok) need."""
    monkeypatch.setenv("RALLY_SECRET_KEY", SECRET_KEY)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return open_store(settings)


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def rally(settings: Settings, capsys: pytest.CaptureFixture[str]):
    """Run the `rally` CLI in-process, as a user would type it; returns code, stdout, stderr."""
    from cli.main import main

    def run(*args: str) -> Run:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of the example campaign folder that a test may edit."""
    target = tmp_path / "example"
    shutil.copytree(EXAMPLE, target)
    return target


SLUG = "first-vote-pa-2027"


def apply_prepared(rally, settings: Settings, prepared: PreparedStores, folder: Path) -> None:
    """`rally campaign apply` of `folder`'s campaign, or the copy of a store it left before."""

    def apply() -> None:
        run = rally("campaign", "apply", folder / "campaign.yaml")
        assert run.code == 0, run.err

    prepared.apply(settings.store_url, folder, apply)


@pytest.fixture
def applied(rally, settings: Settings, prepared: PreparedStores, example: Path) -> Path:
    """The example campaign (50 creators) applied to this test's store; its folder."""
    apply_prepared(rally, settings, prepared, example)
    return example


@pytest.fixture
def running(rally, settings: Settings, prepared: PreparedStores, example: Path) -> Path:
    """The example campaign moved to start this week, so its links are live whatever today's
    date: for tests of what creators do with real time (opening and acknowledging briefs)."""
    from tests.helpers import start_this_week

    start_this_week(example)
    apply_prepared(rally, settings, prepared, example)
    return example


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeS3]:
    """Uploaded videos kept in a local S3-compatible bucket (`RALLY_S3_*` point at it); ask
    for it before `settings` or `server`, so both see it."""
    with FakeS3() as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        yield fake
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def local_prefect() -> str:
    """The API URL of the session's local Prefect server: the one the flows run in this process
    report to, started here if none has been yet (migrating the session's Prefect home the
    first time). Processes a test starts may report to it rather than start one each."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's own client starts and reuses
    server.start()
    return server.api_url


@pytest.fixture(scope="session")
def migrated_prefect(
    local_prefect: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Path], Path]:
    """Lays a migrated Prefect database into a Prefect home (made if need be); the home.

    A fresh home's first server start migrates its database, 10 to 30 CPU-seconds; tests that
    need a Prefect home of their own start from a copy of the session's instead."""
    import sqlite3

    snapshot = tmp_path_factory.mktemp("prefect") / "prefect.db"
    source, copy = sqlite3.connect(Path(os.environ["PREFECT_HOME"]) / "prefect.db"), None
    try:
        copy = sqlite3.connect(snapshot)
        source.backup(copy)  # consistent while the server writes
    finally:
        source.close()
        if copy is not None:
            copy.close()

    def lay(home: Path) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(snapshot, home / "prefect.db")
        return home

    return lay


@pytest.fixture(scope="session")
def rally_fork_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ForkServerContext, Path]]:
    """The fork server `forked_rally`'s runs come from, and a folder for their output."""
    base = tmp_path_factory.mktemp("rally-processes")
    with fork_server(base / "fork-server.log") as server:
        yield server, base


@pytest.fixture
def forked_rally(
    rally_fork_server: tuple[ForkServerContext, Path],
) -> Iterator[Callable[[list[str], Mapping[str, str]], RallyProcess]]:
    """`rally` commands in processes forked from one that has Rally loaded, for tests that
    start one many times (`tests.processes`): `forked_rally(args, env)`. A run the test left
    running is killed when it ends (the fork server waits for every run before it stops)."""
    server, base = rally_fork_server
    started: list[RallyProcess] = []

    def start(args: list[str], env: Mapping[str, str]) -> RallyProcess:
        started.append(RallyProcess(server, base, args, env))
        return started[-1]

    yield start
    for run in started:
        run.kill()


_workers_cpu: list[tuple[float, float]] = []  # (CPU seconds, Prefect's) of each finished worker
_deselected = [0]  # slow tests left out here, then as each parallel worker counted them


def pytest_deselected(items: list[pytest.Item]) -> None:
    _deselected[0] += sum(1 for item in items if item.get_closest_marker("slow"))


def _cpu_spent(*, children: bool) -> float:
    """CPU seconds of this process, and of every process it waited for when `children`."""
    import resource

    who = [resource.RUSAGE_SELF] + ([resource.RUSAGE_CHILDREN] if children else [])
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, who))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """A parallel worker hands its CPU time (its own, the processes it waited for, its local
    Prefect server's) to the session that started it, for the summary."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["rally_cpu"] = (_cpu_spent(children=True), _local_prefect_cpu())
        output["rally_deselected"] = _deselected[0]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """A parallel worker finished: keep the CPU time it reported, and how many it left out."""
    output = getattr(node, "workeroutput", {})
    if "rally_cpu" in output:
        _workers_cpu.append(tuple(output["rally_cpu"]))
    _deselected.append(output.get("rally_deselected", 0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The session's CPU time, pytest and every process it waited for (servers, browsers,
    `rally` runs), and the session's local Prefect server, which is still running then: what
    the suite costs a shared machine, which its wall time hides. With parallel workers, each
    worker's figure (reported as it finished) and the starting process's own time."""
    if _workers_cpu:
        spent = _cpu_spent(children=False) + sum(cpu for cpu, _ in _workers_cpu)
        prefect = sum(server for _, server in _workers_cpu)
        where = f", {len(_workers_cpu)} workers"
    else:
        spent, prefect, where = _cpu_spent(children=True), _local_prefect_cpu(), ""
    terminalreporter.write_line(
        f"CPU time: {spent + prefect:.0f} s ({(spent + prefect) / 60:.1f} CPU-minutes{where}), "
        f"the local Prefect servers' {prefect:.0f} s included"
    )
    left = max(_deselected)
    if left and terminalreporter.config.option.markexpr == "not slow":
        terminalreporter.write_line(
            f"{left} tests marked slow were left out: `make test-slow` runs them (CI runs both)"
        )


def _local_prefect_cpu() -> float:
    """CPU seconds of the local Prefect server this process started, if any (stopped only
    as the process exits, so not yet among the processes waited for)."""
    import sys

    if "prefect.server.api.server" not in sys.modules:
        return 0.0
    from prefect.server.api.server import SubprocessASGIServer

    process = SubprocessASGIServer().server_process
    if process is None:
        return 0.0
    try:  # utime, stime, and those of the processes it waited for
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")

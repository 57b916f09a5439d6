"""What the browser tests share: Debian's chromium through Playwright (one browser for the
session, a fresh profile per test), and Rally's web app on this test's store: served from this
process (uvicorn on a thread, as `rally serve --web-only` serves it), or, for tests marked
`serve_process` (about the server itself: several of them, faults, the runs it starts),
`rally serve --web-only` in its own process.

Without chromium these tests are skipped, unless RALLY_REQUIRE_BROWSER=1 (as in CI), which
turns the skip into a failure.
"""

import contextlib
import itertools
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config.settings import get_settings
from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# --- the browser and the server ---------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM}: apt-get install chromium"
        if os.environ.get("RALLY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"a browser is required (RALLY_REQUIRE_BROWSER=1) but {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Server:
    """`rally serve` in its own process; `ready()` waits until it answers."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url, self.process, self.log = url, process, log
        self.up = False

    def ready(self) -> str:
        deadline = time.monotonic() + 30
        while not self.up:
            if self.process.poll() is not None:
                pytest.fail(f"rally serve exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"rally serve did not answer /healthz in 30 s:\n{self.output()}")
            with contextlib.suppress(httpx.TransportError):
                self.up = httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200
            if not self.up:
                time.sleep(0.05)
        return self.url

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class ServedHere(Server):
    """Rally's web app served by uvicorn on a thread of this process: a process start (two
    CPU-seconds of imports) saved where the server's process is not what a test is about."""

    def __init__(self, url: str, log: Path) -> None:
        import uvicorn

        from cli.serve import listening_socket
        from web.app import create_app

        port = int(url.rsplit(":", 1)[1])
        self.sock = listening_socket("127.0.0.1", port)
        self.uvicorn = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning"))
        self.thread = threading.Thread(
            target=self.uvicorn.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.url, self.log, self.up = url, log, False
        self.thread.start()

    def ready(self) -> str:
        deadline = time.monotonic() + 30
        while not self.uvicorn.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the web app did not start serving")
            time.sleep(0.01)
        self.up = True
        return self.url

    def output(self) -> str:
        return ""  # its lines go to this process's output, which pytest shows on a failure

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "serve_process: the test's server is `rally serve` in its own process"
    )


def _ports() -> Iterator[int]:
    """Ports for servers that another process binds a moment later: below the ephemeral range,
    from which `bind(0)` and every outgoing connection (the other workers' too) take theirs, in
    a block of this test worker's own; once the block is used, or where the range leaves no
    room for it, any free one."""
    try:
        lowest = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lowest = 0
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    first = 20_000 + 1_000 * worker
    block = list(range(first, first + 1_000)) if first + 1_000 <= lowest else []
    start = random.randrange(len(block)) if block else 0  # another session on this machine
    for port in itertools.chain(block[start:], block[:start], itertools.repeat(0)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use (or waiting out its last connection): the next
                if port:
                    continue
                raise
            free = int(sock.getsockname()[1])
        yield free


_port = _ports()


def _free_port() -> int:
    return next(_port)


def start_server(folder: Path, port: int) -> Server:
    """`rally serve --web-only` on `port` and the store the environment names, started in
    `folder` without waiting for it (`Server.ready` waits)."""
    url = f"http://127.0.0.1:{port}"
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    log = folder / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--web-only"],
            cwd=folder,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Server(url, process, log)


def stop_server(server: Server) -> None:
    if isinstance(server, ServedHere):
        server.stop()
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def server(
    request: pytest.FixtureRequest, settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Server]:
    """Rally's web app on a free port and this test's store (`rally serve --web-only` in its
    own process for tests marked `serve_process`); briefs made afterwards link to it.

    A process starts without waiting (it takes a second or two to import): tests ask for it
    before the campaign, which is applied meanwhile, and opening a tab waits until it answers.
    """
    port = _free_port()
    monkeypatch.setenv("RALLY_PUBLIC_URL", f"http://127.0.0.1:{port}")
    get_settings.cache_clear()
    if request.node.get_closest_marker("serve_process"):
        started = start_server(tmp_path, port)
    else:
        started = ServedHere(f"http://127.0.0.1:{port}", tmp_path / f"serve-{port}.log")
    yield started
    stop_server(started)


@pytest.fixture
def second_server(server: Server, tmp_path: Path) -> Iterator[Server]:
    """Another `rally serve --web-only` on the same store, as a second machine would run."""
    started = start_server(tmp_path, _free_port())
    yield started
    stop_server(started)


class Tab:
    """A browser tab that records every dialog (alert, confirm) a page tried to open, and its
    console."""

    def __init__(self, context) -> None:
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.console: list[str] = []  # what pages wrote to the console (CSP refusals among it)
        self.page.on("console", lambda message: self.console.append(message.text))

        def seen(dialog) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        self.page.on("dialog", seen)


@pytest.fixture
def tabs(browser, server: Server):
    """A fresh browser profile; calling it opens a new tab, once the server answers."""
    context = browser.new_context()
    context.set_default_timeout(10_000)

    def open_tab() -> Tab:
        server.ready()
        return Tab(context)

    yield open_tab
    context.close()

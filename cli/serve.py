"""`rally serve`: the web pages and, unless `--web-only`, the recurring flows on a local timer."""

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import typer

from cli.common import console, store
from config.errors import RallyError

TIMERS_NICENESS = 5  # how far the timers' process yields the CPU to the web's
NAMED_LISTS = (("errors",), ("failed",), ("taken_down",))  # lists of words a summary names


def summary(result: Any) -> str:
    """What a flow run did, in a few words: the non-zero counts of its result, by name."""
    parts: list[str] = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, (*path, str(key)))
        elif isinstance(value, bool):
            return
        elif isinstance(value, int) and value:
            parts.append(f"{' '.join(path)} {value}")
        elif isinstance(value, list) and value and all(type(v) is int for v in value):
            parts.append(f"{' '.join(path)} {', '.join(map(str, value))}")
        elif isinstance(value, list) and value and path[-1:] in NAMED_LISTS:
            parts.append(f"{' '.join(path)}: {'; '.join(map(str, value[:3]))}")
        elif isinstance(value, str) and path[-1:] == ("stopped",):
            parts.append(f"{' '.join(path)}: {value}")

    walk(result, ())
    return ", ".join(parts)


def run_job(name: str) -> None:
    """One run of a recurring flow, as a Prefect flow run when it has work (`tasks.due`); a
    failure is said and the timer goes on (the next run picks up whatever is still due)."""
    from flows.deployments import DEPLOYMENTS
    from flows.sprint import without_heartbeats
    from tasks.due import has_work

    deployment = next(d for d in DEPLOYMENTS if d.name == name)
    try:
        _, engine = store()
        if not has_work(name, engine, datetime.now(UTC)):
            return
        with without_heartbeats():
            said = summary(deployment.load()())
    except Exception as exc:  # said, and tried again at the next tick
        said = f"failed: {type(exc).__name__}: {exc}"
    if said:
        console.print(f"{datetime.now(UTC):%H:%M:%S} {name}: {said}", markup=False)


def start_timers(scheduler: Any, every: int) -> None:
    """Run the first recurring flow alone (it starts Prefect's temporary local server when no
    Prefect is configured, which the others would otherwise race to start), then schedule
    every recurring flow, due at once to catch up on what came due while stopped."""
    from flows.deployments import RECURRING

    run_job(RECURRING[-1].name)
    for deployment in RECURRING:
        scheduler.add_job(
            run_job,
            "interval",
            args=[deployment.name],
            id=deployment.name,
            seconds=every if deployment.every_minute else deployment.seconds,
            next_run_time=datetime.now(UTC),
        )


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything else starts: a port in use stops `serve`
    before its timers run anything."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RallyError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def public_url_warnings(public_url: str, host: str, port: int) -> list[str]:
    """What is wrong with the address Rally puts in every link (briefs, sign-in, tracking)
    for a server listening on `host:port`: empty, not a web address, or pointing elsewhere."""
    from urllib.parse import urlsplit

    if not public_url:
        return ["RALLY_PUBLIC_URL is empty: links in emails and pages would lead nowhere"]
    try:
        parts = urlsplit(public_url)
        linked_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        parts, linked_port = None, 0
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"RALLY_PUBLIC_URL {public_url!r} is not a web address (http://... or https://...)"]
    if parts.hostname not in LOOPBACK:
        return []  # a public name: a proxy in front may well use another port
    if linked_port != port:
        return [
            f"links use {public_url}, but this server listens on port {port}: set "
            "RALLY_PUBLIC_URL to the address people reach it at"
        ]
    if host not in LOOPBACK:
        return [
            f"links use {public_url}, which only this machine can open: set RALLY_PUBLIC_URL "
            "to the address creators and approvers reach this server at"
        ]
    return []


def serve_command(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    every: int = typer.Option(
        60, "--every", min=1, help="Seconds between runs of the every-minute flows."
    ),
    web_only: bool = typer.Option(
        False,
        "--web-only",
        help="Serve the pages only: Prefect deployments and workers run the flows.",
    ),
    timers_only: bool = typer.Option(False, "--timers-only", hidden=True),
) -> None:
    """Serve the web pages and run the recurring flows on a local timer: delivery, the
    follow-up rules, review deadlines and lead sync every minute, brief reminders, TikTok
    polling and the sprints' calendar every five, the retention purge daily. The timers run in
    a process of their own, so pages and webhooks never wait behind them."""
    if timers_only:
        return run_timers(every)
    import uvicorn

    from web.app import create_app

    settings, _ = store()
    for warning in public_url_warnings(settings.public_url, host, port):
        console.print(f"warning: {warning}", markup=False, style="yellow")
    sock = listening_socket(host, port)
    web = create_app(settings)
    timers = None if web_only else TimerProcess(every)
    mode = "pages only" if web_only else "pages and recurring flows"
    console.print(
        f"Rally serving on http://{host}:{port} ({mode}; links use {settings.public_url})"
    )
    # Everything loaded so far lives as long as the process: keep the collector from walking
    # it again and again (full collections otherwise pause every request for tens of ms).
    gc.collect()
    gc.freeze()
    server = uvicorn.Server(uvicorn.Config(web, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        if timers is not None:
            timers.stop()
        sock.close()


class TimerProcess:
    """The recurring flows' timers in a process of their own (its lines go to this one's
    output), so a flow's work never takes the web's interpreter from a page or a webhook;
    started again if it dies, so delivery and the rules never stop while the pages go on."""

    def __init__(self, every: int) -> None:
        self.command = [sys.executable, "-m", "cli.main", "serve", "--timers-only"]
        self.command += ["--every", str(every)]
        self.stopping = threading.Event()
        self.process = subprocess.Popen(self.command)
        self.watch = threading.Thread(target=self._watch, name="timers-watch", daemon=True)
        self.watch.start()

    def _watch(self) -> None:
        while not self.stopping.is_set():
            code = self.process.wait()
            if self.stopping.wait(1):
                return
            console.print(f"the timers' process ended ({code}): starting it again", markup=False)
            self.process = subprocess.Popen(self.command)

    def stop(self) -> None:
        self.stopping.set()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)  # a flow under way finishes first
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_timers(every: int) -> None:
    """Run the timers until the `rally serve` that started this process is gone."""
    parent = os.getppid()
    # The pages come first: when the machine is busy, the flows wait for a free core rather
    # than the people on the pages and TikTok's webhooks.
    os.nice(TIMERS_NICENESS)
    # Stopped like any process (SIGTERM), it exits as Python does, so Prefect's temporary
    # server, if a flow started one, is stopped with it rather than left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    scheduler = _timers(every)
    scheduler.start()
    try:
        while os.getppid() == parent:
            time.sleep(1)  # a serve killed outright leaves no one to stop its timers
    finally:
        scheduler.shutdown(wait=False)


def _timers(every: int) -> Any:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    from flows.deployments import RECURRING

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # A thread per flow, so a long sync never holds up delivery; a run that could not start
    # on time (all threads busy) still runs once rather than waiting for its next interval.
    scheduler = BackgroundScheduler(
        timezone="UTC",
        executors={"default": ThreadPoolExecutor(max_workers=len(RECURRING))},
        job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
    )
    scheduler.add_job(start_timers, args=[scheduler, every], id="start")
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # not "skipped: still running"
    return scheduler

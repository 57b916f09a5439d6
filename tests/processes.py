"""`rally` commands in processes of their own, forked from one that has Rally loaded.

A test that kills a command at random points starts it many times, and a new interpreter
spends most of a CPU-second importing Rally before the command does anything. Forked from a
server process that imported it once (multiprocessing's fork server, one per test process), a
run starts in a few milliseconds. Each is still a process of its own, with its own connections
and environment, killed by SIGKILL as any other; its output goes to files the test reads back.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import chdir, contextmanager, suppress
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# What the forked commands import, loaded once by the fork server.
PRELOAD = ["tests.processes", "cli.main", "tasks.leads.sync", "tasks.payments.payouts"]


@contextmanager
def fork_server(log: Path) -> Iterator[ForkServerContext]:
    """The fork server's context, its server started now, from the project's folder (it
    imports the preloaded modules from the folder it starts in: a test's folder could shadow
    them) with its output in `log`. On the way out it is stopped and waited for, so that the
    CPU time of the runs it forked counts among this process's children, as a run started
    with `subprocess` does; runs still alive then must have been killed first, since the
    server waits for them."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with chdir(ROOT), open(log, "ab") as output:
        sys.stdout.flush()
        sys.stderr.flush()
        kept = [os.dup(1), os.dup(2)]
        try:
            os.dup2(output.fileno(), 1)
            os.dup2(output.fileno(), 2)
            forkserver.ensure_running()
        finally:
            for fd, saved in zip((1, 2), kept, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
    try:
        yield context
    finally:
        stop = getattr(forkserver._forkserver, "_stop", None)  # CPython's, for its own tests
        if stop is not None:
            stop()


class RallyProcess:
    """`rally <args>` forked from `server`, with exactly `env` as its environment and the
    project's folder as its own, its output kept in a folder under `base`; as much of
    `subprocess.Popen` as the tests use."""

    def __init__(
        self, server: ForkServerContext, base: Path, args: list[str], env: Mapping[str, str]
    ) -> None:
        folder = Path(tempfile.mkdtemp(dir=base))
        self._out, self._err = folder / "stdout", folder / "stderr"
        self._process: Any = server.Process(
            target=_run, args=(args, dict(env), str(self._out), str(self._err)), daemon=True
        )
        self._process.start()

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, sig: signal.Signals) -> None:
        if self._process.exitcode is None:
            with suppress(ProcessLookupError):  # it ended just now
                os.kill(self._process.pid, sig)

    def wait(self, timeout: float) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(f"rally process {self._process.pid}", timeout)
        return int(self._process.exitcode)

    def communicate(self, timeout: float) -> tuple[str, str]:
        """What it wrote to its output and its errors, once it has ended."""
        self.wait(timeout)
        out, err = (path.read_text() if path.exists() else "" for path in (self._out, self._err))
        return out, err

    def kill(self) -> None:
        """End it now if it is still running (a test that failed left it)."""
        self.send_signal(signal.SIGKILL)
        self._process.join(30)


def store_env(settings: "Settings", **variables: str) -> dict[str, str]:
    """This process's environment, with the test's Rally home and store, and `variables`: what
    a `rally` run started by a test is given."""
    return {
        **os.environ,
        "RALLY_HOME": str(settings.home),
        "RALLY_DATABASE_URL": settings.database_url.get_secret_value(),
        **variables,
    }


def _run(args: list[str], env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: the environment, folder and output the command would have in a
    process of its own, then the command (its exit status is the process's)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    from cli.main import main

    main(args)

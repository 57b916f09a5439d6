"""Work started from the staff console, kept in the store (`StaffRun`) so that every web
process, on any machine, lists it and shows how it stands. A deployment run is followed in
Prefect's UI; a `rally` command run here records its own end (`cli.staff_run`), and one whose
process vanished without doing so is shown as stopped, not running forever.
"""

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from store.models import StaffRun

OUTPUT_SHOWN = 6000  # characters of a run's output shown on its page (its end)
HERE = socket.gethostname()


@dataclass(frozen=True)
class RunView:
    """A run as its page shows it. `state`: "started" (a deployment run: see Prefect),
    "running", "finished", "failed", or "vanished" (its process ended without saying how)."""

    id: str
    title: str
    by: str
    started_at: datetime
    state: str
    command: list[str]
    link: str | None
    host: str
    elsewhere: bool  # `host` is another machine than this one
    log: str | None  # the output file, on `host`
    output: str  # the end of what it printed (so far, when it runs on this machine)


def alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def state_of(run: StaffRun) -> str:
    if run.flow_run_id:
        return "started"
    if run.exit_code is not None:
        return "finished" if run.exit_code == 0 else "failed"
    if run.host == HERE and run.pid is not None and not alive(run.pid):
        return "vanished"
    return "running"


def tail(path: Path) -> str:
    """The end of a run's output file ("" if it is not on this machine)."""
    if not path.is_file():
        return ""
    with path.open("rb") as file:
        file.seek(max(file.seek(0, os.SEEK_END) - OUTPUT_SHOWN, 0))
        return file.read().decode("utf-8", errors="replace")


def view(run: StaffRun) -> RunView:
    state = state_of(run)
    follow_file = run.log_path if run.host == HERE and state == "running" else None
    return RunView(
        id=run.id,
        title=run.title,
        by=run.started_by,
        started_at=run.started_at,
        state=state,
        command=list(run.command),
        link=run.link,
        host=run.host,
        elsewhere=run.host != HERE,
        log=run.log_path,
        output=tail(Path(follow_file)) if follow_file else run.output_tail,
    )


def recent_runs(
    session: Session,
    campaign_id: int,
    *,
    limit: int = 5,
    after: tuple[datetime, str] | None = None,
) -> list[RunView]:
    """The campaign's latest runs, newest first; with `after` (a run's start and id), those
    listed after that run."""
    query = select(StaffRun).where(StaffRun.campaign_id == campaign_id)
    if after is not None:
        started, run_id = after
        query = query.where(
            or_(
                col(StaffRun.started_at) < started,
                and_(col(StaffRun.started_at) == started, col(StaffRun.id) > run_id),
            )
        )
    rows = session.exec(
        query.order_by(col(StaffRun.started_at).desc(), col(StaffRun.id)).limit(limit)
    ).all()
    return [view(run) for run in rows]


def find_run(session: Session, campaign_id: int, run_id: str) -> RunView | None:
    run = session.get(StaffRun, run_id[:32])
    return view(run) if run is not None and run.campaign_id == campaign_id else None


def record_end(session: Session, run_id: str, *, code: int, now: datetime) -> None:
    """How the run's command ended, with the end of its output, for every web process."""
    run = session.get(StaffRun, run_id)
    if run is None:
        return
    run.exit_code, run.finished_at = code, now
    run.output_tail = tail(Path(run.log_path)) if run.log_path else ""
    session.add(run)

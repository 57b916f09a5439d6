"""Measurement and runs: metric snapshots, sprint runs and steps, reports, console runs."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime, optional_time


class MetricSnapshot(SQLModel, table=True):
    """A video's counters at one moment; KPIs and scorecards are computed from these."""

    __tablename__ = "metric_snapshots"
    __table_args__ = (UniqueConstraint("campaign_id", "video_id", "captured_at"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    member_id: int | None = Field(default=None, foreign_key="roster_members.id")
    creative_id: int | None = Field(default=None, foreign_key="creatives.id")
    video_id: str = Field(max_length=64)
    captured_at: datetime = Field(sa_type=UTCDateTime)
    views: int = 0
    reach: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    clicks: int = 0
    signups: int = 0
    full_watch_rate: float | None = None
    average_watch_seconds: float | None = None
    spend_cents: int = 0


class SprintState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # its calendar's steps wait, and are caught up on when it resumes
    STOPPED = "stopped"


class SprintRun(SQLModel, table=True):
    """A campaign's sprint once started: on the real calendar (`live`) or as a rehearsal with
    simulated creators, approvers and audience (`rehearsal`), and the last week it finished."""

    __tablename__ = "sprint_runs"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", unique=True)
    mode: str = Field(max_length=16)
    seed: int | None = None
    sample: float = 1.0  # a rehearsal's share of the audience simulated person by person
    holdout: list[str] = Field(default_factory=list, sa_type=JSON)  # handles held out
    weeks_done: int = 0
    state: str = Field(default=SprintState.RUNNING, max_length=16)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = optional_time()


class SprintStep(SQLModel, table=True):
    """A step of a sprint's calendar (`tasks.sprint.calendar`) that was done, or that waits
    for staff's go-ahead; a step without a row is still to come."""

    __tablename__ = "sprint_steps"

    campaign_id: int = Field(foreign_key="campaigns.id", primary_key=True)
    key: str = Field(max_length=48, primary_key=True)
    due_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(max_length=16)  # waiting or done
    done_at: datetime | None = optional_time()  # when it was done, or began to wait
    outcome: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    go_ahead_by: str | None = None
    go_ahead_at: datetime | None = optional_time()


class Report(SQLModel, table=True):
    """A campaign's report up to a week, as it was made: its numbers (the report as JSON) and
    its page, so staff read it from the store whichever machine made it. A week reported
    again replaces its report."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("campaign_id", "week"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    week: int
    data: dict[str, Any] = Field(sa_type=JSON)
    html: str
    made_at: datetime = Field(sa_type=UTCDateTime)


class StaffRun(SQLModel, table=True):
    """A piece of work staff started from the console: a Prefect deployment run
    (`flow_run_id`, `link`), or a `rally` command in a process on `host` (`pid`), which records
    how it ended (`exit_code`, the end of its output) itself. Every web process sees it."""

    __tablename__ = "staff_runs"

    id: str = Field(primary_key=True, max_length=32)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    action: str = Field(max_length=32)
    title: str = Field(max_length=120)
    started_by: str = Field(max_length=254)
    started_at: datetime = Field(sa_type=UTCDateTime)
    command: list[str] = Field(default_factory=list, sa_type=JSON)
    host: str = Field(default="", max_length=255)
    pid: int | None = None
    log_path: str | None = Field(default=None, max_length=1000)
    flow_run_id: str | None = Field(default=None, max_length=64)
    link: str | None = Field(default=None, max_length=1000)
    finished_at: datetime | None = optional_time()
    exit_code: int | None = None
    output_tail: str = ""

"""Every flow as a Prefect deployment: the recurring ones with their interval, the rest
started by staff (the Prefect UI's run form, `prefect deployment run`, or the API).

`rally serve` runs the recurring flows on a local timer at these intervals (embedded);
`rally deploy` registers these deployments with the configured Prefect API (scaled), and
`prefect.yaml` at the project root lists the same deployments for `prefect deploy` (a test
keeps it in step). Entry points are module paths: a worker imports the installed Rally,
whatever folder it runs in.
"""

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

POOL = "rally"
TAGS = ["rally"]


@dataclass(frozen=True)
class Deployment:
    name: str
    entrypoint: str  # module path
    seconds: int | None = None  # the interval of a recurring flow

    @property
    def every_minute(self) -> bool:
        """Whether `rally serve --every` sets its interval."""
        return self.seconds == 60

    def load(self) -> Any:
        from prefect.flows import load_flow_from_entrypoint

        return load_flow_from_entrypoint(self.entrypoint, use_placeholder_flow=False)


DEPLOYMENTS = (
    # started by staff
    Deployment("sprint", "flows.sprint:run_sprint"),
    Deployment("generate-briefs", "flows.briefing:generate_briefs"),
    Deployment("report", "flows.sprint:report"),
    Deployment("sprint-go-ahead", "flows.sprint:go_ahead"),
    Deployment("pay-creators", "flows.payments:pay_creators"),
    # recurring (sync-leads is also started by hand, for one campaign or destination)
    Deployment("deliver", "flows.delivery:deliver", 60),
    Deployment("follow-up-rules", "flows.engagement:follow_up_rules", 60),
    Deployment("review-deadlines", "flows.review:review_deadlines", 60),
    Deployment("sync-leads", "flows.leads:sync_leads", 60),
    Deployment("brief-reminders", "flows.briefing:brief_reminders", 300),
    Deployment("tiktok-poll", "flows.engagement:tiktok_poll", 300),
    Deployment("sprint-calendar", "flows.sprint:sprint_calendar", 300),
    Deployment("retention-purge", "flows.leads:retention_purge", 86400),
    Deployment("paid-metrics", "flows.amplification:paid_metrics", 86400),
)
RECURRING = tuple(d for d in DEPLOYMENTS if d.seconds)


@dataclass(frozen=True)
class Registered:
    name: str  # flow-name/deployment-name, as `prefect deployment run` takes it
    schedule: str


def deploy_all(*, pool: str = POOL, paused: bool = False) -> list[Registered]:
    """Create the process work pool if missing, then create or update every deployment.
    Recurring deployments run one at a time: a run due while the last is still going is
    cancelled rather than queued behind it. `paused` registers the schedules switched off
    (runs can still be started by hand)."""
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.types.entrypoint import EntrypointType

    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    done = []
    for deployment in DEPLOYMENTS:
        flow = deployment.load()
        runner = flow.to_deployment(
            name=deployment.name,
            schedules=[
                DeploymentScheduleCreate(
                    schedule=IntervalSchedule(interval=timedelta(seconds=deployment.seconds)),
                    active=not paused,
                )
            ]
            if deployment.seconds
            else None,
            tags=TAGS,
            work_pool_name=pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
            concurrency_limit=(
                ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW")
                if deployment.seconds
                else None
            ),
        )
        runner.entrypoint = deployment.entrypoint
        runner.apply()
        every = "by hand"
        if deployment.seconds:
            every = f"every {deployment.seconds} s" + (" (paused)" if paused else "")
        done.append(Registered(f"{flow.name}/{deployment.name}", every))
    return done

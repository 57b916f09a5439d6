"""`review-deadlines`: due review reminders and escalations, in batches.

Submissions are checked and routed when they arrive, and decisions take effect when they are
made; this flow only does what time makes due. The emails it queues go out with `deliver`.
"""

from datetime import datetime

from prefect import flow, task

from config.settings import get_settings
from store.db import open_store
from store.types import clock
from tasks.review.deadlines import sweep_reviews


@task(name="fire-review-timers")
def fire_timers(at: datetime | None = None) -> dict[str, int]:
    settings = get_settings()
    return sweep_reviews(open_store(settings), now=clock(at)(), public_url=settings.public_url)


@flow(name="review-deadlines")
def review_deadlines() -> dict[str, int]:
    """Remind reviewers of tasks nearing their deadline and escalate the overdue ones (legal
    and compliance tiers never approve by timeout: the creative stays blocked)."""
    return fire_timers()

"""`review_sweep`: due review reminders and escalations in batches, then the emails they queued.

Submissions are checked and routed when they arrive, and decisions take effect when they are
made; the sweep only does what time makes due.
"""

from datetime import datetime
from typing import Any

from prefect import flow, task

from config.settings import get_settings
from store.db import open_store
from store.types import clock
from tasks.mail import deliver_email
from tasks.review.deadlines import sweep_reviews


@task(name="fire-review-timers")
def fire_timers(at: datetime | None = None) -> dict[str, int]:
    settings = get_settings()
    return sweep_reviews(open_store(settings), now=clock(at)(), public_url=settings.public_url)


@task(name="deliver-review-email")
def deliver(at: datetime | None = None) -> dict[str, Any]:
    settings = get_settings()
    return vars(deliver_email(open_store(settings), settings, now=clock(at)))


@flow(name="review-sweep")
def review_sweep(at: datetime | None = None) -> dict[str, Any]:
    return {"timers": fire_timers(at), "email": deliver(at)}

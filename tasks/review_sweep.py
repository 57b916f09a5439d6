"""The periodic side of review: due reminders and escalations, in batches of 500 timers."""

from datetime import datetime
from functools import lru_cache

from sqlalchemy import Engine

from config.policy import Policy
from store.db import transaction
from store.models import Campaign, Creative, CreativeDraft, ReviewTask
from tasks.creatives import policy_for
from tasks.review import fire_review_timers


def sweep_reviews(engine: Engine, *, now: datetime, public_url: str = "") -> dict[str, int]:
    """Fire every due review timer; each batch is one transaction."""
    total = {"reminded": 0, "escalated": 0, "closed": 0}
    while True:
        with transaction(engine) as session:

            @lru_cache(maxsize=64)
            def policy_of(campaign_id: int) -> Policy:
                campaign = session.get(Campaign, campaign_id)
                assert campaign is not None
                return policy_for(campaign)

            def policy_for_task(task: ReviewTask) -> Policy:
                draft = session.get(CreativeDraft, task.draft_id)
                creative = session.get(Creative, draft.creative_id) if draft else None
                assert creative is not None
                return policy_of(creative.campaign_id)

            done = fire_review_timers(
                session, now=now, policy_for=policy_for_task, public_url=public_url
            )
        for key, value in done.items():
            total[key] += value
        if sum(done.values()) < 500:
            return total

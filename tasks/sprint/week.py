"""One week of a sprint: its bounds, and what the rehearsal's people do in it."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from store.db import transaction
from tasks.campaigns.campaign import get_campaign
from tasks.campaigns.plan import week_start
from tasks.rehearsal.audience import audience_week
from tasks.rehearsal.people import (
    acknowledge_briefs,
    fix_returned,
    post_approved,
    review_open_tasks,
    spec_of,
    submit_first_drafts,
)

ROUNDS = 3  # times a draft may go back and forth in one week


def week_bounds(start: date, week: int) -> tuple[datetime, datetime]:
    """The week from its first day 00:00 UTC to the next week's."""
    first = datetime.combine(week_start(start, week), datetime.min.time(), UTC)
    return first, first + timedelta(days=7)


def rehearse_week(
    engine: Engine, slug: str, week: int, seed: int, *, public_url: str
) -> dict[str, Any]:
    """Creators acknowledge briefs, submit and fix drafts and post; approvers decide; the
    audience watches, comments, clicks and signs up. Everything lands in the store as it would
    from real people, for the week's flows to process."""
    with transaction(engine, write=False) as session:
        spec = spec_of(get_campaign(session, slug))
    begins, ends = week_bounds(spec.sprint.start, week)
    done: dict[str, Any] = {
        "acknowledged": acknowledge_briefs(engine, slug, week, seed, start=begins)
    }
    if week == spec.brief.draft_due_week:
        done |= submit_first_drafts(engine, slug, seed, start=begins, public_url=public_url)
    reviews: dict[str, int] = {}
    fixed = 0
    for _ in range(ROUNDS):
        for key, n in review_open_tasks(
            engine, slug, seed, until=ends, public_url=public_url
        ).items():
            reviews[key] = reviews.get(key, 0) + n
        again = fix_returned(engine, slug, end=ends, public_url=public_url)
        fixed += again
        if not again:
            break
    done |= {"reviews": reviews, "resubmitted": fixed}
    done["posted"] = post_approved(engine, slug, week, seed, start=begins)
    done |= audience_week(engine, slug, week, seed, start=begins, end=ends)
    return done

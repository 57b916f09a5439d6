"""Processing engagement: new events in batches, each batch one transaction that applies the
rules, records consent changes, writes follow-ups and their outbox rows, and marks the events
processed, so a crash loses nothing and nothing is decided twice (`batch.Batch` decides one).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import select as sa_select
from sqlalchemy import text as sql
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col

from store.db import transaction
from store.models import Campaign, Creator, RosterMember
from tasks.campaigns.campaign import campaign_spec
from tasks.campaigns.configs import campaign_followups
from tasks.engagement.batch import _EVENTS, Batch, ProcessReport
from tasks.engagement.rules import CampaignRules, Event, MemberInfo

PAYLOAD_TEXT = ("conversation_id", "comment_id", "business_id", "handle")  # as Event has them
EVENT_COLUMNS: tuple[Any, ...] = (  # table columns: plain rows, without the ORM's loading
    *(_EVENTS[name] for name in ("id", "source", "external_id", "type", "campaign_id")),
    *(_EVENTS[name] for name in ("member_id", "actor", "video_id", "text", "occurred_at")),
    _EVENTS.payload["contact"],  # only what the rules read, not the whole payload
    *(_EVENTS.payload[name].as_string() for name in PAYLOAD_TEXT),
)

__all__ = ["ProcessReport", "campaign_rules", "process_pending"]
COLLISION_RETRIES = 5


def campaign_rules(session: Session, campaign_id: int, *, public_url: str) -> CampaignRules:
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    query = (
        sa_select(
            col(RosterMember.id),
            col(Creator.handle),
            col(RosterMember.segment),
            col(RosterMember.holdout),
            col(RosterMember.tracking_code),
        )
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(col(RosterMember.campaign_id) == campaign_id)
    )
    members = {
        member_id: MemberInfo(handle, segment, holdout, f"{public_url}/t/{code}")
        for member_id, handle, segment, holdout, code in session.execute(query)
        if member_id is not None
    }
    followups = campaign_followups(session, campaign)
    return CampaignRules(campaign_id, campaign_spec(campaign), followups, members, public_url)


def process_pending(
    engine: Engine, *, now: datetime, public_url: str, batch: int = 2000, limit: int | None = None
) -> ProcessReport:
    """Process every unprocessed event, `batch` at a time, each batch one transaction.

    On PostgreSQL several processors (workers on other machines) share the queue: each batch
    claims its events with SKIP LOCKED and locks the people behind them (`Batch`), so batches
    about different people run side by side and two never decide for one person at once. A
    batch that collides with another on a new person's row is rolled back and taken again.
    """
    report = ProcessReport()
    rules: dict[int, CampaignRules] = {}
    postgres = engine.dialect.name == "postgresql"
    query = (
        sa_select(*EVENT_COLUMNS)
        .where(_EVENTS.processed_at.is_(None))
        .order_by(_EVENTS.id)
        .limit(batch)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True, of=_EVENTS.id.table)
    while limit is None or report.events < limit:
        for attempt in range(1, COLLISION_RETRIES + 1):
            try:
                with transaction(engine, take_turns=False) as session:
                    if postgres:
                        # The waiting index read in order is always the plan; statistics from
                        # before a burst would have PostgreSQL read every waiting event per batch.
                        session.execute(sql("SET LOCAL enable_bitmapscan = off"))
                    events = [Event(*row) for row in session.connection().execute(query)]
                    if not events:
                        return report
                    new = {e.campaign_id for e in events if e.campaign_id} - set(rules)
                    for campaign_id in new:
                        rules[campaign_id] = campaign_rules(
                            session, campaign_id, public_url=public_url
                        )
                    done = Batch(session, rules, now).run(events)
                break
            except (IntegrityError, OperationalError) as exc:
                if not (postgres and collided(exc)) or attempt == COLLISION_RETRIES:
                    raise
        report.add(done)
    return report


def collided(exc: IntegrityError | OperationalError) -> bool:
    """Whether a batch lost a race with another on the same new row (or a deadlock): worth
    taking again, when the other has committed."""
    return getattr(exc.orig, "sqlstate", None) in ("23505", "40P01")

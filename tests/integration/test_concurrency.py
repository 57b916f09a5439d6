"""Several commands at once: nothing fails, nothing is written twice, the chain stays whole."""

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlmodel import col, select

from config.campaign_file import load_campaign
from config.settings import Settings
from store.audit import verify
from store.db import head_revision, open_store, transaction
from store.models import AuditEvent, EngagementEvent
from tasks.campaigns.apply import apply_campaign
from tasks.campaigns.configs import read_configs
from tasks.campaigns.roster import read_roster
from tasks.campaigns.roster_import import import_roster


def at_once(work: list[Callable[[], Any]]) -> list[Any]:
    """Run every callable in its own thread, released together; re-raise the first failure."""
    start = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work[index]()
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "writers still waiting after 60 s: deadlock"
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], failures
    return results


def test_commands_starting_together_on_an_empty_store_create_it_once(
    empty_store_url: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=empty_store_url, _env_file=None)
    at_once([lambda: open_store(settings)] * 4)
    with open_store(settings).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            head_revision()
        ]


def test_the_same_new_campaign_applied_at_once_is_created_once(
    engine: Engine, example: Path
) -> None:
    spec = load_campaign(example / "campaign.yaml")
    rows, _ = read_roster(example / "roster.csv", spec)
    fall = spec.model_copy(update={"slug": "first-vote-pa-fall"})
    configs = read_configs(spec, example, file="campaign.yaml")

    def apply(which: Any) -> str:
        with transaction(engine) as session:
            change = apply_campaign(
                session, which, configs=configs, source_path=None, actor="staff:test"
            )
            import_roster(session, change.campaign, which, rows, actor="staff:test")
            return change.outcome

    outcomes = at_once([lambda: apply(spec), lambda: apply(spec), lambda: apply(fall)])
    assert sorted(outcomes) == ["created", "created", "unchanged"]
    with transaction(engine, write=False) as session:
        assert verify(session).ok
        actions = session.exec(select(AuditEvent.action)).all()
    assert actions.count("campaign.created") == 2
    assert actions.count("creator.created") == 50, "creators shared by both campaigns, made once"
    assert actions.count("roster.added") == 100


def test_an_event_another_writer_stores_meanwhile_is_counted_once_on_postgresql(
    engine: Engine,
) -> None:
    """A webhook and a file can bring the same event at once: the batch that loses the race
    counts it as a redelivery and keeps the rest of its events."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: batches take turns by design")
    from datetime import UTC, datetime

    from tasks.engagement.events import new_event, store_events

    now = datetime(2027, 2, 3, tzinfo=UTC)

    def row(external_id: str) -> dict[str, Any]:
        return new_event(
            source="tiktok", external_id=external_id, type="like", occurred_at=now, received_at=now
        )

    other = engine.connect()
    other.begin()
    other.execute(insert(EngagementEvent.__table__), [row("both")])  # type: ignore[attr-defined]
    result: dict[str, Any] = {}

    def batch() -> None:
        with transaction(engine) as session:
            result["counts"] = store_events(session, [row("both"), row("mine")])

    thread = threading.Thread(target=batch, daemon=True)
    thread.start()
    with engine.connect() as watcher:  # the batch's insert waits on the other writer's row
        waiting = text("SELECT count(*) FROM pg_locks WHERE NOT granted")
        while not watcher.execute(waiting).scalar() and thread.is_alive():
            watcher.rollback()
    other.commit()
    other.close()
    thread.join(timeout=30)
    assert result["counts"] == (1, 1)
    with transaction(engine, write=False) as session:
        stored = session.exec(select(EngagementEvent.external_id, EngagementEvent.deliveries))
        assert sorted(stored.all()) == [("both", 2), ("mine", 1)]


def test_two_rule_processors_at_once_decide_as_one_does_on_postgresql(
    engine: Engine, postgres_server: Callable[[], str] | None, example: Path, tmp_path: Path
) -> None:
    """Workers on two machines share the events queue: every event is processed once, and
    each person gets the follow-ups a single processor would have decided, no more."""
    if engine.dialect.name != "postgresql" or postgres_server is None:
        pytest.skip("SQLite has one writer: batches take turns by design")
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func

    from store.db import engine_for, upgrade
    from store.models import Creator, FollowUp, OutboxMessage, RosterMember
    from tasks.engagement.events import ingest
    from tasks.engagement.processing import process_pending
    from tasks.rehearsal.simulate import SimCreator, simulate

    start = datetime(2027, 2, 1, tzinfo=UTC)
    now = start + timedelta(days=30)

    def prepared(target: Engine) -> Engine:
        spec = load_campaign(example / "campaign.yaml")
        rows, _ = read_roster(example / "roster.csv", spec)
        configs = read_configs(spec, example, file="campaign.yaml")
        with transaction(target) as session:
            change = apply_campaign(
                session, spec, configs=configs, source_path=None, actor="staff:test"
            )
            import_roster(session, change.campaign, spec, rows, actor="staff:test")
        with transaction(target, write=False) as session:
            creators = [
                SimCreator(handle, followers or 10_000, code)
                for handle, followers, code in session.exec(
                    select(Creator.handle, Creator.followers, RosterMember.source_code).join(
                        RosterMember, col(RosterMember.creator_id) == col(Creator.id)
                    )
                )
            ]
        events = simulate(spec.slug, creators, start=start, days=30, seed=11, scale=0.02)
        assert not ingest(target, ((f"line {i}", e) for i, e in enumerate(events)), now=now).errors
        return target

    second = engine_for(postgres_server())
    upgrade(second)
    alone, together = prepared(engine), prepared(second)
    one = process_pending(alone, now=now, public_url="https://rally.example.org", batch=150)
    two = at_once(
        [
            lambda: process_pending(
                together, now=now, public_url="https://rally.example.org", batch=150
            )
        ]
        * 2
    )
    assert one.events > 800 and sum(r.events for r in two) == one.events

    def decided(target: Engine) -> tuple[Any, ...]:
        with transaction(target, write=False) as session:
            pairs = session.exec(select(FollowUp.rule_id, FollowUp.contact_id)).all()
            by_status = session.exec(
                select(FollowUp.status, func.count()).group_by(FollowUp.status)
            ).all()
            outbox = session.exec(select(func.count()).select_from(OutboxMessage)).one()
            waiting = session.exec(
                select(func.count())
                .select_from(EngagementEvent)
                .where(EngagementEvent.processed_at == None)  # noqa: E711
            ).one()
        return len(pairs), len(set(pairs)), sorted(by_status), outbox, waiting

    assert decided(together) == decided(alone)

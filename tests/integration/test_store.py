"""The store's schema: created on first use, in step with the models, guarded against drift."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlmodel import SQLModel, col, select

from config.errors import RallyError
from config.settings import Settings
from store.audit import Change, record, verify
from store.db import MIGRATIONS, Lock, engine_for, head_revision, open_store, transaction
from store.models import AuditEvent, Campaign, Timer


def test_the_migrations_build_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []


def test_the_fast_head_check_agrees_with_alembic() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [head_revision()]


def test_an_empty_store_is_created_on_first_use(tmp_path, monkeypatch) -> None:
    settings = Settings(home=tmp_path / "fresh")
    engine = open_store(settings)
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            == head_revision()
        )
    assert (tmp_path / "fresh" / "rally.db").exists()
    engine.dispose()


@pytest.mark.parametrize(
    ("revision", "message"), [("0000", "run `rally db upgrade`"), ("9999", "upgrade Rally")]
)
def test_a_store_at_another_revision_is_not_touched(
    engine: Engine, settings: Settings, revision: str, message: str
) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    with pytest.raises(RallyError, match=message):
        open_store(settings)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == revision


def test_an_unreachable_store_is_one_clear_error(tmp_path) -> None:
    settings = Settings(database_url="postgresql://rally:secret@127.0.0.1:1/nowhere")
    with pytest.raises(RallyError) as caught:
        open_store(settings)
    assert str(caught.value).startswith(
        "cannot open the store at postgresql+psycopg://rally:***@127.0.0.1:1/nowhere"
    )
    assert "secret" not in str(caught.value)
    engine_for(settings.store_url).dispose()


def test_times_come_back_as_the_same_instant_in_utc(engine: Engine) -> None:
    due = datetime(2027, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    with transaction(engine) as session:
        session.add(Timer(kind="review.due", entity_type="review_task", entity_id="1", due_at=due))
    with transaction(engine, write=False) as session:
        stored = session.exec(select(Timer)).one().due_at
    assert stored == due
    assert stored.tzinfo == UTC and stored.hour == 14


def test_a_time_without_a_zone_is_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), transaction(engine) as session:
        session.add(Timer(kind="k", entity_type="e", entity_id="1", due_at=datetime(2027, 3, 1)))
        session.flush()


def test_a_failed_transaction_leaves_nothing_behind(engine: Engine) -> None:
    with pytest.raises(ZeroDivisionError), transaction(engine) as session:
        session.add(Timer(kind="k", entity_type="e", entity_id="1", due_at=datetime.now(UTC)))
        session.flush()
        _ = 1 / 0
    with transaction(engine, write=False) as session:
        assert session.exec(select(Timer)).all() == []
        assert session.exec(select(Campaign)).all() == []


def test_on_postgresql_changes_take_turns_but_queue_work_and_reading_never_wait(
    engine: Engine,
) -> None:
    """A change in progress holds the writers' lock, not the audit head: queue work (which locks
    only its own rows) commits audit entries meanwhile, and the chain stays whole."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: every write waits for the one before it by design")
    with transaction(engine) as change:
        change.add(Timer(kind="k", entity_type="e", entity_id="1", due_at=datetime.now(UTC)))
        change.flush()
        record(change, [Change("staff", "timer.set", "timer", 1, "a change in progress")])
        with engine.connect() as other:
            taken = other.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": int(Lock.WRITERS)}
            ).scalar()
            other.rollback()
        assert taken is False, "another change must wait for this one"
        with transaction(engine, take_turns=False) as queue:
            queue.execute(text("SET LOCAL lock_timeout = '2s'"))  # fail, not hang, if locked
            record(queue, [Change("rally", "message.sent", "outbox", 1, "queue work")])
        with transaction(engine, write=False) as reading:
            assert reading.exec(select(AuditEvent)).all()[0].summary == "queue work"
    with transaction(engine, write=False) as session:
        assert [
            e.summary for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))
        ] == [
            "queue work",
            "a change in progress",
        ]
        assert verify(session).ok


def test_bulk_rows_keep_an_empty_json_value_as_null_on_every_store(engine: Engine) -> None:
    from store.bulk import insert_rows
    from store.models import OutboxMessage

    rows = [
        {
            "channel": "lead",
            "destination": "csv",
            "idempotency_key": f"k{n}",
            "subject_type": "contact",
            "subject_id": str(n),
            "payload": {"n": n},
            "remote_state": None if n % 2 else {"email": "subscribed"},
        }
        for n in range(6)
    ]
    with transaction(engine) as session:
        insert_rows(session, OutboxMessage, rows)  # COPY on PostgreSQL
        again = [r | {"idempotency_key": f"x{r['idempotency_key']}"} for r in rows]
        insert_rows(session, OutboxMessage, again, key=("idempotency_key",))
    with engine.connect() as conn:
        nulls = conn.execute(text("SELECT count(*) FROM outbox WHERE remote_state IS NULL"))
        assert nulls.scalar_one() == 6


def test_a_big_batch_of_bulk_rows_lands_whole_with_each_value_as_the_orm_reads_it(
    engine: Engine,
) -> None:
    """More rows than one statement takes (SQLite's go 500 at a time), some with a column the
    others leave to its default: every row gets its id by key, and reads back through the ORM
    with its JSON, its aware time and its status as given."""
    from store.bulk import insert_rows
    from store.models import OutboxMessage, OutboxStatus

    due = datetime(2027, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    rows = [
        {
            "channel": "email",
            "destination": "mail",
            "idempotency_key": f"bulk-{n}",
            "subject_type": "contact",
            "subject_id": str(n),
            "payload": {"n": n, "to": f"fan{n}@example.org", "tags": ["a", "ü"]},
            "available_at": due + timedelta(minutes=n),
        }
        | ({"status": OutboxStatus.DEAD} if n % 100 == 0 else {})
        for n in range(1201)
    ]
    with transaction(engine) as session:
        ids = insert_rows(session, OutboxMessage, rows, key=("idempotency_key",))
    assert len(set(ids.values())) == 1201
    with transaction(engine, write=False) as session:
        stored = {m.idempotency_key: m for m in session.exec(select(OutboxMessage))}
    assert len(stored) == 1201
    last = stored["bulk-1200"]
    assert last.id == ids[("bulk-1200",)]
    assert last.payload == {"n": 1200, "to": "fan1200@example.org", "tags": ["a", "ü"]}
    assert last.available_at == due + timedelta(minutes=1200)
    assert last.available_at.tzinfo is not None
    assert (last.status, stored["bulk-1199"].status) == (OutboxStatus.DEAD, OutboxStatus.PENDING)

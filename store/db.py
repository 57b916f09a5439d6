"""Engines, transactions and the schema check every store-using command makes first.

The check reads the store's revision with one plain query and compares it with the newest
migration file's name, so a command that only reads the store never imports alembic.
"""

import fcntl
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from config.errors import RallyError
from config.settings import Settings, get_settings, normalize_database_url

MIGRATIONS = Path(__file__).parent / "migrations"


class Lock(IntEnum):
    """PostgreSQL advisory lock keys, one per purpose ("RALLY" and a number)."""

    MIGRATION = 0x52414C4C59  # one migrator at a time
    WRITERS = 0x52414C4C5901  # changes take turns (see `transaction`)
    SPRINT_CALENDAR = 0x52414C4C5903  # one pass of the sprints' calendar at a time (`only_one`)
    TIKTOK_POLL = 0x52414C4C5904  # one TikTok poll at a time (`only_one`)
    FOLLOWUP_SLOTS = 0x52414C4C5905  # per campaign: one batch at a time places its follow-ups
    PEOPLE = 0x52414C4C5906  # per email, phone and handle: one adder at a time
    CLAIMS = 0x52414C4C5907  # per outbox channel: one claim that passes over held subjects


def advisory_lock(connection: Connection | Session, lock: Lock, part: int | None = None) -> None:
    """Hold `lock` (or its `part`, such as one campaign's) until the transaction ends
    (PostgreSQL only)."""
    key = int(lock) if part is None else (int(lock) << 16) | (part & 0xFFFF)
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def advisory_locks_by_name(
    session: Session, lock: Lock, names: Iterable[str], *, most: int
) -> None:
    """Hold `lock` for each of `names` until the transaction ends (PostgreSQL only), so two
    transactions wait on each other only for a name they share: each name's own part (a 32-bit
    hash of it) with the whole lock shared. More than `most` names take the whole lock alone
    instead, which bounds what one transaction holds of the server's shared lock table
    (`max_locks_per_transaction` for each connection). The parts go in ascending order in one
    statement after the whole, so overlapping sets never deadlock."""
    parts = sorted({zlib.crc32(name.encode()) - 2**31 for name in names})
    if not parts:
        return
    if len(parts) > most:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int(lock)})
        return
    session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": int(lock)})
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(:lock, k)) FROM unnest(CAST(:parts AS integer[])) k"
        ),
        {"lock": int(lock) & 0x7FFFFFFF, "parts": parts},
    )


@contextmanager
def only_one(engine: Engine, lock: Lock) -> Iterator[bool]:
    """Whether this process is the one running `lock`'s job: False while another holds it.

    For a job that must not run twice at once on any machine (the sprints' calendar, polling a rate-
    limited API): PostgreSQL's session advisory lock, or, for a SQLite store, a lock file beside
    it (its processes share one machine). The lock goes with the process if it dies.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            key = {"key": int(lock)}
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar())
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                    conn.commit()
        return
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:":
        yield True
        return
    path = Path(database).with_name(f"{Path(database).name}.{lock.name.lower()}.lock")
    with path.open("a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        try:
            yield held
        finally:
            if held:
                fcntl.flock(file, fcntl.LOCK_UN)


def masked(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per store URL. SQLite gets WAL, foreign keys and a busy timeout."""
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (_sqlite_begin)
    cursor = dbapi_connection.cursor()
    # 8 KiB pages suit rows of rendered briefs; it only takes effect on a new, empty file.
    cursor.execute("PRAGMA page_size=8192")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        # Another connection may be switching this new file to WAL right now; the mode persists.
        with suppress(sqlite3.OperationalError):
            cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Writers take SQLite's write lock up front, so concurrent writers queue on the busy
    timeout instead of failing when a deferred transaction tries to upgrade its lock."""
    write = connection.get_execution_options().get("rally_write", False)
    # On the driver's own cursor: through `exec_driver_sql` the BEGIN alone cost about a third
    # of a short transaction.
    connection.connection.cursor().execute("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def transaction(
    engine: Engine, *, write: bool = True, take_turns: bool = True
) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error.

    A change (the default) takes turns with other changes from its first statement: SQLite's
    write lock (BEGIN IMMEDIATE), and on PostgreSQL the `WRITERS` advisory lock. So a change
    never acts on what it read before another change's commit.

    `take_turns=False` is for queue work that locks only the rows it takes (an outbox claim with
    SKIP LOCKED, the events queue's own lock), so that it never waits behind people's changes
    on PostgreSQL; SQLite has one writer, so there it still takes the write lock. `write=False`
    is for reading only, which never waits. Either way the audit head is locked only while a
    transaction that recorded entries commits (`store.audit`).
    """
    with Session(_bound(engine, write), expire_on_commit=False) as session, session.begin():
        if write and take_turns and engine.dialect.name == "postgresql":
            advisory_lock(session, Lock.WRITERS)
        yield session


@lru_cache(maxsize=32)
def _bound(engine: Engine, write: bool) -> Engine:
    """`engine` with `rally_write` set, made once: each new one joins the engine's event
    listeners anew, which cost more than a short transaction's own statements."""
    return engine.execution_options(rally_write=write)


def connection_dropped(exc: BaseException) -> bool:
    """Whether `exc` is the database dropping Rally's connection (a restart, a failover,
    pg_terminate_backend): work that is safe to repeat may go again on a fresh connection."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def head_revision() -> str:
    """The newest migration: files are named `NNNN_what.py` and revision ids are `NNNN`."""
    names = sorted(p.name for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    return names[-1][:4]


def _revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def current_revision(engine: Engine) -> str | None:
    """The store's revision, or None for an empty store."""
    try:
        with engine.connect() as conn:
            return _revision(conn)
    except OperationalError as exc:
        raise RallyError(f"cannot open the store at {masked(str(engine.url))}: {exc.orig}") from exc


@dataclass(frozen=True)
class Upgrade:
    url: str
    before: str | None
    after: str


def upgrade(engine: Engine) -> Upgrade:
    """Apply every pending migration (alembic is imported only here)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.execution_options(rally_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":  # one migrator at a time; SQLite: BEGIN IMMEDIATE
            advisory_lock(conn, Lock.MIGRATION)
        before = _revision(conn)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return Upgrade(url=masked(str(engine.url)), before=before, after=head_revision())


def open_store(settings: Settings | None = None) -> Engine:
    """The store's engine, ready to use: an empty store is created on the spot.

    A store behind this version of Rally is not changed silently; the user is asked to run
    `rally db upgrade`, so migrating real data is always a deliberate step.
    """
    settings = settings or get_settings()
    engine = engine_for(settings.store_url)
    revision, head = current_revision(engine), head_revision()
    if revision is None:
        upgrade(engine)
    elif revision != head:
        if revision > head:
            raise RallyError(
                f"the store is at revision {revision}, newer than this Rally ({head}): "
                "upgrade Rally"
            )
        raise RallyError(
            f"the store is at revision {revision} and this Rally needs {head}: "
            "run `rally db upgrade`"
        )
    return engine


def write_migration(message: str) -> Path:
    """Draft the next migration from the models' difference to head (for developers).

    Review the draft before committing: keep plain SQLAlchemy types in it, never model code.
    """
    import tempfile

    from alembic import command
    from alembic.config import Config

    number = f"{int(head_revision()) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/draft.db")
        upgrade(engine)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.revision(config, message=message, autogenerate=True, rev_id=number)
        engine.dispose()
    return next((MIGRATIONS / "versions").glob(f"{number}_*.py"))

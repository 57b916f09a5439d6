"""Stores prepared once per test session and laid into each test's store.

Migrating a store, or applying the 50-creator example to it, costs a third of a second or more
each time; laying a copy of one made earlier costs milliseconds. On SQLite a copy is the file;
on PostgreSQL every test shares one database, emptied and refilled from a snapshot of each
table (COPY), which is faster than a new database or a TRUNCATE of every table.

A campaign folder is prepared by applying it once through `rally campaign apply` as the test
asked; later tests whose folder holds the same files get a copy of that store, with the
campaign's `source_path` set to their own folder, as their own apply would have left it.
"""

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from store.db import engine_for
from store.models import load_all
from tasks.staff.runs import alive

# Databases of a test session are named after its process, so a later session can tell which
# ones a killed session left behind.
PREFIX = "rally_test_"
LEGACY = re.compile(r"rally_test_[0-9a-f]{10}")  # names from before, with no process in them
OLD = timedelta(hours=6)  # longer than any test session runs

load_all()  # every table on SQLModel.metadata: the stores are laid table by table


def database_name(tag: str) -> str:
    return f"{PREFIX}{os.getpid()}_{tag}"


def drop_leftovers(admin: psycopg.Connection) -> list[str]:
    """Drop the test databases of sessions that ended without dropping theirs (killed): their
    process is gone, or, for names without one, they are older than any session runs."""
    dropped = []
    names = [r[0] for r in admin.execute("SELECT datname FROM pg_database")]
    for name in names:
        match = re.fullmatch(rf"{PREFIX}(\d+)_\w+", name)
        if match:
            left = not alive(int(match[1]))
        elif LEGACY.fullmatch(name):
            left = _older_than(admin, name, OLD)
        else:
            continue
        if left:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            dropped.append(name)
    return dropped


def _older_than(admin: psycopg.Connection, name: str, age: timedelta) -> bool:
    """Whether the database was created more than `age` ago (its PG_VERSION file's time; only
    a superuser may read it, so for others nothing is ever old)."""
    try:
        row = admin.execute(
            "SELECT (pg_stat_file('base/' || oid || '/PG_VERSION')).modification "
            "FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] < datetime.now(UTC) - age


def folder_digest(folder: Path) -> str:
    """Every file of a campaign folder as one hash: two folders alike apply alike."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# --- SQLite: a file --------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    assert database, url
    return Path(database)


def _copy_sqlite(source: Path, target: Path) -> None:
    """A SQLite file and, when a connection elsewhere still holds one, its WAL beside it."""
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    if Path(f"{source}-wal").exists():
        shutil.copy(f"{source}-wal", f"{target}-wal")


def save_sqlite(url: str, target: Path) -> None:
    """Copy the store at `url` to `target`, its pending WAL written into the file first."""
    engine_for(url).dispose()  # the last connection to close checkpoints the WAL
    _copy_sqlite(_sqlite_path(url), target)


def lay_sqlite(template: Path, url: str) -> None:
    engine_for(url).dispose()
    _copy_sqlite(template, _sqlite_path(url))


# --- PostgreSQL: a snapshot of each table ----------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, bytes]  # each non-empty table's rows as COPY writes them
    sequences: dict[str, tuple[int, bool]]  # setval's value and is_called


def _tables(conn: psycopg.Connection) -> list[str]:
    """Every table, parents before the tables whose keys point at them."""
    found = {
        r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    ordered = [t.name for t in SQLModel.metadata.sorted_tables if t.name in found]
    return sorted(found - set(ordered)) + ordered


def take(conn: psycopg.Connection) -> Snapshot:
    rows = {}
    with conn.cursor() as cursor:
        for table in _tables(conn):
            with cursor.copy(f'COPY "{table}" TO STDOUT') as copy:
                data = b"".join(bytes(block) for block in copy)
            if data:
                rows[table] = data
        cursor.execute(
            "SELECT sequencename, last_value, start_value FROM pg_sequences "
            "WHERE schemaname = 'public'"
        )
        sequences = {
            name: (start, False) if last is None else (last, True)
            for name, last, start in cursor.fetchall()
        }
    conn.commit()
    return Snapshot(rows, sequences)


def lay(conn: psycopg.Connection, snapshot: Snapshot) -> None:
    tables = _tables(conn)
    with conn.cursor() as cursor:
        for table in reversed(tables):
            cursor.execute(f'DELETE FROM "{table}"')
        for table in tables:
            if table in snapshot.rows:
                with cursor.copy(f'COPY "{table}" FROM STDIN') as copy:
                    copy.write(snapshot.rows[table])
        for name, (value, called) in snapshot.sequences.items():
            cursor.execute("SELECT setval(%s, %s, %s)", (name, value, called))
    conn.commit()


# --- both --------------------------------------------------------------------------------


class PreparedStores:
    """The session's prepared stores: empty (migrated), and one per campaign folder applied."""

    def __init__(self, folder: Path, empty_sqlite: Path, postgres_url: str | None) -> None:
        self.folder = folder
        self.sqlite: dict[str, tuple[Path, str]] = {"": (empty_sqlite, "")}
        self.postgres: dict[str, tuple[Snapshot, str]] = {}
        self.postgres_url = postgres_url
        self._conn: psycopg.Connection | None = None
        if postgres_url:
            self.postgres[""] = (take(self._postgres()), "")

    def _postgres(self) -> psycopg.Connection:
        """The session's own connection to the store; a new one after a test dropped it (as
        the tests of dropped connections do to every connection)."""
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("SELECT 1")
                self._conn.rollback()
                return self._conn
            except psycopg.OperationalError:
                self._conn.close()
        assert self.postgres_url
        plain = make_url(self.postgres_url).set(drivername="postgresql")
        self._conn = psycopg.connect(plain.render_as_string(hide_password=False))
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def lay_empty(self, url: str) -> None:
        self._lay(url, "")

    def apply(self, url: str, folder: Path, run_apply: Callable[[], Any]) -> None:
        """The campaign in `folder` applied to the store at `url`: by `run_apply` the first
        time this session meets such a folder, then as a copy of what that left."""
        key = folder_digest(folder)
        source = str((folder / "campaign.yaml").resolve())
        if self._lay(url, key):
            made_from = self._made_from(url, key)
            with engine_for(url).begin() as conn:
                conn.execute(
                    text("UPDATE campaigns SET source_path = :new WHERE source_path = :old"),
                    {"new": source, "old": made_from},
                )
            return
        run_apply()
        if url.startswith("sqlite"):
            target = self.folder / f"{key[:16]}.db"
            save_sqlite(url, target)
            self.sqlite[key] = (target, source)
        else:
            self.postgres[key] = (take(self._postgres()), source)

    def _made_from(self, url: str, key: str) -> str:
        return (self.sqlite if url.startswith("sqlite") else self.postgres)[key][1]

    def _lay(self, url: str, key: str) -> bool:
        if url.startswith("sqlite"):
            if key not in self.sqlite:
                return False
            lay_sqlite(self.sqlite[key][0], url)
            return True
        assert url == self.postgres_url, "tests share the session's PostgreSQL store"
        if key not in self.postgres:
            return False
        lay(self._postgres(), self.postgres[key][0])
        return True

"""Column types shared by the tables."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def clock(at: datetime | None) -> Callable[[], datetime]:
    """The time now, or a fixed moment: a rehearsal runs its flows on its simulated clock."""
    return (lambda: at) if at is not None else utcnow


def _utc(value: datetime) -> datetime:
    """An aware time in UTC; a naive one is refused."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: Rally stores aware UTC times only")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _read_as_utc(value: datetime) -> datetime:
    """A stored time in UTC: SQLite keeps none, so a time without a zone is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_time(value: datetime) -> str:
    """An aware time as SQLite keeps it (`2027-02-03 18:04:05.000000`, UTC), for a statement
    run by the driver itself."""
    return _utc(value).isoformat(sep=" ", timespec="microseconds")[:26]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) and PostgreSQL alike.

    Naive datetimes are refused: a wall-clock time without a zone is a bug waiting to happen.
    On SQLite, times are text in SQLAlchemy's format (`2027-02-03 18:04:05.000000`), written
    and read here with the C `isoformat`/`fromisoformat`, several times faster than the general
    DateTime type's formatting and regular expression.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else _read_as_utc(value)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_text(value: datetime | None) -> str | None:
            return None if value is None else sqlite_time(value)

        return to_text

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def from_text(value: Any) -> datetime | None:
            if value is None:
                return None
            return _read_as_utc(
                value if isinstance(value, datetime) else datetime.fromisoformat(value)
            )

        return from_text


def created_time() -> Any:
    """A column for when the row was made: now, in UTC."""
    return Field(default_factory=utcnow, sa_type=UTCDateTime)


def optional_time(*, index: bool = False) -> Any:
    """A column for a moment that may not have come yet (None until it does)."""
    return Field(default=None, sa_type=UTCDateTime, index=index)

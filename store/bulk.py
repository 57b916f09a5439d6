"""Bulk inserts for big batches: plain rows instead of one ORM object each.

Building a SQLModel object costs about 0.1 ms; for ten thousand rows that is most of the work.
`insert_rows` fills each row with the model's own defaults and inserts the batch into the table,
returning the new ids by a natural key of the caller's choice. On PostgreSQL the rows go in by
COPY, several times faster than one statement a row. `one_of` looks a batch's values up in one
statement whose text does not depend on how many there are.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from functools import cache
from typing import Any

from pydantic_core import PydanticUndefined, to_jsonable_python
from sqlalchemy import ARRAY, JSON, ColumnElement, Table, any_, bindparam, func, insert, select
from sqlmodel import Session, SQLModel


def one_of(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column` is one of `values`: on PostgreSQL as one array (`= ANY`), whose statement reads
    the same for any number of values, so the driver parses it once (an IN list of a batch's
    thousands of values is parsed anew for every batch, which cost more than running it); an
    IN list elsewhere."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("values", values, type_=ARRAY(column.type), unique=True))
    return column.in_(values)


def with_defaults(model: type[SQLModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` plus the model's defaults for every field not given (the id is left to the DB)."""
    row = dict(values)
    for name, info in model.model_fields.items():
        if name in row or name == "id":
            continue
        if info.default_factory is not None:
            row[name] = info.default_factory()  # type: ignore[call-arg]
        elif info.default is not PydanticUndefined:
            row[name] = info.default
    return row


def insert_rows(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[Mapping[str, Any]],
    *,
    key: tuple[str, ...] = (),
) -> dict[tuple[Any, ...], int]:
    """Insert `rows` into `model`'s table in one batch; return their new ids by `key` columns
    (nothing without a key).

    Asking for ids by key rather than in row order lets the rows go in without RETURNING: by
    COPY on PostgreSQL (ids drawn from the sequence first), by one plain executemany on SQLite
    (ids read back past the newest one).
    """
    if not rows:
        return {}
    table = model.__table__  # type: ignore[attr-defined]
    values = [with_defaults(model, row) for row in rows]
    postgres = session.get_bind().dialect.name == "postgresql"
    if not key:
        if postgres:
            copy_rows(session, table, values)
        else:
            sqlite_insert(session, table, values)
        return {}
    if postgres:
        sequence = func.pg_get_serial_sequence(table.name, "id")
        ids = session.execute(
            select(func.nextval(sequence)).select_from(func.generate_series(1, len(values)))
        ).scalars()
        for row, id_ in zip(values, ids, strict=True):
            row["id"] = id_
        copy_rows(session, table, values)
        return {tuple(row[k] for k in key): row["id"] for row in values}
    # SQLite has one writer: the rows past its newest id are these.
    newest = session.execute(select(func.max(table.c.id))).scalar() or 0
    sqlite_insert(session, table, values)
    added = select(table.c.id, *(table.c[k] for k in key)).where(table.c.id > newest)
    return {tuple(found[1:]): found[0] for found in session.execute(added)}


SQLITE_ROWS_PER_STATEMENT = 500  # well inside SQLite's 32,766 bound values per statement


def sqlite_insert(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, then: str = ""
) -> None:
    """`rows` into a SQLite table as multi-row INSERTs run by the driver itself, each value made
    by its column's own bind processor (JSON, times, enums), as SQLAlchemy would make it: for a
    batch, its handling of each row of an executemany cost more than the insert. `then` ends
    each statement (an ON CONFLICT clause). Rows whose columns differ go by executemany."""
    names = tuple(rows[0])
    if any(row.keys() != rows[0].keys() for row in rows):
        assert not then, "rows for one statement with a conflict clause have the same columns"
        session.execute(insert(table), rows)
        return
    dialect = session.get_bind().dialect
    processors = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    per_statement = min(SQLITE_ROWS_PER_STATEMENT, 32_766 // len(names))
    connection = session.connection()
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        values = [
            process(row[name]) if process else row[name]
            for row in chunk
            for name, process in zip(names, processors, strict=True)
        ]
        statement = _multi_row_insert(table.name, names, len(chunk), then)
        connection.exec_driver_sql(statement, tuple(values))


@cache
def _multi_row_insert(table: str, names: tuple[str, ...], count: int, then: str) -> str:
    one = "(" + ", ".join("?" * len(names)) + ")"
    columns = ", ".join(f'"{name}"' for name in names)
    return f'INSERT INTO "{table}" ({columns}) VALUES ' + ", ".join([one] * count) + then


def copy_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows into a PostgreSQL table by COPY, in the session's transaction: the columns of the
    first row, values as stored (times aware, JSON columns as objects, enums by value)."""
    columns = [c for c in table.c if c.name in rows[0]]
    names = [c.name for c in columns]
    json_columns = {c.name for c in columns if isinstance(c.type, JSON)}
    # None in a nullable JSON column is SQL NULL, as an INSERT stores it, not JSON's `null`
    # (which `IS NULL` does not find)
    null_json = {c.name for c in columns if isinstance(c.type, JSON) and c.nullable}
    from psycopg import sql as pg_sql  # PostgreSQL's own: SQLite stores never load it

    command = pg_sql.SQL("COPY {} ({}) FROM STDIN").format(
        pg_sql.Identifier(table.name), pg_sql.SQL(", ").join(map(pg_sql.Identifier, names))
    )

    def stored(name: str, value: Any) -> Any:
        if value is None and name in null_json:
            return None
        if name in json_columns:
            return json.dumps(value, default=to_jsonable_python)
        return value.value if isinstance(value, Enum) else value

    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(command) as copy:
        for row in rows:
            copy.write_row([stored(n, row[n]) for n in names])

"""The outbox: side effects written in the same transaction as the change behind them, each
once by its idempotency key, and taken by drains (`tasks.drain`) with a lease, so that
concurrent drains skip what another holds and a crashed drain's messages are taken again once
its lease ends. Also the retry policy every caller of a remote shares.
"""

import logging
import random
import re
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    String,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    text,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from integrations.errors import Deferred, TransientError, UnavailableError
from store.bulk import with_defaults
from store.db import Lock, advisory_lock, transaction
from store.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
LEASE = timedelta(seconds=30)  # kept alive while a drain works (`tasks.drain.LeaseKeeper`)


def enqueue(session: Session, messages: Sequence[Mapping[str, Any]]) -> int:
    """Add messages whose idempotency key is new; return how many were added."""
    if not messages:
        return 0
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
    )
    rows = [with_defaults(OutboxMessage, m) for m in messages]
    return len(session.execute(statement, rows).all())


@dataclass(slots=True)
class Claimed:
    """A message a drain holds, as the claim returned it: plain values, not a model, since
    for a batch of a hundred, loading models and reading their tracked attributes costs more
    than the claim itself. Senders and handlers read it as they would the stored message."""

    id: int
    channel: str
    destination: str
    idempotency_key: str
    subject_type: str
    subject_id: str
    payload: dict[str, Any]
    attempts: int
    available_at: datetime
    remote_id: str | None
    remote_state: dict[str, Any] | None
    locked_until: datetime | None  # the last two as the claim set them, not read back
    lease_id: str | None


def claim(
    engine: Engine,
    *,
    channel: str,
    limit: int,
    now: datetime,
    destination: str | None = None,
    lease: timedelta = LEASE,
    one_per_subject: bool = False,
) -> list[Claimed]:
    """Lease up to `limit` ready messages, the longest ready first (`ix_outbox_claim` holds a
    destination's in that order, so a claim reads no more than it takes). On PostgreSQL, rows
    another drain holds are skipped; on SQLite the write lock taken up front makes drains take
    turns.

    `one_per_subject` passes over a message whose subject (a person) has another message to
    the same destination that a drain holds right now, on this machine or another: so one
    person's messages reach the remote one after the other, each reading the person as they
    are when it goes, and an erasure is never overtaken by an upsert that left before it. Such
    claims of a channel take turns on PostgreSQL too (a transaction lock): two at once would
    each see the other's subjects free."""
    dialect = engine.dialect.name
    statement = _claiming(
        dialect, by_destination=destination is not None, one_per_subject=one_per_subject
    )
    until, lease_id = now + lease, uuid.uuid4().hex
    values = {
        "b_channel": channel,
        "b_destination": destination,
        "b_now": now,
        "b_limit": limit,
        "b_until": until,
        "b_lease": lease_id,
    }
    with transaction(engine, take_turns=False) as session:
        if one_per_subject and dialect == "postgresql":
            advisory_lock(session, Lock.CLAIMS, zlib.crc32(channel.encode()))
        rows = [
            Claimed(*[*row, until, lease_id]) for row in session.execute(statement, values).all()
        ]
    return sorted(rows, key=lambda row: (row.available_at, row.id))


# How many ready messages make a misinformed planner costly, and how far its estimate may be off.
STALE_FROM, STALE_BY = 1000, 10
ANALYZE_EVERY = 600.0  # seconds: at most one ANALYZE by a process per store in this long
_analyzed: dict[str, float] = {}  # store URL -> when this process last analyzed its outbox


def up_to_date(engine: Engine, *, channel: str, destination: str | None = None) -> bool:
    """On PostgreSQL, bring the outbox's statistics up to date (ANALYZE) when the planner
    thinks far fewer messages are ready to claim than are; whether it did.

    A burst of enqueued messages leaves the statistics stale until autovacuum's next round,
    a minute or more later; meanwhile the planner expects one pending message and, for each
    claim, reads and sorts every pending message of the channel instead of the claim index's
    first few (29 ms a claim at 27,000 pending, against 0.3 once analyzed). A drain asks
    once before it starts: one estimate and one bounded count. A process analyzes a store at
    most once in `ANALYZE_EVERY`, since in a large outbox of sent messages a few thousand
    pending ones may stay below what a sample sees."""
    if engine.dialect.name != "postgresql":
        return False
    store = str(engine.url)
    if time.monotonic() - _analyzed.get(store, -ANALYZE_EVERY) < ANALYZE_EVERY:
        return False
    where = "status = 'pending' AND channel = :channel"
    if destination is not None:
        where += " AND destination = :destination"
    values = {"channel": channel, "destination": destination, "most": STALE_FROM * STALE_BY}
    with engine.connect() as conn:
        explain = text(f"EXPLAIN (FORMAT JSON) SELECT id FROM outbox WHERE {where}")
        estimate = conn.execute(explain, values).scalar_one()[0]["Plan"]["Plan Rows"]
        ready = conn.execute(
            text(f"SELECT count(*) FROM (SELECT 1 FROM outbox WHERE {where} LIMIT :most) AS r"),
            values,
        ).scalar_one()
        if ready < STALE_FROM or ready <= estimate * STALE_BY:
            return False
        _analyzed[store] = time.monotonic()
        try:
            conn.execute(text("ANALYZE outbox"))
            conn.commit()
        except DBAPIError as exc:  # not the table's owner, say: autovacuum will do it
            log.warning("could not bring the outbox's statistics up to date: %s", exc.orig)
            return False
    return True


@cache
def _claiming(dialect: str, *, by_destination: bool, one_per_subject: bool) -> Any:
    """The claim as one statement, which takes the batch and returns it as taken (built once:
    building it costs more than running it)."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    ready = (
        sa_select(table.c.id)
        .where(
            # written out, so that the store sees it matches `ix_outbox_claim`
            table.c.status == literal(OutboxStatus.PENDING.value, literal_execute=True),
            table.c.channel == bindparam("b_channel"),
            table.c.available_at <= bindparam("b_now", type_=table.c.available_at.type),
            or_(
                table.c.locked_until.is_(None),
                table.c.locked_until < bindparam("b_now", type_=table.c.locked_until.type),
            ),
        )
        .order_by(table.c.available_at, table.c.id)
        .limit(bindparam("b_limit", type_=Integer))
    )
    if by_destination:
        ready = ready.where(table.c.destination == bindparam("b_destination"))
    if one_per_subject:
        # A message under a live lease, whatever its status: one withdrawn while its drain
        # sends it is still on its way (`free_withdrawn`). Written out, so that the store sees
        # it matches `ix_outbox_leased`.
        held = table.alias("held")
        taken = sa_select(held.c.id).where(
            held.c.destination == table.c.destination,
            held.c.subject_type == table.c.subject_type,
            held.c.subject_id == table.c.subject_id,
            held_now(held, bindparam("b_now", type_=held.c.locked_until.type)),
        )
        ready = ready.where(~exists(taken))
    if dialect == "postgresql":
        ready = ready.with_for_update(skip_locked=True)
    return (
        update(table)
        .where(table.c.id.in_(ready.scalar_subquery()))
        .values(locked_until=bindparam("b_until"), lease_id=bindparam("b_lease"))
        .returning(*(table.c[f.name] for f in fields(Claimed)[:-2]))
    )


def held_now(table: Any, now: Any) -> Any:
    """A message a drain holds right now: under a lease that has not run out, whatever its
    status (one withdrawn while its drain sends it is still on its way)."""
    return and_(table.c.lease_id.is_not(None), table.c.locked_until >= now)


def scrub_links(
    session: Session, messages: Sequence[Claimed], link: "re.Pattern[str]", said: str
) -> None:
    """Replace the links `link` finds in sent messages' text with `said`, so the store keeps
    no usable copy of a one-time link once it went out."""
    scrubbed = [
        {"b_id": m.id, "b_payload": m.payload | {"text": link.sub(said, m.payload["text"])}}
        for m in messages
        if link.search(m.payload.get("text", ""))
    ]
    if scrubbed:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(payload=bindparam("b_payload")),
            scrubbed,
        )


def cancel(session: Session, ids: Sequence[int], reason: str) -> int:
    """Withdraw pending messages (a newer one replaces them); one being sent right now is left
    to its drain, which finds the message no longer pending only if it has not sent it yet, and
    keeps its lease until that drain is done with it: the subject's next message waits for it
    (`claim(..., one_per_subject=True)`)."""
    if not ids:
        return 0
    result = session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(ids), col(OutboxMessage.status) == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED, last_error=reason)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def renew(engine: Engine, rows: list[Claimed], until: datetime) -> list[Claimed]:
    """Extend this drain's lease on `rows` to `until`, right before sending them; the rows
    another drain took over after the lease ran out are dropped."""
    with transaction(engine, take_turns=False) as session:
        held = still_held(session, rows)
        set_lease(session, held, until)
        free_withdrawn(session, rows)  # those withdrawn meanwhile do not go
    for row in held:
        keep(row, locked_until=until)
    return held


def release(engine: Engine, rows: list[Claimed]) -> None:
    """Give back messages this drain holds but did not try, as they were."""
    with transaction(engine, take_turns=False) as session:
        set_lease(session, rows, None)


def set_lease(session: Session, rows: list[Claimed], until: datetime | None) -> None:
    """Move the lease of the rows this drain holds to `until` (None frees them, those withdrawn
    meanwhile too)."""
    if rows:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        mine = [table.c.id == bindparam("b_id"), table.c.lease_id == bindparam("b_lease")]
        if until is not None:
            mine.append(table.c.status == OutboxStatus.PENDING)
        freed = {"lease_id": None} if until is None else {}
        session.execute(
            update(table).where(*mine).values(locked_until=until, **freed),
            [{"b_id": row.id, "b_lease": row.lease_id} for row in rows],
        )


def free_withdrawn(session: Session, rows: list[Claimed]) -> None:
    """Free this drain's lease on those of `rows` that were withdrawn (cancelled) while it held
    them, once it is done with them: the lease kept their subject's next message waiting. One
    the remote took all the same keeps the id it got there (`remote_id`, set by the answer), so
    what undoes it, a person's erasure, can find it."""
    if rows:
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table)
            .where(
                table.c.id == bindparam("b_id"),
                table.c.lease_id == bindparam("b_lease"),
                table.c.status != OutboxStatus.PENDING,
            )
            .values(
                locked_until=None,
                lease_id=None,
                remote_id=func.coalesce(bindparam("b_remote", type_=String), table.c.remote_id),
            ),
            [{"b_id": r.id, "b_lease": r.lease_id, "b_remote": r.remote_id} for r in rows],
        )


def keep_lease(session: Session, lease_id: str | None, until: datetime) -> None:
    """Extend to `until` the lease `lease_id` on the messages still under it (withdrawn ones
    too: they may be on their way); on PostgreSQL the ones a transaction is recording right now
    are skipped (they are done, or renewed with their group)."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    held = sa_select(table.c.id).where(table.c.lease_id == lease_id)
    if session.get_bind().dialect.name == "postgresql":
        held = held.with_for_update(skip_locked=True)
    session.execute(update(table).where(table.c.id.in_(held)).values(locked_until=until))


def keep(row: Claimed, **values: Any) -> None:
    """Set on a row a drain holds what the store now has (or is about to have, in the
    transaction at hand)."""
    for name, value in values.items():
        setattr(row, name, value)


def still_held(session: Session, rows: list[Claimed]) -> list[Claimed]:
    """The rows still pending under the lease this drain holds (`lease_id` names it; a drain
    that took a message over gave it a new one; on PostgreSQL the rows stay locked until the
    transaction ends)."""
    query = _held_query(session.get_bind().dialect.name)
    leases = {
        id_: lease
        for id_, lease, status in session.execute(query, {"b_ids": [row.id for row in rows]})
        if status == OutboxStatus.PENDING
    }
    return [row for row in rows if row.id in leases and leases[row.id] == row.lease_id]


@cache
def _held_query(dialect: str) -> Any:
    """Each message's lease and status, by id alone: with the status in the query, SQLite
    would read every pending message's index entry rather than look these up."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    query = sa_select(table.c.id, table.c.lease_id, table.c.status).where(
        table.c.id.in_(bindparam("b_ids", expanding=True))
    )
    return query.with_for_update() if dialect == "postgresql" else query


def worth_retrying_now(exc: BaseException) -> bool:
    """A passing failure of one message; not a service that is down or refuses our login."""
    return isinstance(exc, TransientError) and not isinstance(exc, UnavailableError | Deferred)


class wait_for_remote(wait_base):
    """Wait as long as the remote asked (`retry_after` of the error, from Retry-After), else
    as `fallback` says."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(exc, "retry_after", None)
        return float(after) if after is not None else float(self.fallback(retry_state))


def retrying(wait: wait_base | None) -> Retrying:
    """A few tries at once for a passing failure, as long apart as the remote asks."""
    return Retrying(
        retry=retry_if_exception(worth_retrying_now),
        stop=stop_after_attempt(3),
        wait=wait_for_remote(wait or wait_exponential_jitter(multiplier=0.5, max=5, jitter=0.5)),
        reraise=True,
    )


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4 ... minutes up to an hour, with jitter so retries do not arrive together."""
    minutes = min(60.0, 2.0 ** (attempts - 1))
    return timedelta(minutes=minutes * random.uniform(0.8, 1.2))

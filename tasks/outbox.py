"""The outbox: side effects written with the change behind them, delivered by a drain.

A message is claimed with a lease (so concurrent drains skip it), delivered, and completed in
its own transaction together with the change its delivery implies (`on_sent`). Transient
failures are retried a few times at once (tenacity) and then later with a growing delay;
permanent ones are parked as `dead` with the remote's message, ready to redrive.

A crash after the remote accepted a message but before its completion commits means the
message is delivered again once the lease ends; email carries a stable Message-ID so that
mail systems can recognise the repeat, and the mailbox folder simply rewrites the same file.
"""

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from integrations.errors import (
    IntegrationError,
    PermanentError,
    TransientError,
    UnavailableError,
)
from store.bulk import with_defaults
from store.db import transaction
from store.models import OutboxMessage, OutboxStatus

MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=5)

Deliver = Callable[[OutboxMessage], str | None]
# Several messages in one call: per message id, its remote id (sent) or the error that kept it.
DeliverBatch = Callable[[list[OutboxMessage]], Mapping[int, str | IntegrationError | None]]
# What delivered messages mean, recorded in the transaction that marks them sent.
OnSent = Callable[[Session, list[OutboxMessage], datetime], None]
OnDead = Callable[[Session, OutboxMessage, str, datetime], None]


class wait_for_remote(wait_base):
    """Wait as long as the remote asked (`retry_after` of the error, from Retry-After), else
    as `fallback` says."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(exc, "retry_after", None)
        return float(after) if after is not None else float(self.fallback(retry_state))


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


def claim(
    engine: Engine,
    *,
    channel: str,
    limit: int,
    now: datetime,
    destination: str | None = None,
    lease: timedelta = LEASE,
) -> list[OutboxMessage]:
    """Lease up to `limit` ready messages. On PostgreSQL, rows another drain holds are skipped;
    on SQLite the write lock taken up front makes drains take turns."""
    postgres = engine.dialect.name == "postgresql"
    with transaction(engine, take_turns=False) as session:
        query = (
            select(OutboxMessage)
            .where(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.channel == channel,
                col(OutboxMessage.available_at) <= now,
                or_(
                    col(OutboxMessage.locked_until).is_(None),
                    col(OutboxMessage.locked_until) < now,
                ),
            )
            .order_by(col(OutboxMessage.id))
            .limit(limit)
        )
        if destination is not None:
            query = query.where(OutboxMessage.destination == destination)
        if postgres:
            query = query.with_for_update(skip_locked=True)
        rows = list(session.exec(query))
        for row in rows:
            row.locked_until = now + lease
    return rows


@dataclass
class DrainReport:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: str | None = None

    def add(self, other: "DrainReport") -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.dead += other.dead
        self.errors += other.errors
        self.stopped = other.stopped or self.stopped


def worth_retrying_now(exc: BaseException) -> bool:
    """A passing failure of one message; not a service that is down or refuses our login."""
    return isinstance(exc, TransientError) and not isinstance(exc, UnavailableError)


def _retrying(wait: wait_base | None) -> Retrying:
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


def drain(
    engine: Engine,
    *,
    channel: str,
    deliver: Deliver,
    on_sent: OnSent,
    now: Callable[[], datetime],
    batch: int = 100,
    limit: int | None = None,
    wait: wait_base | None = None,
    on_dead: OnDead | None = None,
    repeat_safe: bool = False,
) -> DrainReport:
    """Deliver ready messages of `channel` until none are left (or `limit` were tried).
    `on_dead` records what a message given up on means, in the transaction that parks it.

    A sender whose repeat is harmless (a file rewritten under the same name) is `repeat_safe`:
    its messages are recorded a batch per transaction instead of one by one."""
    if repeat_safe:
        return drain_batches(
            engine, channel=channel, destination=None, deliver=each(deliver), batch=batch,
            now=now, on_dead=on_dead, on_sent=on_sent, limit=limit, wait=wait,
        )  # fmt: skip
    report = DrainReport()
    tried = 0
    while limit is None or tried < limit:
        size = batch if limit is None else min(batch, limit - tried)
        rows = claim(engine, channel=channel, limit=size, now=now())
        if not rows:
            break
        tried += len(rows)
        report.add(
            deliver_claimed(
                engine, rows, deliver=deliver, on_sent=on_sent, now=now, wait=wait, on_dead=on_dead
            )
        )
        if report.stopped:
            break
    return report


def deliver_claimed(
    engine: Engine,
    rows: list[OutboxMessage],
    *,
    deliver: Deliver,
    on_sent: OnSent,
    now: Callable[[], datetime],
    wait: wait_base | None = None,
    on_dead: OnDead | None = None,
) -> DrainReport:
    """Deliver messages this drain claimed, one by one, each only while its lease holds."""
    report = DrainReport()
    for index, row in enumerate(rows):
        outcome = _deliver_one(engine, row, deliver, on_sent, now, wait, on_dead)
        report.add(outcome)
        if outcome.stopped:
            _release(engine, rows[index:])
            break
    return report


def _held(row: OutboxMessage) -> Any:
    """The row, still pending and still under the lease this drain took (`locked_until` is the
    lease's token): another drain that took the row over after the lease ran out has changed it."""
    return and_(
        col(OutboxMessage.id) == row.id,
        col(OutboxMessage.status) == OutboxStatus.PENDING,
        col(OutboxMessage.locked_until) == row.locked_until,
    )


def _update_held(engine: Engine, row: OutboxMessage, **values: Any) -> bool:
    with transaction(engine, take_turns=False) as session:
        result = session.execute(update(OutboxMessage).where(_held(row)).values(**values))
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _deliver_one(
    engine: Engine,
    row: OutboxMessage,
    deliver: Deliver,
    on_sent: OnSent,
    now: Callable[[], datetime],
    wait: wait_base | None,
    on_dead: OnDead | None = None,
) -> DrainReport:
    # Renew the lease right before sending: a message whose lease ran out while earlier ones
    # were slow to send may have been taken by another drain, and then this one leaves it.
    lease = now() + LEASE
    if not _update_held(engine, row, locked_until=lease):
        return DrainReport()
    row.locked_until = lease
    retrying = _retrying(wait)
    who = f"message {row.id} to {row.payload.get('to') or row.destination}"
    try:
        remote_id = retrying(deliver, row)
    except UnavailableError as exc:
        # The service is down or refuses our login: no fault of this message. It is released
        # with the rest of the pass, its attempts untouched.
        return DrainReport(errors=[f"{row.destination}: {exc}"], stopped=str(exc))
    except PermanentError as exc:
        _fail(engine, row, f"{exc}", now(), dead=True, on_dead=on_dead)
        return DrainReport(dead=1, errors=[f"{who}: {exc}"])
    except TransientError as exc:
        dead = row.attempts + 1 >= MAX_ATTEMPTS
        later = timedelta(seconds=exc.retry_after or 0)
        _fail(engine, row, f"{exc}", now(), dead=dead, on_dead=on_dead, not_before=later)
        return DrainReport(
            retrying=0 if dead else 1, dead=1 if dead else 0, errors=[f"{who}: {exc}"]
        )
    with transaction(engine) as session:
        at = now()
        done = session.execute(
            update(OutboxMessage)
            .where(_held(row))
            .values(
                status=OutboxStatus.SENT,
                sent_at=at,
                remote_id=remote_id,
                attempts=row.attempts + 1,
                locked_until=None,
                last_error=None,
            )
        )
        if done.rowcount:  # type: ignore[attr-defined]
            on_sent(session, [row], at)
    return DrainReport(sent=1)


def _fail(
    engine: Engine,
    row: OutboxMessage,
    error: str,
    at: datetime,
    *,
    dead: bool,
    on_dead: OnDead | None = None,
    not_before: timedelta = timedelta(0),
) -> None:
    values = _failure(row, error, at, dead=dead, not_before=not_before)
    with transaction(engine, take_turns=False) as session:
        result = session.execute(update(OutboxMessage).where(_held(row)).values(**values))
        if dead and on_dead is not None and result.rowcount:  # type: ignore[attr-defined]
            on_dead(session, row, error, at)


def _failure(
    row: OutboxMessage, error: str, at: datetime, *, dead: bool, not_before: timedelta
) -> dict[str, Any]:
    """A failed try's column values: parked as dead, or back in the queue after a growing
    delay (at least as long as the remote asked)."""
    attempts = row.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_error": error[:1000],
        "locked_until": None,
    }
    if dead:
        values["status"] = OutboxStatus.DEAD
    else:
        values["available_at"] = at + max(retry_delay(attempts), not_before)
    return values


def each(deliver: Deliver) -> DeliverBatch:
    """A batch sender made of a one-message sender: each message's failure is its own."""

    def send_all(rows: list[OutboxMessage]) -> dict[int, str | IntegrationError | None]:
        results: dict[int, str | IntegrationError | None] = {}
        for row in rows:
            try:
                results[row.id or 0] = deliver(row)
            except UnavailableError:
                raise
            except IntegrationError as exc:
                results[row.id or 0] = exc
        return results

    return send_all


def drain_batches(
    engine: Engine,
    *,
    channel: str,
    destination: str | None,
    deliver: DeliverBatch,
    batch: int,
    now: Callable[[], datetime],
    on_dead: OnDead | None = None,
    on_sent: OnSent | None = None,
    limit: int | None = None,
    lease: timedelta = LEASE,
    wait: wait_base | None = None,
    progress: Callable[[DrainReport], None] | None = None,
) -> DrainReport:
    """Deliver the ready messages of one destination `batch` at a time, for remotes that take
    many in one call and answer per message. A batch the remote refuses as a whole is tried
    message by message, so one bad message does not hold back the others."""
    report = DrainReport()
    tried = 0
    while limit is None or tried < limit:
        size = batch if limit is None else min(batch, limit - tried)
        rows = claim(
            engine, channel=channel, destination=destination, limit=size, now=now(), lease=lease
        )
        if not rows:
            break
        tried += len(rows)
        report.add(_deliver_batch(engine, rows, deliver, now, lease, wait, on_dead, on_sent))
        if progress is not None:
            progress(report)
        if report.stopped:
            break
    return report


def _deliver_batch(
    engine: Engine,
    rows: list[OutboxMessage],
    deliver: DeliverBatch,
    now: Callable[[], datetime],
    lease: timedelta,
    wait: wait_base | None,
    on_dead: OnDead | None,
    on_sent: OnSent | None = None,
) -> DrainReport:
    rows = _renew(engine, rows, now() + lease)
    if not rows:
        return DrainReport()
    retrying = _retrying(wait)
    results: Mapping[int, str | IntegrationError | None]
    try:
        results = retrying(deliver, rows)
    except UnavailableError as exc:
        _release(engine, rows)
        return DrainReport(errors=[f"{rows[0].destination}: {exc}"], stopped=str(exc))
    except PermanentError as exc:
        if len(rows) == 1:
            results = {rows[0].id or 0: exc}
        else:
            report = DrainReport()
            for index, row in enumerate(rows):
                report.add(
                    _deliver_batch(engine, [row], deliver, now, lease, wait, on_dead, on_sent)
                )
                if report.stopped:
                    _release(engine, rows[index + 1 :])
                    break
            return report
    except TransientError as exc:
        results = {row.id or 0: exc for row in rows}
    return _complete(engine, rows, results, now(), on_dead, on_sent)


def _renew(engine: Engine, rows: list[OutboxMessage], lease: datetime) -> list[OutboxMessage]:
    """Extend this drain's lease right before sending; rows another drain took over after the
    lease ran out are dropped from the batch."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    with transaction(engine, take_turns=False) as session:
        held = _still_held(session, rows)
        if held:
            session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.locked_until == bindparam("b_old"))
                .values(locked_until=lease),
                [{"b_id": row.id, "b_old": row.locked_until} for row in held],
            )
    for row in held:
        row.locked_until = lease
    return held


def _still_held(session: Session, rows: list[OutboxMessage]) -> list[OutboxMessage]:
    """The rows still pending under the lease this drain holds (locked, on PostgreSQL, until
    the transaction ends)."""
    query = select(OutboxMessage.id, OutboxMessage.locked_until).where(
        col(OutboxMessage.id).in_([row.id for row in rows]),
        OutboxMessage.status == OutboxStatus.PENDING,
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    leases = dict(session.exec(query).all())
    return [row for row in rows if row.id in leases and leases[row.id] == row.locked_until]


def _complete(
    engine: Engine,
    rows: list[OutboxMessage],
    results: Mapping[int, str | IntegrationError | None],
    at: datetime,
    on_dead: OnDead | None,
    on_sent: OnSent | None = None,
) -> DrainReport:
    """Record a batch's outcomes in one transaction: the sent rows in one statement."""
    report = DrainReport()
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    with transaction(engine, take_turns=False) as session:
        held = _still_held(session, rows)
        sent = [
            r for r in held if not isinstance(results.get(r.id or 0, _NO_ANSWER), IntegrationError)
        ]
        if sent:
            session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(
                    status=OutboxStatus.SENT,
                    sent_at=at,
                    remote_id=bindparam("b_remote"),
                    attempts=bindparam("b_attempts"),
                    locked_until=None,
                    last_error=None,
                ),
                [
                    {"b_id": r.id, "b_remote": results.get(r.id or 0), "b_attempts": r.attempts + 1}
                    for r in sent
                ],
            )
            report.sent = len(sent)
            if on_sent is not None:
                on_sent(session, sent, at)
        for row in held:
            result = results.get(row.id or 0, _NO_ANSWER)
            if not isinstance(result, IntegrationError):
                continue
            dead = isinstance(result, PermanentError) or row.attempts + 1 >= MAX_ATTEMPTS
            later = timedelta(seconds=getattr(result, "retry_after", None) or 0)
            values = _failure(row, str(result), at, dead=dead, not_before=later)
            report.errors.append(f"message {row.id}: {result}")
            if dead:
                report.dead += 1
                if on_dead is not None:
                    on_dead(session, row, str(result), at)
            else:
                report.retrying += 1
            session.execute(update(table).where(table.c.id == row.id).values(**values))
    return report


_NO_ANSWER = TransientError("no answer for this message")


def _release(engine: Engine, rows: list[OutboxMessage]) -> None:
    for row in rows:
        _update_held(engine, row, locked_until=None)


def cancel(session: Session, ids: Sequence[int], reason: str) -> int:
    """Withdraw pending messages (a newer one replaces them); one being sent right now is left
    to its drain, which finds the message no longer pending only if it has not sent it yet."""
    if not ids:
        return 0
    result = session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(ids), col(OutboxMessage.status) == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED, last_error=reason, locked_until=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]

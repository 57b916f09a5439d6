"""Draining the outbox: ready messages claimed with a lease and delivered in groups: one message
per call for senders that take one at a time (SMTP, TikTok, SMS), the whole claimed batch per
call for remotes that take many and for senders whose repeat is harmless (the mailbox folder,
the local JSON folder). Each group's lease is renewed before it is sent (which finds a message
withdrawn meanwhile), unless it is a batch taken moments ago; its outcomes are recorded, for
the messages this drain still holds, in one transaction with the change they imply (a
`Handler`). Transient failures are retried a few times
at once (tenacity), then later with a growing delay; permanent ones are parked as `dead` with
the remote's message, ready to redrive; a service that is unavailable stops the pass and leaves
the rest as they were. A drain may work in several lanes at once, each a drain of its own on a
thread, for a remote whose answers are slow.

A crash loses nothing: what a crashed drain had claimed is taken again once its lease ends. The
lease is short (`LEASE`) and kept alive while the drain works (`LeaseKeeper`), so a drain that
dies frees its messages within one lease while a slow send is never taken over. A message the
remote accepted just before a crash, before its completion committed, is delivered a second
time, the one repeat allowed: email carries a stable
Message-ID so that mail systems recognise it, the folders rewrite the same file, and a lead
upsert finds the person it made.
"""

import contextvars
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Engine, bindparam, text, update
from sqlmodel import Session, col
from tenacity.wait import wait_base

from integrations.errors import (
    Deferred,
    IntegrationError,
    PermanentError,
    TransientError,
    UnavailableError,
)
from store.db import transaction
from store.models import OutboxMessage, OutboxStatus
from store.types import sqlite_time
from tasks.outbox import (
    LEASE,
    MAX_ATTEMPTS,
    Claimed,
    claim,
    free_withdrawn,
    keep,
    keep_lease,
    release,
    renew,
    retry_delay,
    retrying,
    still_held,
    up_to_date,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """A message sent, answered with more than the remote's id: what the remote said of the
    message's subject (a lead's subscription status there), kept as its `remote_state`."""

    remote_id: str | None
    state: Mapping[str, Any]


# A message's answer: its remote id (sent), more (`Delivered`), or the error that kept it.
Answer = str | Delivered | IntegrationError | None
Deliver = Callable[[Claimed], str | None]
# Several messages in one call, answered per message id.
DeliverBatch = Callable[[list[Claimed]], Mapping[int, Answer]]
# What delivered messages mean, recorded in the transaction that marks them sent.
OnSent = Callable[[Session, list[Claimed], datetime], None]
# What a message given up on means, recorded in the transaction that parks it.
OnDead = Callable[[Session, Claimed, str, datetime], None]


@dataclass(frozen=True)
class Handler:
    """What the outcome of a kind of message means in the store: `sent` for messages delivered,
    `dead` for one given up on, each run in the transaction that marks them. That transaction
    takes turns with other changes (`store.db.transaction`) unless `take_turns` is off, for a
    handler that only reads and adds to the audit log (which keeps its own order)."""

    sent: OnSent | None = None
    dead: OnDead | None = None
    take_turns: bool = True


@dataclass(frozen=True)
class Sender:
    """How a drain hands messages to a remote: `deliver` takes a group and answers per message;
    a group is the `whole_batch` a drain claimed, else one message."""

    deliver: DeliverBatch
    whole_batch: bool = True


def one_at_a_time(deliver: Deliver) -> Sender:
    """A sender of one message per call (SMTP, TikTok, SMS): each message is renewed, sent and
    completed on its own, so a crash repeats at most the one in flight."""

    def deliver_one(rows: list[Claimed]) -> dict[int, Answer]:
        [row] = rows
        return {row.id or 0: deliver(row)}

    return Sender(deliver_one, whole_batch=False)


def repeat_safe(deliver: Deliver) -> Sender:
    """A sender whose repeat is harmless (a file rewritten under the same name): a claimed batch
    is sent in one go and recorded in one transaction, each message's failure its own."""

    def send_all(rows: list[Claimed]) -> dict[int, Answer]:
        answers: dict[int, Answer] = {}
        for row in rows:
            try:
                answers[row.id or 0] = deliver(row)
            except UnavailableError:
                raise
            except IntegrationError as exc:
                answers[row.id or 0] = exc
        return answers

    return Sender(send_all)


@dataclass
class DrainReport:
    """What a drain did: messages sent, back in the queue, dead; why it stopped, if it did."""

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


def drain(
    engine: Engine,
    *,
    channel: str,
    sender: Sender,
    now: Callable[[], datetime],
    destination: str | None = None,
    batch: int = 100,
    limit: int | None = None,
    lease: timedelta = LEASE,
    wait: wait_base | None = None,
    handler: Handler = Handler(),
    progress: Callable[[DrainReport], None] | None = None,
    lanes: int = 1,
) -> DrainReport:
    """Deliver the ready messages of `channel` (and `destination`, if given), `batch` claimed at
    a time, until none are left, `limit` were tried, or the service is unavailable. `wait` paces
    the tries at once of a passing failure; `progress` hears the report after each batch.

    `lanes` batches go at once, each claimed, sent and recorded by a thread of its own as one
    drain would: for a remote far away, whose answers take longer than Rally's own work on a
    batch, one call at a time would leave most of its rate limit unused. A lane that finds the
    service unavailable stops the others (each finishes the batch in hand); so does an error,
    or the drain being interrupted. One subject's messages (a person's) go one batch after the
    other, whichever lane or drain took them: a claim passes over a subject another holds."""
    report = DrainReport()
    up_to_date(engine, channel=channel, destination=destination)
    tries = _Tries(limit)
    lock = threading.Lock()  # over `report`, and `progress` hears one batch at a time
    stop = threading.Event()

    def lane(keeper: LeaseKeeper) -> None:
        while not stop.is_set():
            size = tries.take(batch)
            if not size:
                return
            rows = claim(
                engine,
                channel=channel,
                destination=destination,
                limit=size,
                now=now(),
                lease=lease,
                one_per_subject=True,
            )
            tries.give_back(size - len(rows))
            if not rows:
                return
            keeper.hold(rows[0].lease_id)
            try:
                outcome = deliver_claimed(
                    engine, rows, sender=sender, now=now, lease=lease, wait=wait, handler=handler
                )
            finally:
                keeper.drop(rows[0].lease_id)
            with lock:
                report.add(outcome)
                if progress is not None:
                    progress(report)
            if outcome.stopped:
                stop.set()

    with LeaseKeeper(engine, lease=lease, now=now) as keeper:
        if lanes <= 1:
            lane(keeper)
            return report

        def guarded() -> None:
            try:
                lane(keeper)
            except BaseException:
                stop.set()  # the other lanes finish their batch and end
                raise

        pool = ThreadPoolExecutor(lanes, thread_name_prefix="outbox-lane")
        try:
            # each lane in a copy of this context: a flow's run context, its logger
            running = [pool.submit(contextvars.copy_context().run, guarded) for _ in range(lanes)]
            futures.wait(running)
        finally:  # interrupted (Ctrl-C): the lanes end with the batch in hand, leases kept alive
            stop.set()
            pool.shutdown(wait=True)
    failed = [error for done in running if (error := done.exception()) is not None]
    for error in failed[1:]:
        log.error("another lane of the drain failed as well", exc_info=error)
    if failed:
        raise failed[0]  # a lane's error is the drain's
    return report


class _Tries:
    """How many more messages a drain may try (`limit`, or no end), shared by its lanes: each
    takes up to a batch before it claims, and gives back what the claim did not find."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit
        self._lock = threading.Lock()

    def take(self, batch: int) -> int:
        with self._lock:
            if self.left is None:
                return batch
            size = min(batch, self.left)
            self.left -= size
            return size

    def give_back(self, count: int) -> None:
        with self._lock:
            if self.left is not None:
                self.left += count


class LeaseKeeper:
    """Keeps the drain's leases on the messages it took alive while it works on them: every
    third of the lease, those still pending under a lease its lanes hold (the batches at hand;
    renewing leaves the ids as they are) are renewed from a thread of their own, even while one
    slow send blocks the drain."""

    def __init__(self, engine: Engine, *, lease: timedelta, now: Callable[[], datetime]) -> None:
        self.engine, self.lease, self.now = engine, lease, now
        self._held: set[str | None] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="outbox-lease", daemon=True)

    def hold(self, lease_id: str | None) -> None:
        with self._lock:
            self._held.add(lease_id)

    def drop(self, lease_id: str | None) -> None:
        with self._lock:
            self._held.discard(lease_id)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _keep(self) -> None:
        while not self._done.wait(self.lease.total_seconds() / 3):
            with self._lock:
                held = sorted(lease for lease in self._held if lease is not None)
            for lease_id in held:
                try:
                    with transaction(self.engine, take_turns=False) as session:
                        keep_lease(session, lease_id, self.now() + self.lease)
                except Exception:  # the lease then runs out, and another drain takes over
                    log.warning("renewing the outbox lease failed", exc_info=True)


def deliver_claimed(
    engine: Engine,
    rows: list[Claimed],
    *,
    sender: Sender,
    now: Callable[[], datetime],
    lease: timedelta = LEASE,
    wait: wait_base | None = None,
    handler: Handler = Handler(),
) -> DrainReport:
    """Deliver messages this drain claimed, a group at a time (one message, or all of them), each
    group only while its lease holds. A stopped pass releases the groups it did not reach."""
    report = DrainReport()
    size = max(1, len(rows)) if sender.whole_batch else 1
    for start in range(0, len(rows), size):
        outcome = _deliver_group(
            engine, rows[start : start + size], sender, now, lease, wait, handler
        )
        report.add(outcome)
        if outcome.stopped:
            release(engine, rows[start + size :])
            break
    return report


def _deliver_group(
    engine: Engine,
    rows: list[Claimed],
    sender: Sender,
    now: Callable[[], datetime],
    lease: timedelta,
    wait: wait_base | None,
    handler: Handler,
) -> DrainReport:
    """Renew a group's lease, send it, and record what the remote answered. A service that is
    unavailable stops the pass and releases the group untouched; a group refused as a whole is
    tried message by message, so one bad message does not hold back the others."""
    # A message whose lease ran out while earlier ones were slow to send may have been taken by
    # another drain; then this one leaves it. A lease taken less than a third of it ago cannot
    # have run out (and `LeaseKeeper` keeps it alive): such a batch goes as it is. A message
    # sent on its own (a text, a DM, an email: to a person) is always checked once more right
    # before it goes, since an opt-out or an erasure may have withdrawn it since the claim.
    at = now()
    fresh = all(row.locked_until and row.locked_until - at >= lease * 2 / 3 for row in rows)
    if not (sender.whole_batch and fresh):
        rows = renew(engine, rows, at + lease)
        if not rows:
            return DrainReport()
    try:
        answers = retrying(wait)(sender.deliver, rows)
    except IntegrationError as exc:
        verdict = classify(exc, call=len(rows))
        if verdict is Verdict.STOP:
            release(engine, rows)
            return DrainReport(errors=[f"{rows[0].destination}: {exc}"], stopped=str(exc))
        if verdict is Verdict.ONE_BY_ONE:
            singly = Sender(sender.deliver, whole_batch=False)
            return deliver_claimed(
                engine,
                rows,
                sender=singly,
                now=now,
                lease=lease,
                wait=wait,
                handler=handler,
            )
        answers = {row.id or 0: exc for row in rows}
    return record_outcomes(engine, rows, answers, at=now(), handler=handler)


class Verdict(StrEnum):
    """What a failure means for the messages it kept."""

    STOP = "stop"  # the service is down or refuses our login: no fault of these messages
    ONE_BY_ONE = "one by one"  # a group refused as a whole: find the message at fault
    DEAD = "dead"  # never deliverable as it is, or out of attempts
    RETRY = "retry"  # later, after a growing delay


def classify(error: IntegrationError, *, attempts: int = 0, call: int = 0) -> Verdict:
    """What `error` means. `call` is how many messages the call that raised it carried (0 for an
    error the remote answered for one message, tried `attempts` times before): an error raised
    by a call that neither stops the pass nor splits the group is each message's answer."""
    if call and isinstance(error, UnavailableError):
        return Verdict.STOP
    if isinstance(error, Deferred):
        return Verdict.RETRY
    if isinstance(error, PermanentError):
        return Verdict.ONE_BY_ONE if call > 1 else Verdict.DEAD
    return Verdict.DEAD if attempts + 1 >= MAX_ATTEMPTS else Verdict.RETRY


def record_outcomes(
    engine: Engine,
    rows: list[Claimed],
    answers: Mapping[int, Answer],
    *,
    at: datetime,
    handler: Handler = Handler(),
) -> DrainReport:
    """Mark the messages this drain still holds sent, back in the queue or dead, as the remote
    answered, in one transaction with what that means in the store (`handler`). A message the
    remote did not answer for is tried again."""
    report = DrainReport()
    outcomes = {row.id: answers.get(row.id, _NO_ANSWER) for row in rows}
    delivered = [row for row in rows if not isinstance(outcomes[row.id], IntegrationError)]
    for row in delivered:  # what the remote said, for the handler (a Message-ID, say)
        answer = outcomes[row.id]
        if isinstance(answer, Delivered):
            keep(row, remote_id=answer.remote_id, remote_state=dict(answer.state) or None)
        elif answer is not None:
            keep(row, remote_id=str(answer))
    failed = [row for row in rows if isinstance(outcomes[row.id], IntegrationError)]
    # A handler changes the store beyond these rows, so it takes turns with other changes.
    changes = handler.take_turns and (handler.sent is not None or handler.dead is not None)
    with transaction(engine, take_turns=changes) as session:
        sent = _mark_sent(session, delivered, at)
        if sent and handler.sent is not None:
            handler.sent(session, sent, at)
        for row in still_held(session, failed) if failed else []:
            error = outcomes[row.id]
            if isinstance(error, IntegrationError):
                report.add(_mark_failed(session, row, error, at, handler))
        if len(sent) < len(rows):
            free_withdrawn(session, rows)
    report.sent = len(sent)
    return report


_NO_ANSWER = TransientError("no answer for this message")


def _mark_sent(session: Session, rows: list[Claimed], at: datetime) -> list[Claimed]:
    """Mark sent, with the remote's id and state the rows now carry, the rows still pending
    under this drain's lease, and return them, in statements that check each row's lease and
    write it once (on PostgreSQL it locks them as a check apart would): one for the whole
    batch on PostgreSQL (its rows as arrays), one per 250 rows on SQLite."""
    states = [None if row.remote_state is None else json.dumps(row.remote_state) for row in rows]
    if session.get_bind().dialect.name == "postgresql":
        values: dict[str, Any] = {
            "b_at": at,
            "ids": [row.id for row in rows],
            "leases": [row.lease_id for row in rows],
            "remote_ids": [row.remote_id for row in rows],
            "states": states,
        }
        held = {id_ for (id_,) in session.execute(_sending_arrays(), values)}
        return [row for row in rows if row.id in held]
    held = set()
    sent_at = sqlite_time(at)
    connection = session.connection()
    for start in range(0, len(rows), 250):
        part = rows[start : start + 250]
        params: list[Any] = [sent_at]
        for i, row in enumerate(part):
            params += (row.id, row.lease_id, row.remote_id, states[start + i])
        statement = _sending(len(part))
        held.update(id_ for (id_,) in connection.exec_driver_sql(statement, tuple(params)))
    return [row for row in rows if row.id in held]


# `_mark_sent`'s statement, around its rows as `v` (id, lease, remote id, remote state).
_SENT = (
    f"UPDATE outbox SET status = '{OutboxStatus.SENT.value}', sent_at = :b_at, "
    "attempts = outbox.attempts + 1, locked_until = NULL, lease_id = NULL, last_error = NULL, "
    "remote_id = v.{remote_id}, remote_state = v.{remote_state} FROM {rows} "
    "WHERE outbox.id = v.{id} AND outbox.lease_id = v.{lease} "
    f"AND outbox.status = '{OutboxStatus.PENDING.value}' RETURNING outbox.id"
)


@cache
def _sending(count: int) -> str:
    """`_mark_sent`'s statement for `count` rows on SQLite, for the driver itself: a batch
    of a hundred rows is four hundred values, which SQLAlchemy's own handling of each would
    cost more than the update."""
    rows = ", ".join(["(?, ?, ?, ?)"] * count)
    return _SENT.replace(":b_at", "?").format(
        rows=f"(VALUES {rows}) AS v",
        id="column1",
        lease="column2",
        remote_id="column3",
        remote_state="column4",
    )


@cache
def _sending_arrays() -> Any:
    """`_mark_sent`'s statement on PostgreSQL: the same text for every batch (so it is
    prepared once), which joins its rows to the outbox by primary key whatever the
    statistics say."""
    rows = (
        "unnest(CAST(:ids AS integer[]), CAST(:leases AS text[]), "
        "CAST(:remote_ids AS text[]), CAST(:states AS json[])) "
        "AS v(id, lease_id, remote_id, remote_state)"
    )
    sql = _SENT.format(
        rows=rows, id="id", lease="lease_id", remote_id="remote_id", remote_state="remote_state"
    )
    return text(sql).bindparams(bindparam("b_at", type_=_table.c.sent_at.type))


_table = OutboxMessage.__table__  # type: ignore[attr-defined]


def _mark_failed(
    session: Session, row: Claimed, error: IntegrationError, at: datetime, handler: Handler
) -> DrainReport:
    """Park a failed message as dead (with what that means, `handler.dead`), or put it back
    after a growing delay at least as long as the remote asked (Retry-After); one deferred
    goes back for as long as it was told, without counting a try."""
    dead = classify(error, attempts=row.attempts) is Verdict.DEAD
    deferred = isinstance(error, Deferred)
    values: dict[str, Any] = {
        "attempts": row.attempts + (0 if deferred else 1),
        "last_error": str(error)[:1000],
        "locked_until": None,
        "lease_id": None,
    }
    if dead:
        values["status"] = OutboxStatus.DEAD
    else:
        asked = timedelta(seconds=getattr(error, "retry_after", None) or 0)
        values["available_at"] = at + (
            asked if deferred else max(retry_delay(row.attempts + 1), asked)
        )
    session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id).values(**values))
    if dead and handler.dead is not None:
        handler.dead(session, row, str(error), at)
    to = f" to {row.payload['to']}" if row.payload.get("to") else ""
    return DrainReport(
        retrying=int(not dead), dead=int(dead), errors=[f"message {row.id}{to}: {error}"]
    )

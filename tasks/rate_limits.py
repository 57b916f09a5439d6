"""A remote account's rate limit shared through the store, so that every process syncing to one
account (workers on many machines, two `rally serve`s on one store) stays within it together.

The account's row (`RateWindow`) keeps the slots granted in its window: how many stop counting
when, on the store's clock. A process takes slots a batch at a time in a short transaction on
that row alone (locked: FOR UPDATE on PostgreSQL, the write lock on SQLite), spends them without
asking again, and on its next visit says when each spent one was answered (from then it counts,
as `RateLimit` counts a call) and gives back the rest:

- a slot granted at `at` may be spent until `at + hold`; until its holder says when it was
  answered, it counts until `at + hold + window`, and from then on as it was answered (a call
  still unanswered when its holder visits, another thread's, keeps counting so until the
  holder's first visit after its answer, and from then on as it was answered: the remote may
  count it from any moment until then);
- a slot is granted only while fewer than `requests` count, so no window ever holds more than
  `requests` calls, whichever process made them and whenever within their hold;
- so a crashed process's unspent slots count for at most `hold + window`.

A process asks for twice what it spent of its last grant (at most a quarter of the limit), so a
sync sending hundreds of requests a second visits the row about once per hold, and a slow one
holds few slots that others could use. A pause the remote asked for (a 429's Retry-After) is
kept in the row as well, and every process waits it out.

The same rows count what strangers may do a few times only (signups per network address, per
email), one use at a time (`admit`), in the transaction of the use itself; such rows go once
idle (`forget_idle`).
"""

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from integrations.crm import RateLimit
from store.db import transaction
from store.models import RateWindow

BUCKETS = 512  # slots are grouped by when they end, rounded up to a 512th of the window


@dataclass(frozen=True)
class Grant:
    """Slots granted at `at` (seconds on the store's clock), kept under `key` (when they stop
    counting, in ms); when `count` is 0, `wait` is how long until one may be granted."""

    at: float
    key: int
    count: int
    wait: float = 0.0


@dataclass(frozen=True)
class Spent:
    """What became of a grant: its `key` and `count`, and when each spent slot stops counting
    (seconds on the store's clock: when it was spent, at the latest, plus the window)."""

    key: int
    count: int
    ends: Sequence[float]


def grant(
    slots: list[list[int]],
    *,
    now: float,
    requests: int,
    window: float,
    hold: float,
    want: int,
    spent: Sequence[Spent] = (),
) -> tuple[list[list[int]], Grant]:
    """The window's slots after `spent` is accounted for and up to `want` slots are granted at
    `now`, and the grant. Ends are rounded up to a `BUCKETS`th of the window, never down."""
    step = max(1, math.ceil(window * 1000 / BUCKETS))

    def bucket(seconds: float) -> int:
        return -(-math.ceil(seconds * 1000) // step) * step

    now_ms = now * 1000
    ends: Counter[int] = Counter({end: count for end, count in slots if end > now_ms})
    for each in spent:
        if each.key in ends:  # else its grant stopped counting: nothing left to give back
            ends[each.key] -= each.count
        ends.update(bucket(end) for end in each.ends if end * 1000 > now_ms)
    ends = +ends  # drops what was given back
    free = requests - sum(ends.values())
    count = min(want, free)
    if count > 0:
        key = bucket(now + hold + window)
        ends[key] += count
        made = Grant(at=now, key=key, count=count)
    else:
        wait = (min(ends) - now_ms) / 1000 if free <= 0 else 0.0
        made = Grant(at=now, key=0, count=0, wait=wait)
    return sorted([end, count] for end, count in ends.items()), made


def _store_time(session: Session) -> float:
    """Seconds on the clock every process shares: PostgreSQL's, or for a SQLite store (whose
    processes share one machine) the machine's."""
    if session.get_bind().dialect.name == "postgresql":
        return float(
            session.execute(
                text("SELECT extract(epoch FROM clock_timestamp())::float8")
            ).scalar_one()
        )
    return time.time()


def _locked(session: Session, kind: str, account: str) -> RateWindow:
    """The account's row, made if new, locked until the transaction ends."""
    row = session.get(RateWindow, (kind, account), with_for_update=True)
    if row is None:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(
            dialect.insert(RateWindow)
            .values(kind=kind, account=account, slots=[], paused_until=0.0, idle_at=0.0)
            .on_conflict_do_nothing()
        )
        row = session.get(RateWindow, (kind, account), with_for_update=True)
        assert row is not None
    return row


def _idle_at(row: RateWindow) -> float:
    """When the row holds nothing any more: its last slot has stopped counting and its pause
    has ended (seconds on the store's clock)."""
    last = max((end for end, _ in row.slots), default=0) / 1000
    return max(last, row.paused_until)


def admit(session: Session, kind: str, account: str, *, requests: int, window: float) -> float:
    """Count one use by `account` against at most `requests` uses per `window` seconds, in the
    caller's transaction (which holds the account's row until it ends, so uses counted by
    other processes at the same moment are counted one after the other): 0.0 when the use is
    admitted, else the seconds until one would be."""
    row = _locked(session, kind, account)
    now = _store_time(session)
    row.slots, made = grant(row.slots, now=now, requests=requests, window=window, hold=0.0, want=1)
    row.idle_at = _idle_at(row)
    return 0.0 if made.count else max(made.wait, 0.001)


def forget_idle(session: Session, kind: str) -> None:
    """Delete the rows of `kind` that hold nothing any more (by their `idle_at`)."""
    table = RateWindow.__table__  # type: ignore[attr-defined]
    session.execute(
        delete(table).where(table.c.kind == kind, table.c.idle_at < _store_time(session))
    )


def take(
    engine: Engine,
    kind: str,
    account: str,
    *,
    requests: int,
    window: float,
    hold: float,
    want: int,
    spent: Sequence[Spent] = (),
) -> Grant:
    """Account for `spent` and grant up to `want` slots (none while the account is paused), in
    one short transaction that never waits behind other changes."""
    with transaction(engine, take_turns=False) as session:
        row = _locked(session, kind, account)
        now = _store_time(session)
        paused = row.paused_until - now
        row.slots, made = grant(
            row.slots,
            now=now,
            requests=requests,
            window=window,
            hold=hold,
            want=want if paused <= 0 else 0,
            spent=spent,
        )
        row.idle_at = _idle_at(row)
        return made if paused <= 0 else Grant(at=now, key=0, count=0, wait=paused)


def pause(engine: Engine, kind: str, account: str, seconds: float) -> None:
    """No slot of the account is granted for `seconds` from now, to any process."""
    with transaction(engine, take_turns=False) as session:
        row = _locked(session, kind, account)
        row.paused_until = max(row.paused_until, _store_time(session) + max(seconds, 0.0))
        row.idle_at = _idle_at(row)


class SharedRateLimit(RateLimit):
    """A `RateLimit` for one remote account that every process on the store shares; connectors
    call `acquire` and `pause` as ever. A slot may wait `hold` (a tenth of `per`) to be spent;
    `release` gives back the unspent ones at once, for a sync that is done."""

    def __init__(
        self,
        engine: Engine,
        kind: str,
        account: str,
        requests: int,
        per: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(requests, per, clock=clock, sleep=sleep)
        self.engine, self.kind, self.account = engine, kind, account
        self.hold = per / 10
        self.most = max(1, requests // 4)
        self.visits = 0  # transactions on the account's row
        self._want = 1
        self._grant = Grant(at=0.0, key=0, count=0)
        self._asked = 0.0  # the local clock just before the grant was asked for
        self._after: list[float] = []  # when each slot of it counts from, after `_asked`
        self._slots: dict[int, int] = {}  # ticket -> its slot's place in `_after`, unanswered
        # ticket -> an earlier grant and when it was asked for, of a call unanswered at its report
        self._flying: dict[int, tuple[Grant, float]] = {}
        self._late: list[Spent] = []  # those calls answered since, for the next visit to report

    def acquire(self) -> int:
        """Wait until one more call may go, and count it from now (from its answer, once
        `answered` is told)."""
        while True:
            with self._lock:
                now = self.clock()
                wait = self._paused_until - now
                if wait <= 0:
                    after = now - self._asked
                    if len(self._after) < self._grant.count and after < self.hold:
                        ticket = next(self._tickets)
                        self._slots[ticket] = len(self._after)
                        self._after.append(after)
                        return ticket
                    wait = self._visit()
            if wait > 0:
                self.waited += wait
                self.sleep(wait)

    def answered(self, ticket: int) -> None:
        """The call of `ticket` was answered: its slot counts from now."""
        with self._lock:
            now = self.clock()
            place = self._slots.pop(ticket, None)
            if place is not None:
                self._after[place] = now - self._asked
            elif ticket in self._flying:
                earlier, asked = self._flying.pop(ticket)
                self._late.append(Spent(earlier.key, 1, [earlier.at + now - asked + self.window]))

    def pause(self, seconds: float) -> None:
        """The server asked for a pause: this process and every other one wait it out."""
        super().pause(seconds)
        pause(self.engine, self.kind, self.account, seconds)

    def release(self) -> None:
        """Say what became of the last grant, giving back what is unspent."""
        with self._lock:
            if self._grant.count or self._late:
                self._visit(want=0)

    def _visit(self, want: int | None = None) -> float:
        """Account for the last grant and take the next (under the lock): how long to wait when
        none is granted, else 0."""
        spent = list(self._late)
        if self._grant.count:
            # The grant was asked for at `_asked` on this clock, at `at` or earlier on the
            # store's: so each slot's call was answered at most `after` past `at`. A call still
            # in flight (another thread's) keeps its slot as granted until a visit after its
            # answer says when that was: the remote may not have seen it yet.
            flying = set(self._slots.values())
            ends = [
                self._grant.at + after + self.window
                for i, after in enumerate(self._after)
                if i not in flying
            ]
            spent.append(Spent(self._grant.key, self._grant.count - len(flying), ends))
            self._want = max(1, min(self.most, 2 * len(self._after)))
        asked = self.clock()
        made = take(
            self.engine,
            self.kind,
            self.account,
            requests=self.requests,
            window=self.window,
            hold=self.hold,
            want=self._want if want is None else want,
            spent=spent,
        )
        # Reported: from here on the grant's calls still in flight are reported when answered.
        self._flying.update((ticket, (self._grant, self._asked)) for ticket in self._slots)
        self._late, self._after, self._slots = [], [], {}
        self._grant, self._asked = made, asked
        self.visits += 1
        if self._grant.count:
            return 0.0
        # Visit again after at most a hold: slots given back or spent early free up sooner.
        return max(min(self._grant.wait, self.hold), 0.001)

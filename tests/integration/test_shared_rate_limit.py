"""A remote account's rate limit shared through the store, on SQLite and PostgreSQL, against the
HubSpot fake over loopback: two limits (as two workers hold) sending at once stay within the
account's limit together and use most of it, where two limits of their own meet 429s; a pause
one of them is asked for holds the other too; the limit's transactions never wait behind a
change; and `rally leads sync` as two processes at once meets no 429 after the first window."""

import contextlib
import json
import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from integrations.crm import RateLimit
from integrations.errors import TransientError
from integrations.hubspot import HubSpot
from store.db import transaction
from store.models import RateWindow, Timer
from store.types import utcnow
from tasks.rate_limits import SharedRateLimit
from tests.conftest import SLUG
from tests.fakes import crm_people
from tests.fakes.http_server import serving
from tests.fakes.hubspot_api import FakeHubSpot
from tests.helpers import HUBSPOT_PROPERTIES, make_leads
from tests.integration.test_leads import set_destinations
from tests.processes import RallyProcess, store_env

LIMIT, PER = 20, 2.0  # the account's limit: small, so that a test spans a few windows quickly
# Most of the account's limit used: 0.95-0.98 of the ceiling on a quiet machine, about 0.9 on a
# busy one (each window starts a little late by the store's and the fake's work); a limiter that
# lost track of the other's slots or held them too long would use half or less.
MOST = 0.8


@pytest.fixture
def account() -> Iterator[FakeHubSpot]:
    yield from serving(FakeHubSpot(rate=(LIMIT, PER), sliding=True, properties=HUBSPOT_PROPERTIES))


def ceiling_share(fake: FakeHubSpot) -> float:
    """The least time the fake's limit allows for the calls it took (a window's worth at a
    time) over the time they took, from the first to the last."""
    assert fake.window is not None
    calls = [r for r in fake.requests if r.status != 429]
    ideal = (math.ceil(len(calls) / fake.window.limit) - 1) * fake.window.window
    return ideal / (calls[-1].at - calls[0].at)


def late_429s(fake: FakeHubSpot) -> int:
    """429s answered after the fake's first window."""
    assert fake.window is not None
    start = fake.requests[0].at
    return sum(1 for r in fake.requests if r.status == 429 and r.at - start > fake.window.window)


def workers(account: FakeHubSpot, limits: Sequence[RateLimit], calls: int) -> list[int]:
    """Each limit's worker upserts one lead per call, as fast as its limit lets it, until
    `calls` were made between them (a 429 among them), then gives back what its limit holds,
    as a sync does when it is done; how many calls each made."""
    left = iter(range(calls))
    lock = threading.Lock()
    made = [0] * len(limits)

    def work(index: int) -> None:
        with httpx.Client(timeout=10) as http:
            hubspot = HubSpot(
                http, name="hub", api_url=account.url, token=account.token, limit=limits[index]
            )
            while True:
                with lock:
                    n = next(left, None)
                if n is None:
                    break
                with contextlib.suppress(TransientError):
                    hubspot.upsert([crm_people.lead(n, email=f"person{n}@example.org")])
                made[index] += 1
        limits[index].release()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(limits))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return made


def test_two_shared_limits_stay_within_the_account_together_and_use_most_of_it(
    engine: Engine, account: FakeHubSpot
):
    limits = [SharedRateLimit(engine, "hubspot", "", LIMIT, PER) for _ in range(2)]
    made = workers(account, limits, 5 * LIMIT)

    assert sum(made) == 5 * LIMIT and min(made) > 0, made
    assert account.rate_limited == 0
    assert ceiling_share(account) >= MOST


def test_a_shared_slot_counts_from_its_calls_answer(engine: Engine):
    local = [0.0]
    one = SharedRateLimit(
        engine, "hubspot", "", 1, 10.0, clock=lambda: local[0], sleep=lambda s: None
    )
    started = time.time()
    ticket = one.acquire()
    local[0] += 3.0  # a call answered 3 s after it left
    one.answered(ticket)
    one.release()

    with transaction(engine, write=False) as session:
        (row,) = session.exec(select(RateWindow)).all()
    ((end_ms, count),) = row.slots
    assert count == 1 and end_ms / 1000 >= started + 3.0 + 10.0 - 0.5


def test_a_call_still_in_flight_when_its_holder_takes_more_slots_counts_from_its_answer(
    engine: Engine,
):
    local = [0.0]
    limit = SharedRateLimit(
        engine, "hubspot", "", 10, 10.0, clock=lambda: local[0], sleep=lambda s: None
    )
    started = time.time()
    slow = limit.acquire()  # the first grant's one slot
    quick = limit.acquire()  # the next grant, taken while that call is still on its way
    local[0] += 0.5
    limit.answered(quick)
    local[0] += 2.5  # the first call answered 3 s after it left: the server may have seen it
    limit.answered(slow)  # at any time until then, so it counts for a window from then
    limit.release()

    with transaction(engine, write=False) as session:
        (row,) = session.exec(select(RateWindow)).all()
    ends = sorted(end / 1000 for end, count in row.slots for _ in range(count))
    assert len(ends) == 2
    assert ends[0] >= started + 0.5 + 10.0 - 0.5
    assert ends[1] >= started + 3.0 + 10.0 - 0.5


def test_a_limit_far_above_the_pace_takes_its_slots_a_batch_at_a_time(engine: Engine):
    limit = SharedRateLimit(engine, "hubspot", "", 100_000, 1.0)
    for _ in range(500):
        limit.acquire()
    assert limit.visits <= 20 and limit.waited == 0


def test_two_limits_of_their_own_spend_the_account_twice_and_meet_429s(account: FakeHubSpot):
    limits = [RateLimit(LIMIT, PER) for _ in range(2)]
    workers(account, limits, 3 * LIMIT)

    assert late_429s(account) > 0


def test_a_pause_one_limit_is_asked_for_holds_the_other(engine: Engine):
    one, other = (SharedRateLimit(engine, "hubspot", "", LIMIT, PER) for _ in range(2))
    one.acquire()
    before = time.monotonic()
    one.pause(1.5)  # long enough that the other's visit comes within it on a busy machine
    other.acquire()

    assert other.waited > 0  # a pause it never asked for
    assert time.monotonic() - before >= 1.45  # the store's clock and this one may differ a little


def counted(engine: Engine) -> int:
    """The slots the account's window counts now."""
    with transaction(engine, write=False) as session:
        (row,) = session.exec(select(RateWindow)).all()
        return sum(count for _, count in row.slots)


def test_slots_given_back_are_there_for_another_process_at_once(engine: Engine):
    one, other = (SharedRateLimit(engine, "hubspot", "", 8, 10.0) for _ in range(2))
    for _ in range(4):
        one.acquire()  # grants of 1, 2 and 2 slots: 5 held, 4 spent
    assert counted(engine) == 5
    one.release()
    assert counted(engine) == 4

    for _ in range(4):
        other.acquire()
    assert other.waited == 0 and counted(engine) == 8


def test_the_limits_transactions_never_wait_behind_a_change(engine: Engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: every write waits for the one before it by design")
    limit = SharedRateLimit(engine, "hubspot", "", LIMIT, PER)
    with transaction(engine) as change:  # holds the writers' lock until the end of the block
        change.add(Timer(kind="k", entity_type="e", entity_id="1", due_at=utcnow()))
        change.flush()
        done = threading.Event()

        def use() -> None:
            limit.acquire()
            limit.pause(0)
            done.set()

        thread = threading.Thread(target=use)
        thread.start()
        assert done.wait(5), "the limit waited for a change to commit"
        thread.join()


def sync_process(forked_rally, settings, account: FakeHubSpot) -> RallyProcess:
    """`rally leads sync --json` in a process of its own, as a worker on another machine."""
    env = store_env(settings, RALLY_HUBSPOT_API_URL=account.url, RALLY_HUBSPOT_TOKEN=account.token)
    return forked_rally(["leads", "sync", "--json"], env)


@pytest.mark.slow
def test_two_sync_processes_at_once_stay_within_the_accounts_limit(
    engine, settings, rally, applied: Path, forked_rally
):
    # Each process makes about ten calls a second here (a drain per lead): a window several
    # times what the limit's calls take keeps that pace from counting against the limit's use.
    # One call at a time each: the fake answers at once, so calls at once would gain nothing.
    limit, per, windows = 10, 4.0, 6
    block = (
        "destinations:\n  - name: hub\n    type: hubspot\n    batch_size: 1\n"
        f"    rate: {{requests: {limit}, per_seconds: {per}}}\n    in_flight: 1\n"
    )
    set_destinations(rally, applied, block)
    make_leads(engine, SLUG, windows * limit)
    for account in serving(
        FakeHubSpot(rate=(limit, per), sliding=True, properties=HUBSPOT_PROPERTIES)
    ):
        processes = [sync_process(forked_rally, settings, account) for _ in range(2)]
        sent = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            sent.append(json.loads(out)[f"{SLUG}/hub"]["sent"])

        assert sum(sent) == windows * limit and min(sent) > 0, sent  # both took part
        assert late_429s(account) == 0
        share = ceiling_share(account)
        print(f"two processes: {sent} sent, {share:.2f} of the ceiling")
        assert share >= MOST

"""The arithmetic of a rate limit shared through the store (`tasks.rate_limits.grant`): slots are
granted up to the limit, spent ones count from when they were spent, unspent ones come back, a
crashed holder's grant expires, and however holders spend and report, no window of `window`
seconds ever holds more than `requests` calls. And a process's own limit (`RateLimit`) counts a
call from its answer, so a call that reached the server late still leaves it a whole window."""

import random

import pytest

from integrations.crm import RateLimit
from tasks.rate_limits import Grant, Spent, grant


class Clock:
    """A clock that only the limit's own sleeps (and the test) move."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_call_counts_from_its_answer_so_a_slow_one_delays_the_next_by_its_whole_window():
    clock = Clock()
    limit = RateLimit(1, 10.0, clock=clock, sleep=clock.sleep)
    ticket = limit.acquire()
    clock.now += 3.0  # the call took 3 s: the server may have seen it at any time in them
    limit.answered(ticket)
    limit.acquire()

    assert clock.now >= 100.0 + 3.0 + 10.0


def test_calls_answered_out_of_order_each_count_from_their_own_answer():
    clock = Clock()
    limit = RateLimit(2, 10.0, clock=clock, sleep=clock.sleep)
    slow, quick = limit.acquire(), limit.acquire()
    clock.now += 1.0
    limit.answered(quick)
    clock.now += 4.0
    limit.answered(slow)  # answered at 105, the other at 101

    limit.acquire()
    assert 111.0 <= clock.now < 112.0  # the quick one's slot came free first
    limit.acquire()
    assert clock.now >= 115.0


def take(
    slots: list[list[int]], now: float, want: int, spent: Spent | None = None
) -> tuple[list[list[int]], Grant]:
    """`grant` for 10 requests a second, each slot held for at most 0.1 s."""
    reports = [spent] if spent else []
    return grant(slots, now=now, requests=10, window=1.0, hold=0.1, want=want, spent=reports)


def test_up_to_the_limit_is_granted_then_the_wait_is_until_the_first_slot_ends():
    slots, first = take([], 100.0, 6)
    slots, second = take(slots, 100.2, 6)
    slots, third = take(slots, 100.3, 6)

    assert (first.count, second.count, third.count) == (6, 4, 0)
    assert third.wait == pytest.approx(100.0 + 0.1 + 1.0 - 100.3, abs=0.01)
    _, fourth = take(slots, 101.11, 6)
    assert fourth.count == 6


def test_spent_slots_count_from_when_they_were_spent_and_the_rest_come_back():
    slots, first = take([], 100.0, 10)
    spent = Spent(first.key, first.count, [100.0 + 0.01 + 1.0, 100.0 + 0.02 + 1.0])
    slots, second = take(slots, 100.05, 10, spent)

    assert second.count == 8  # the 8 unspent came back
    _, third = take(slots, 101.025, 10)
    assert third.count == 2  # the two spent ones left the window as soon as they could


def test_a_grant_never_reported_stops_counting_after_its_hold_and_the_window():
    slots, first = take([], 100.0, 10)
    _, during = take(slots, 101.0, 1)
    _, after = take(slots, 101.11, 1)

    assert first.count == 10 and during.count == 0 and after.count == 1


def test_a_report_that_comes_after_its_grant_expired_changes_nothing():
    slots, first = take([], 100.0, 10)
    late = Spent(first.key, first.count, [100.05 + 1.0])
    slots, second = take(slots, 102.0, 10, late)

    assert second.count == 10 and sum(count for _, count in slots) == 10


def test_a_call_answered_after_its_grant_stopped_counting_counts_a_window_from_its_answer():
    slots, first = take([], 100.0, 1)  # counts until 101.1 unless reported
    late = Spent(first.key, 1, [101.15 + 1.0])  # in flight until 101.15: reported after that
    slots, second = take(slots, 101.2, 10, late)

    assert second.count == 9  # the remote may have seen it as late as its answer


def test_reports_of_several_grants_in_one_visit_each_count():
    slots, first = take([], 100.0, 4)
    slots, second = take(slots, 100.05, 4)
    reports = [
        Spent(first.key, 4, [100.5 + 1.0]),
        Spent(second.key, 4, [100.6 + 1.0, 100.7 + 1.0]),
    ]
    slots, third = grant(
        slots, now=100.8, requests=10, window=1.0, hold=0.1, want=10, spent=reports
    )

    assert third.count == 7  # the three spent still count; the five unspent came back


def test_wanting_nothing_gives_back_without_taking():
    slots, first = take([], 100.0, 4)
    slots, none = take(slots, 100.01, 0, Spent(first.key, 4, []))

    assert none == Grant(at=100.01, key=0, count=0) and slots == []


@pytest.mark.parametrize("seed", range(20))
def test_however_holders_spend_and_report_no_window_holds_more_than_the_limit(seed):
    chooser = random.Random(seed)
    requests, window, hold = 7, 1.0, 0.2
    slots: list[list[int]] = []
    holders: list[tuple[Grant, list[float]]] = [(Grant(0.0, 0, 0), []) for _ in range(3)]
    calls: list[float] = []
    now = 100.0
    for _ in range(3000):
        now += chooser.expovariate(40)
        who = chooser.randrange(len(holders))
        held, used = holders[who]
        if len(used) < held.count and now - held.at < hold and chooser.random() < 0.8:
            used.append(now)  # a call at `now`, within the grant's hold
            calls.append(now)
            continue
        spent = []
        if held.count and chooser.random() < 0.9:  # else the holder crashed: no report
            spent = [Spent(held.key, held.count, [t + window for t in used])]
        slots, made = grant(
            slots,
            now=now,
            requests=requests,
            window=window,
            hold=hold,
            want=chooser.randint(1, 4),
            spent=spent,
        )
        holders[who] = (made, [])
    assert len(calls) > 300  # about 75 s at 7 a second, less what crashed holders kept
    for i, start in enumerate(calls):
        inside = sum(1 for t in calls[i : i + requests + 1] if t < start + window)
        assert inside <= requests, f"{inside} calls in the window from {start}"

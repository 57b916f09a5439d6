"""Paying 1,000 creators through the Stripe fake at Stripe's documented rate limit, and the
ledger's postings beside a bare insert.

A 1,000-creator campaign (the example's roster, repeated) is applied to a fresh store. Each
creator earns five fees a round: each a ledger posting with its audit entry and webhook event
(`tasks.payments.ledger.post`), a hundred to a transaction, as a payout run or `earn_due` makes
them. The floor, in the same run and on the same store: the same two lines per posting inserted
with one plain INSERT, a hundred postings to a transaction, nothing checked, audited or told.
Five rounds of each, alternating, so that a slow moment weighs on both; the median of each.
Goal: postings at least 0.5 of the bare inserts' rate.

Then staff approve every creator, each gets a Stripe account, and one payout run pays them all
through the fake in live mode, which allows 100 requests a second (sliding). The ceiling is the
fastest that limit allows: N calls at L per W seconds need (ceil(N / L) - 1) * W seconds from
the first call to the last. Goal: at least 0.9 of it, every creator paid exactly once, no
transfer twice.

    .venv/bin/python benchmarks/payouts.py [--creators 1000] [--database-url URL]
"""

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_SHARE = 0.9
GOAL_OF_BARE = 0.5
LIVE_RATE = (100, 1.0)
PER_TRANSACTION = 100  # postings made together, as a payout run or `earn_due` makes them
ROUNDS = 5
PER_CREATOR = 5  # postings a creator gets in a round: rounds long enough to measure


def ceiling_seconds(calls: int, limit: int, per: float) -> float:
    """The least time from the first of `calls` to the last under `limit` per `per` s."""
    return (math.ceil(calls / limit) - 1) * per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creators", type=int, default=1000)
    parser.add_argument(
        "--database-url", default="", help="a PostgreSQL server, for a database of its own"
    )
    args = parser.parse_args()
    from benchmarks.webhook_delivery import own_database

    with own_database(args.database_url) as database_url:  # PostgreSQL: one of its own
        measure(args.creators, database_url)


def measure(creators: int, database_url: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="rally-bench-payouts-"))
    from tests.fakes.stripe_api import FakeStripe

    stripe = FakeStripe(secret_key="sk_live_" + "0" * 24, rate=LIVE_RATE, sliding=True).start()
    os.environ.update(
        {
            "RALLY_HOME": str(home / "home"),
            "RALLY_DATABASE_URL": database_url,
            "RALLY_STRIPE_API_URL": stripe.url,
            "RALLY_STRIPE_SECRET_KEY": stripe.secret_key,
        }
    )
    from sqlalchemy import delete, insert
    from sqlmodel import select

    from benchmarks.pages import apply_example, campaign_folder
    from config.settings import get_settings
    from store.db import open_store, transaction
    from store.models import LedgerEntry, RosterMember
    from store.types import utcnow
    from tasks.payments.approvals import approve
    from tasks.payments.ledger import EARNED, FEES, PAYABLE, post
    from tasks.payments.payouts import pay, set_account, start_payouts

    settings = get_settings()
    engine = open_store(settings)
    print(f"Applying a {creators:,}-creator campaign ({engine.dialect.name})")
    campaign = apply_example(engine, campaign_folder(home, creators))
    with transaction(engine, write=False) as session:
        members = [
            member or 0
            for member in session.exec(
                select(RosterMember.id).where(RosterMember.campaign_id == campaign.id)
            )
        ]
    now = utcnow()
    table = LedgerEntry.__table__  # type: ignore[attr-defined]

    def bare_line(member: int, account: str, cents: int, posting: str) -> dict[str, object]:
        return {
            "campaign_id": campaign.id, "member_id": member, "posting": posting,
            "account": account, "amount_cents": cents, "currency": "USD", "kind": EARNED,
            "cause": posting, "details": {"deliverable": 1}, "actor": "bench", "created_at": now,
        }  # fmt: skip

    per_chunk = PER_TRANSACTION // PER_CREATOR  # creators whose postings go together
    chunks = [members[i : i + per_chunk] for i in range(0, len(members), per_chunk)]

    def bare_round(number: int) -> float:
        started = time.perf_counter()
        for chunk in chunks:
            with engine.begin() as conn:
                for member in chunk:
                    for k in range(PER_CREATOR):
                        lines = [
                            bare_line(member, FEES, 50_000, f"bare:{number}:{k}:{member}"),
                            bare_line(member, PAYABLE, -50_000, f"bare:{number}:{k}:{member}"),
                        ]
                        conn.execute(insert(table), lines)
        return time.perf_counter() - started

    def posting_round(number: int) -> float:
        started = time.perf_counter()
        for chunk in chunks:
            with transaction(engine) as session:
                for member in chunk:
                    for k in range(PER_CREATOR):
                        post(
                            session, campaign, member,
                            posting=f"earned:bench{number}:{k}:{member}", kind=EARNED,
                            cause=f"bench:{k}:{member}", details={"deliverable": k + 1},
                            lines=[(FEES, 50_000), (PAYABLE, -50_000)], actor="bench", now=now,
                        )  # fmt: skip
        return time.perf_counter() - started

    # Alternating rounds, so that a slow moment weighs on both; the median of each. The bare
    # rows stay until the end, as the postings do, so that both sides insert into as large a
    # table.
    bare_times, post_times = [], []
    for number in range(ROUNDS):
        bare_times.append(bare_round(number))
        post_times.append(posting_round(number))
    bare_seconds, post_seconds = statistics.median(bare_times), statistics.median(post_times)
    with engine.begin() as conn:  # one posting a creator stays: the payouts below pay it
        conn.execute(
            delete(table).where(
                table.c.posting.like("bare:%")
                | (
                    table.c.posting.like("earned:bench%")
                    & table.c.posting.not_like("earned:bench0:0:%")
                )
            )
        )
    postings = len(members) * PER_CREATOR
    bare_rate, post_rate = postings / bare_seconds, postings / post_seconds
    of_bare = post_rate / bare_rate
    print(
        f"Ledger: {postings:,} postings in {post_seconds:.3f} s ({post_rate:,.0f}/s); "
        f"bare inserts {bare_seconds:.3f} s ({bare_rate:,.0f}/s): {of_bare:.2f} of it "
        f"(medians of {ROUNDS} alternating rounds)"
    )

    accounts: dict[str, str] = {}
    with transaction(engine) as session:
        from store.models import Creator

        handles = session.exec(
            select(Creator.handle)
            .join(RosterMember, RosterMember.creator_id == Creator.id)  # type: ignore[arg-type]
            .where(RosterMember.campaign_id == campaign.id)
        ).all()
        for handle in handles:
            approve(session, campaign, handle, by="bench", now=now)
            accounts[handle] = stripe.add_account()
            set_account(session, campaign, handle, accounts[handle], actor="bench", now=now)
        queued = start_payouts(session, campaign, actor="bench", now=now)
    print(f"Paying {queued.payouts:,} creators {queued.cents / 100:,.2f} USD through Stripe")
    seen = len(stripe.requests)
    started = time.perf_counter()
    report = pay(engine, settings, now=utcnow)
    seconds = time.perf_counter() - started
    requests = stripe.requests[seen:]
    calls = sum(1 for r in requests if r.status != 429)
    limited = sum(1 for r in requests if r.status == 429)
    ideal = ceiling_seconds(calls, *LIVE_RATE)
    first_to_last = requests[-1].at - requests[0].at if requests else 0.0
    share = ideal / seconds if seconds else 0.0
    per_account = [len(stripe.paid_to(a)) for a in accounts.values()]
    duplicates = sum(n - 1 for n in per_account if n > 1)
    missed = sum(1 for n in per_account if n == 0)
    print(
        f"Payouts at {LIVE_RATE[0]}/s: {report.sent:,} paid in {seconds:.1f} s over {calls:,} "
        f"calls (first to last {first_to_last:.1f} s); ceiling {ideal:.1f} s: {share:.2f} of it; "
        f"429s {limited}; paid twice {duplicates}, missed {missed}"
    )
    met = share >= GOAL_SHARE and duplicates == 0 and missed == 0 and of_bare >= GOAL_OF_BARE
    print(
        f"Goal: payouts at least {GOAL_SHARE} of the ceiling, nobody paid twice or missed; "
        f"postings at least {GOAL_OF_BARE} of bare inserts: {'met' if met else 'MISSED'}"
    )
    stripe.stop()
    figures = {
        "store": engine.dialect.name,
        "creators": len(members),
        "postings_per_second": round(post_rate),
        "bare_inserts_per_second": round(bare_rate),
        "postings_share_of_bare": round(of_bare, 3),
        "payouts": report.sent,
        "payout_seconds": round(seconds, 2),
        "payout_share_of_ceiling": round(share, 3),
        "payout_429s": limited,
        "paid_twice": duplicates,
        "missed": missed,
    }
    goal = {
        "share_of_ceiling_at_least": GOAL_SHARE,
        "postings_share_of_bare_at_least": GOAL_OF_BARE,
        "paid_twice": 0,
        "missed": 0,
    }
    print(json.dumps({"benchmark": "payouts", **figures, "goal": goal, "met": met}))


if __name__ == "__main__":
    main()

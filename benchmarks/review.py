"""Review speed: the policy checks on 10,000 drafts, and the time from an approver's decision
to the next tier's task and its notification being stored.

The checks run the default policy's rules (disclosure, "Paid for by", prohibited claims, links,
limits, duration) on varied captions; the baseline in the same run is one case-insensitive
regex search per caption, the least any check could do. Decisions are timed on a SQLite store
from the call to its commit (task opened, timers set, emails queued, audit entry written),
beside an empty write transaction on the same store. Goal: decision median and 95th
percentile under 50 ms.

    .venv/bin/python benchmarks/review.py [--drafts 10000] [--decisions 200]
"""

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from config.campaign_file import load_campaign
from config.policy import load_policy
from store.db import engine_for, transaction, upgrade
from tasks.campaigns.apply import apply_campaign
from tasks.campaigns.configs import read_configs
from tasks.campaigns.roster import read_roster
from tasks.campaigns.roster_import import import_roster
from tasks.review.checks import DraftFacts, evaluate
from tasks.review.creatives import Submission, submit
from tasks.review.decisions import decide

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "youth-vote"
GOAL_MS = 50.0
APPROVER = "dana.okafor@keystoneyouthvote.example.org"
PIECES = (
    "#ad",
    "Paid for by Keystone Youth Vote Fund.",
    "Not authorized by any candidate.",
    "Register in two minutes",
    "link in bio",
    "code MAYAVOTES",
    "#FirstVotePA",
    "#RegisterToVote",
    "you can vote by text",
    "#AIgenerated",
    "first vote in May",
)


def captions(count: int) -> list[str]:
    rng = random.Random(11)
    return [" ".join(rng.sample(PIECES, rng.randint(3, 8))) for _ in range(count)]


def measure_checks(count: int) -> dict[str, float]:
    policy = load_policy("default", base=None)
    base = DraftFacts(
        caption="",
        script="",
        duration_seconds=20,
        paid=False,
        ai_generated=False,
        sponsored=True,
        political=True,
        platform="tiktok",
        committee_name="Keystone Youth Vote Fund",
        disclaimer="Paid for by Keystone Youth Vote Fund. Not authorized by any candidate.",
        tracking_markers=("k6ffnoipnb", "MAYAVOTES", "utm_content=maya"),
        deliverable_length="15-30s",
    )
    drafts = [
        replace(base, caption=c, ai_generated=i % 7 == 0) for i, c in enumerate(captions(count))
    ]
    start = time.perf_counter()
    blocked = sum(
        any(not f.passed and f.severity == "block" for f in evaluate(policy, d)) for d in drafts
    )
    rally = time.perf_counter() - start
    pattern = re.compile(r"vote by text", re.IGNORECASE)
    start = time.perf_counter()
    for d in drafts:
        pattern.search(d.caption)
    bare = time.perf_counter() - start
    return {
        "drafts_per_s": round(count / rally),
        "bare_regex_per_s": round(count / bare),
        "blocked": blocked,
    }


def measure_decisions(scratch: Path, count: int) -> dict[str, float]:
    engine = engine_for(f"sqlite:///{scratch}/review.db")
    upgrade(engine)
    spec = load_campaign(EXAMPLE / "campaign.yaml")
    with transaction(engine) as session:
        file = str(EXAMPLE / "campaign.yaml")
        configs = read_configs(spec, EXAMPLE, file=file)
        campaign = apply_campaign(
            session, spec, configs=configs, source_path=file, actor="bench"
        ).campaign
        rows, _ = read_roster(EXAMPLE / "roster.csv", spec)
        import_roster(session, campaign, spec, rows, actor="bench")
    now = datetime(2027, 2, 15, 14, tzinfo=UTC)
    caption = (
        "#ad Paid for by Keystone Youth Vote Fund. Register now, code MAYAVOTESPA."
        " Not authorized by any candidate or candidate's committee."
    )
    tasks = []
    for _ in range(count):
        with transaction(engine) as session:
            submitted = submit(
                session,
                slug=spec.slug,
                handle="maya.votes.pa",
                now=now,
                submitted_by="creator:@maya.votes.pa",
                submission=Submission(caption, duration_seconds=20),
            )
            assert submitted.open_task is not None
            tasks.append(submitted.open_task)
    decisions, floor = [], []
    for task_id in tasks:
        start = time.perf_counter()
        with transaction(engine) as session:
            result = decide(
                session,
                task_id=task_id,
                decision="approve",
                approver=APPROVER,
                now=now,
                confirmed=["all"],
            )
        decisions.append((time.perf_counter() - start) * 1000)
        assert result.next_tier == "legal"
        start = time.perf_counter()
        with transaction(engine):
            pass
        floor.append((time.perf_counter() - start) * 1000)
    return {
        "decision_median_ms": round(statistics.median(decisions), 2),
        "decision_p95_ms": round(statistics.quantiles(decisions, n=20)[18], 2),
        "empty_write_median_ms": round(statistics.median(floor), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=200)
    args = parser.parse_args()
    checks = measure_checks(args.drafts)
    print(
        f"Policy checks on {args.drafts:,} drafts: {checks['drafts_per_s']:,} drafts/s "
        f"({checks['blocked']:,} blocked) | bare regex scan {checks['bare_regex_per_s']:,}/s"
    )
    with tempfile.TemporaryDirectory() as scratch:
        decisions = measure_decisions(Path(scratch), args.decisions)
    print(
        f"Decision to next tier stored (SQLite, {args.decisions} decisions): median "
        f"{decisions['decision_median_ms']} ms, p95 {decisions['decision_p95_ms']} ms | empty "
        f"write transaction {decisions['empty_write_median_ms']} ms"
    )
    met = decisions["decision_median_ms"] < GOAL_MS and decisions["decision_p95_ms"] < GOAL_MS
    print(f"Goal: decision median and p95 under {GOAL_MS:g} ms: {'met' if met else 'MISSED'}")
    goal = {"decision_median_ms": GOAL_MS, "decision_p95_ms": GOAL_MS}
    print(json.dumps({"benchmark": "review", **checks, **decisions, "goal": goal, "met": met}))


if __name__ == "__main__":
    main()

"""Engagement events from a file through ingest, dedupe, rules and the outbox, beside a bare
bulk insert of the same rows and beside one Prefect task per event, all in the same run.

The file is the example campaign's simulated engagement (`tasks.rehearsal.simulate`) as JSON
Lines, about 2% of lines delivered twice. Rally reads it (`read_events`), stores each event once
(`ingest`: an event no rule fires on, such as a like under the default rules, is stored
processed) and applies the rules to the rest (`process_pending`: consent, follow-ups, outbox
rows), timed from opening the file to the last commit. The bare baseline turns the same lines
into the same rows (json.loads and a dict of columns; redeliveries skipped with a set, nothing
resolved or checked) and inserts them with Core executemany, batches of the same size, into a
fresh store of the same kind. Both rates count the file's lines, and each side's figure is its
median over three runs taken in turn. Goal: Rally at least half the bare rate on SQLite and
PostgreSQL. The Prefect baseline runs one task per event (the same calls: store it, process it)
on the first lines, timed inside one flow run; goal: Rally at least 100 times faster per event.

    .venv/bin/python benchmarks/events.py [--events 100000] [--no-postgres] [--rounds 3]
                                          [--prefect-sample 1000]
"""
# ruff: noqa: E402

import argparse
import heapq
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# This folder holds `briefs.py`, named like the `briefs` package; keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import psycopg
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import make_url
from sqlmodel import col

from config.campaign_file import load_campaign
from config.settings import Settings
from store.db import engine_for, transaction, upgrade
from store.models import Creator, EngagementEvent, FollowUp, OutboxMessage, RosterMember
from tasks.campaigns.apply import apply_campaign
from tasks.campaigns.configs import read_configs
from tasks.campaigns.roster import read_roster
from tasks.campaigns.roster_import import import_roster
from tasks.engagement.events import ingest
from tasks.engagement.files import read_events
from tasks.engagement.processing import process_pending
from tasks.rehearsal.simulate import SimCreator, simulate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "youth-vote"
SLUG = "first-vote-pa-2027"
PUBLIC_URL = "https://rally.example.org"
START = datetime(2027, 2, 1, tzinfo=UTC)
DAYS = 84
NOW = START + timedelta(days=DAYS)
BATCH = 2000  # `ingest`'s batch
GOAL_SHARE = 0.5
ROUNDS = 3  # each side's figure is its median over this many runs, in turn
GOAL_PREFECT_RATIO = 100.0
BARE_ROW = dict.fromkeys(("campaign_id", "member_id", "contact_id", "processed_at")) | {
    "received_at": NOW,
    "deliveries": 1,
}


def new_store(url: str) -> Engine:
    engine = engine_for(url)
    upgrade(engine)
    spec = load_campaign(EXAMPLE / "campaign.yaml")
    with transaction(engine) as session:
        source = str(EXAMPLE / "campaign.yaml")
        configs = read_configs(spec, EXAMPLE, file=source)
        campaign = apply_campaign(
            session, spec, configs=configs, source_path=source, actor="bench"
        ).campaign
        rows, _ = read_roster(EXAMPLE / "roster.csv", spec)
        import_roster(session, campaign, spec, rows, actor="bench")
    return engine


def write_events(engine: Engine, path: Path, count: int) -> tuple[int, int]:
    """`count` simulated events as JSONL, about 2% of lines sent again within the next 5,000
    lines (some in the same batch, most in a later one). Returns (lines, unique events)."""
    with transaction(engine, write=False) as session:
        query = select(
            col(Creator.handle), col(Creator.followers), col(RosterMember.source_code)
        ).join(RosterMember, col(RosterMember.creator_id) == col(Creator.id))
        creators = [SimCreator(h, f or 10_000, c) for h, f, c in session.execute(query)]

    def events(scale: float) -> Iterator[dict[str, Any]]:
        return simulate(SLUG, creators, start=START, days=DAYS, seed=7, scale=scale)

    scale = 0.01
    scale *= 1.05 * count / sum(1 for _ in events(scale))
    later: list[tuple[int, str]] = []
    rng, lines, unique = random.Random(3), 0, 0
    with path.open("w", encoding="utf-8") as out:
        for i, event in enumerate(events(scale)):
            if i == count:
                break
            line = json.dumps(event, ensure_ascii=False) + "\n"
            out.write(line)
            lines, unique = lines + 1, unique + 1
            if rng.random() < 0.02:
                heapq.heappush(later, (i + rng.randint(0, 5000), line))
            while later and later[0][0] <= i:
                out.write(heapq.heappop(later)[1])
                lines += 1
        out.writelines(line for _, line in sorted(later))
    return lines + len(later), unique


def rally_path(engine: Engine, path: Path) -> dict[str, Any]:
    start = time.perf_counter()
    ingested = ingest(engine, read_events(path), now=NOW)
    middle = time.perf_counter()
    processed = process_pending(engine, now=NOW, public_url=PUBLIC_URL)
    end = time.perf_counter()
    assert not ingested.errors, ingested.errors[:3]
    times = {"seconds": end - start, "ingest_s": middle - start, "process_s": end - middle}
    return times | {"processed": processed.events, "outcomes": processed.outcomes.most_common()}


def bare_insert(engine: Engine, path: Path) -> float:
    table = EngagementEvent.__table__  # type: ignore[attr-defined]
    start = time.perf_counter()
    seen: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
        rows.clear()

    with path.open(encoding="utf-8") as handle:
        for line in handle:
            r = json.loads(line)
            key = (r["source"], r["external_id"])
            if key in seen:
                continue
            seen.add(key)
            rows.append(
                BARE_ROW
                | {"source": key[0], "external_id": key[1], "type": r["type"], "payload": r}
                | {"actor": r.get("actor"), "video_id": r.get("video"), "text": r.get("text")}
                | {"occurred_at": datetime.fromisoformat(r["time"])}
            )
            if len(rows) >= BATCH:
                flush()
    if rows:
        flush()
    return time.perf_counter() - start


def check(engine: Engine, lines: int, unique: int) -> dict[str, Any]:
    """Each event stored once, every delivery counted, none left for the rules."""
    e = EngagementEvent.__table__.c  # type: ignore[attr-defined]
    status = col(FollowUp.status)
    with engine.connect() as conn:
        stored, deliveries = conn.execute(select(func.count(), func.sum(e.deliveries))).one()
        waiting = conn.scalar(select(func.count()).where(e.processed_at.is_(None)))
        statuses = conn.execute(select(status, func.count()).group_by(status)).all()
        outbox = conn.scalar(select(func.count()).select_from(OutboxMessage))
    result = {"stored": stored, "deliveries": deliveries, "unprocessed": waiting, "outbox": outbox}
    result["followups"] = {str(s): n for s, n in statuses}
    result["ok"] = stored == unique and deliveries == lines and waiting == 0
    return result


def measure(
    make_url: Callable[[], str],
    path: Path,
    lines: int,
    unique: int,
    settle: Callable[[], None] = lambda: None,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Bare insert, then Rally, each into a fresh store, `rounds` times in turn; the figures
    are each side's median, so a burst of noise on this shared machine moves neither much.
    `settle` runs before each, so that neither pays for writing out what the other left."""
    bares: list[float] = []
    rallies: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for _ in range(rounds):
        store = new_store(make_url())
        settle()
        bares.append(bare_insert(store, path))
        engine = new_store(make_url())
        settle()
        rallies.append(rally_path(engine, path))
        checks.append(check(engine, lines, unique))
    bare = statistics.median(bares)
    rally = sorted(rallies, key=lambda run: run["seconds"])[len(rallies) // 2]
    last = checks[-1]
    r = {
        "rally_events_per_s": round(lines / rally["seconds"]),
        "bare_insert_rows_per_s": round(lines / bare),
        "share_of_bare": round(bare / rally["seconds"], 3),
        "rally_ms_per_event": round(rally["seconds"] * 1000 / lines, 4),
        **{k: round(rally[k], 2) for k in ("ingest_s", "process_s")},
        "rally_s_each": [round(run["seconds"], 2) for run in rallies],
        "bare_s_each": [round(b, 2) for b in bares],
        "checks_ok": all(c["ok"] for c in checks),
        "read_by_rules": rally["processed"],
    }
    print(
        f"  Rally {r['rally_events_per_s']:,} events/s ({rally['seconds']:.1f} s: ingest "
        f"{r['ingest_s']} s, rules and outbox {r['process_s']} s) | bare insert "
        f"{r['bare_insert_rows_per_s']:,} rows/s ({bare:.1f} s) | share {r['share_of_bare']:.2f}\n"
        f"  {rounds} rounds in turn, the medians above: Rally {r['rally_s_each']} s, "
        f"bare {r['bare_s_each']} s\n"
        f"  stored {last['stored']:,} events for {unique:,} unique, {last['deliveries']:,} "
        f"deliveries for {lines:,} lines, {last['unprocessed']} unprocessed, "
        f"{last['outbox']:,} outbox rows: {'ok' if r['checks_ok'] else 'WRONG'}\n"
        f"  the rules read {rally['processed']:,} events; the other "
        f"{unique - rally['processed']:,} were stored processed (no rule fires on them)\n"
        f"  follow-ups by outcome: {dict(rally['outcomes'])}\n"
        f"  follow-ups stored by status: {last['followups']}"
    )
    return r


@contextmanager
def postgres_databases() -> Iterator[tuple[Callable[..., str], Callable[[], None]]]:
    """A maker of throwaway PostgreSQL databases, dropped at the end (as tests/conftest.py),
    and a checkpoint, which writes out what earlier work left in memory."""
    server = make_url(Settings().test_database_url.get_secret_value())
    admin = psycopg.connect(
        server.set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
        connect_timeout=3,
    )
    made: dict[str, str] = {}

    def make(template: str | None = None) -> str:
        """A new database, empty or a copy of the `template` database (its URL)."""
        name = f"rally_bench_{uuid.uuid4().hex[:10]}"
        copying = f' TEMPLATE "{make_url(template).database}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{copying}')
        url = server.set(drivername="postgresql+psycopg", database=name)
        made[name] = url.render_as_string(hide_password=False)
        return made[name]

    def checkpoint() -> None:
        admin.execute("CHECKPOINT")

    try:
        yield make, checkpoint
    finally:
        for name, url in made.items():
            engine_for(url).dispose()  # the cached engine's connections
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def prefect_sample(scratch: Path, path: Path, sample: int) -> dict[str, float]:
    """Per-event time of one Prefect task per event (inside the flow), and of the same
    per-event calls without Prefect, each on a fresh SQLite store."""
    os.environ.update(
        PREFECT_HOME=str(scratch / "prefect"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_TO_API_ENABLED="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        # The temporary server is stopped mid-flush at exit and logs that as an error.
        PREFECT_SERVER_LOGGING_LEVEL="CRITICAL",
    )
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    records = [r for _, r in zip(range(sample), read_events(path), strict=False)]

    def one_event(engine: Engine, where: str, record: dict[str, Any]) -> None:
        ingest(engine, [(where, record)], now=NOW)
        process_pending(engine, now=NOW, public_url=PUBLIC_URL)

    engine = new_store(f"sqlite:///{scratch}/per-event.db")
    start = time.perf_counter()
    for where, record in records:
        one_event(engine, where, record)
    plain = time.perf_counter() - start

    engine = new_store(f"sqlite:///{scratch}/prefect.db")
    event_task = task(name="one-event", cache_policy=NO_CACHE, persist_result=False)(one_event)

    @flow(name="event-per-task")
    def per_task() -> float:
        start = time.perf_counter()
        for where, record in records:
            event_task(engine, where, record)
        return time.perf_counter() - start

    started = time.perf_counter()  # a fresh local home starts its server in about 35 s
    inside = per_task()
    print(f"  flow run {time.perf_counter() - started:.1f} s in all, {inside:.1f} s inside it")
    return {
        "prefect_ms_per_event": round(inside * 1000 / len(records), 2),
        "plain_per_event_ms": round(plain * 1000 / len(records), 2),
    }


def postgres(path: Path, lines: int, unique: int, rounds: int) -> dict[str, Any] | str:
    try:
        with postgres_databases() as (make, checkpoint):
            print("PostgreSQL:")
            return measure(make, path, lines, unique, settle=checkpoint, rounds=rounds)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0]
        print(f"PostgreSQL: skipped, no server answers ({reason})")
        return f"skipped: unreachable ({reason})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--prefect-sample", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    r: dict[str, Any] = {"benchmark": "events", "events": args.events}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        path = scratch / "events.jsonl"
        lines, unique = write_events(new_store(f"sqlite:///{scratch}/sim.db"), path, args.events)
        r["lines"] = lines
        print(f"Events file: {unique:,} events in {lines:,} lines ({lines - unique:,} redelivered)")
        print("SQLite:")
        r["sqlite"] = measure(
            lambda: f"sqlite:///{scratch}/{uuid.uuid4().hex}.db",
            path,
            lines,
            unique,
            rounds=args.rounds,
        )
        r["postgresql"] = (
            "skipped: --no-postgres"
            if args.no_postgres
            else postgres(path, lines, unique, args.rounds)
        )
        if args.prefect_sample:
            print(f"Prefect, one task per event, first {args.prefect_sample:,} lines (SQLite):")
            p = r["prefect"] = prefect_sample(scratch, path, args.prefect_sample)
            rally_ms = r["sqlite"]["rally_ms_per_event"]
            p["ratio"] = round(p["prefect_ms_per_event"] / rally_ms, 1)
            print(
                f"  Prefect {p['prefect_ms_per_event']} ms per event (the same calls without "
                f"Prefect {p['plain_per_event_ms']} ms) | Rally batched {rally_ms} ms | "
                f"Rally {p['ratio']}x faster"
            )
    stores = [r[k] for k in ("sqlite", "postgresql") if isinstance(r[k], dict)]
    met = all(d["share_of_bare"] >= GOAL_SHARE and d["checks_ok"] for d in stores) and (
        "prefect" not in r or r["prefect"]["ratio"] >= GOAL_PREFECT_RATIO
    )
    print(
        f"Goal: at least {GOAL_SHARE} of the bare insert's rate on each store, every check "
        f"right, at least {GOAL_PREFECT_RATIO:.0f}x Prefect's task per event: "
        f"{'met' if met else 'MISSED'}"
    )
    r["goal"] = {"share_of_bare": GOAL_SHARE, "prefect_ratio": GOAL_PREFECT_RATIO}
    print(json.dumps({**r, "met": met}))


if __name__ == "__main__":
    main()

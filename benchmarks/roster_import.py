"""Importing a 10,000-creator roster with three bad rows, beside a bare bulk insert.

Rally reads and checks every row, upserts creators and their place on the campaign, and writes
two audit entries per creator. The baseline inserts the same creators and places with one
plain executemany each, no checks and no audit, into a fresh store of the same kind in the same
run. Rally writes twice the rows (creator, place and two audit entries against creator and
place), so matching the baseline row for row would show as 0.5 of its rate. Each side runs
`--rounds` times in turn, fresh stores each time, and its figure is the median: one run of
each swung from 0.10 to 0.20 of the bare rate between runs minutes apart. Goal: at least 0.15
of the bare rate (at most about 3x the baseline's cost per row), and all 9,997 good rows land.

    .venv/bin/python benchmarks/roster_import.py [--rows 10000] [--rounds 3]
"""

import argparse
import csv
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on the path, where `briefs.py` would stand in for the
# `briefs` package that applying a campaign imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, insert

from config.campaign import CampaignSpec
from config.campaign_file import load_campaign
from config.settings import Settings
from store.db import engine_for, transaction, upgrade
from store.models import Campaign, Creator, RosterMember
from store.types import utcnow
from tasks.campaigns.apply import apply_campaign
from tasks.campaigns.configs import read_configs
from tasks.campaigns.roster import read_roster
from tasks.campaigns.roster_import import import_roster

GOAL_SHARE = 0.15
BAD_ROWS = 3


def write_roster(path: Path, count: int) -> None:
    rng = random.Random(7)
    bad = set(rng.sample(range(count), BAD_ROWS))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["handle", "platform", "name", "email", "followers", "segment", "tier", "zip"]
        )
        for i in range(count):
            email = "broken@" if i in bad else f"creator{i}@example.org"
            segment = rng.choice(["gen_z", "suburban", "recruitment"])
            tier = rng.choice(["micro", "mid", "macro"])
            followers = rng.randint(10_000, 500_000)
            writer.writerow(
                [
                    f"creator_{i:05d}",
                    "tiktok",
                    f"Creator {i}",
                    email,
                    followers,
                    segment,
                    tier,
                    "19104",
                ]
            )


def fresh_store(url: str) -> Engine:
    engine = engine_for(url)
    upgrade(engine)
    return engine


def example_campaign(engine: Engine) -> tuple[CampaignSpec, Campaign]:
    spec = load_campaign(ROOT / "examples" / "youth-vote" / "campaign.yaml").model_copy(
        update={"roster": None}
    )
    configs = read_configs(spec, ROOT / "examples" / "youth-vote", file="campaign.yaml")
    with transaction(engine) as session:
        change = apply_campaign(session, spec, configs=configs, source_path=None, actor="bench")
        return spec, change.campaign


def rally_import(engine: Engine, roster: Path) -> tuple[float, int, int]:
    spec, campaign = example_campaign(engine)
    start = time.perf_counter()
    rows, problems = read_roster(roster, spec)
    with transaction(engine) as session:
        change = import_roster(session, campaign, spec, rows, actor="bench")
    return time.perf_counter() - start, change.added, len(problems)


def bare_insert(engine: Engine, count: int) -> float:
    _, campaign = example_campaign(engine)
    now = utcnow()
    creators = [
        {
            "platform": "tiktok",
            "handle": f"creator_{i:05d}",
            "name": f"Creator {i}",
            "email": f"c{i}@example.org",
            "followers": 10_000,
            "attributes": {},
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(Creator), creators)
        members = [
            {
                "campaign_id": campaign.id,
                "creator_id": i + 1,
                "segment": "gen_z",
                "tier": "micro",
                "rate_cents": None,
                "tracking_code": f"code{i}",
                "source_code": f"CODE{i}",
                "holdout": False,
                "status": "active",
                "created_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        conn.execute(insert(RosterMember.__table__), members)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def measure(
    kind: str,
    stores: Callable[[int], dict[str, str]],
    roster: Path,
    count: int,
    rounds: int,
) -> dict[str, Any]:
    """Rally's import and the bare insert, in turn, `rounds` times, each into fresh stores
    (`stores(round)` names them); each side's figure is the median of its rounds."""
    rally_times: list[float] = []
    bare_times: list[float] = []
    for round_ in range(rounds):
        urls = stores(round_)
        seconds, added, problems = rally_import(fresh_store(urls["rally"]), roster)
        rally_times.append(seconds)
        bare_times.append(bare_insert(fresh_store(urls["bare"]), count))
    seconds, bare = statistics.median(rally_times), statistics.median(bare_times)
    figures = {
        "rally_rows_per_s": round(count / seconds),
        "bare_rows_per_s": round(count / bare),
        "share_of_bare": round(bare / seconds, 3),
        "rally_seconds": round(seconds, 2),
        "rally_seconds_each": [round(t, 2) for t in rally_times],
        "bare_seconds_each": [round(t, 2) for t in bare_times],
        "added": added,
        "bad_rows_reported": problems,
    }
    rally_rate, bare_rate = figures["rally_rows_per_s"], figures["bare_rows_per_s"]
    print(
        f"  {kind:<10} Rally {rally_rate:>6,} rows/s ({seconds:.2f} s, {added} added, "
        f"{problems} bad rows named) | bare insert {bare_rate:>6,} rows/s "
        f"| share {figures['share_of_bare']:.2f}"
    )
    print(
        f"  {'':<10} {rounds} rounds in turn, the medians above: Rally "
        f"{figures['rally_seconds_each']} s, bare {figures['bare_seconds_each']} s"
    )
    return figures


def postgres_urls() -> dict[str, str] | None:
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(Settings().test_database_url.get_secret_value()).set(drivername="postgresql")
    try:
        admin = psycopg.connect(
            server.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError:
        return None
    urls = {}
    for role in ("rally", "bare"):
        name = f"rally_bench_{role}_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        urls[role] = server.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
    return urls


def drop_postgres(urls: dict[str, str]) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    for url in urls.values():
        engine_for(url).dispose()
        parsed = make_url(url)
        admin_url = parsed.set(drivername="postgresql", database="postgres").render_as_string(
            hide_password=False
        )
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{parsed.database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, in turn")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"argument --rounds: {args.rounds} is less than 1")
    count, rounds = args.rows, args.rounds
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        roster = Path(scratch) / "roster.csv"
        write_roster(roster, count)
        print(
            f"Roster import, {count:,} creators ({BAD_ROWS} bad rows), against a bare bulk insert:"
        )

        def sqlite(round_: int) -> dict[str, str]:
            return {role: f"sqlite:///{scratch}/{role}-{round_}.db" for role in ("rally", "bare")}

        results["sqlite"] = measure("SQLite", sqlite, roster, count, rounds)
        first = postgres_urls()
        if first is None:
            print("  PostgreSQL: no server at RALLY_TEST_DATABASE_URL; skipped")
        else:
            made = [first]
            try:
                made += [urls for _ in range(rounds - 1) if (urls := postgres_urls())]
                if len(made) < rounds:
                    raise SystemExit("PostgreSQL went away while its databases were made")
                results["postgresql"] = measure(
                    "PostgreSQL", made.__getitem__, roster, count, rounds
                )
            finally:
                for urls in made:
                    drop_postgres(urls)
    met = all(
        r["share_of_bare"] >= GOAL_SHARE and r["added"] == count - BAD_ROWS
        for r in results.values()
    )
    verdict = "met" if met else "MISSED"
    print(
        f"Goal: at least {GOAL_SHARE} of the bare insert rate, every good row imported: {verdict}"
    )
    print(
        json.dumps(
            {
                "benchmark": "roster_import",
                "rows": count,
                **results,
                "goal": {"share_of_bare": GOAL_SHARE},
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()

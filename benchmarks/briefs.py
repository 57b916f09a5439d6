"""Rendering and storing briefs for 10,000 creators, beside bare Jinja rendering the same
templates with the same values in the same run.

Rally builds each creator's inputs, hashes them, renders the Markdown and HTML brief in the
sandbox with strict undefined values, derives the plain text, and stores each version with its
audit entry, in batches of 500 (one transaction each, as the flow's batch task does). The
baseline renders the same two templates with a plain `jinja2.Environment` and stores nothing.
Goal: Rally's rate is at least half of bare Jinja's. A second figure renders 10,000 creators
whose names are template injections and compares it with plain names: the goal is no slower
(within 20%, the noise of this machine), since user text is only ever data.

    .venv/bin/python benchmarks/briefs.py [--creators 10000]
"""

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the `briefs` package; keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from jinja2 import Environment, FileSystemLoader
from sqlalchemy import Engine

from briefs.environment import BUILTIN_TEMPLATES
from config.campaign_file import load_campaign
from store.db import engine_for, transaction, upgrade
from store.models import RosterMember
from store.types import utcnow
from tasks.brief_inputs import campaign_part, creator_rows
from tasks.briefs import BRIEF_TEMPLATES, BriefRun, generate_batch, prepare, select_members
from tasks.campaigns import apply_campaign
from tasks.roster import read_roster
from tasks.roster_import import import_roster

ROOT = Path(__file__).resolve().parents[1]
GOAL_SHARE = 0.5
GOAL_INJECTION_RATIO = 1.2
BATCH = 500
PUBLIC_URL = "https://rally.example.org"
INJECTIONS = ("{{ ''.__class__.__mro__ }}", "{% for x in range(10**9) %}x{% endfor %}")


def write_roster(path: Path, count: int, *, injected: bool) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["handle", "platform", "name", "email", "segment", "tier"])
        for i in range(count):
            name = f"{INJECTIONS[i % 2]} {i}" if injected else f"Creator Number {i}"
            tier = ("micro", "mid", "macro")[i % 3]
            segment = ("gen_z", "suburban", "recruitment")[i % 3]
            row = [f"creator_{i:05d}", "tiktok", name, f"c{i}@example.org", segment, tier]
            writer.writerow(row)


def store_with_roster(url: str, roster: Path) -> Engine:
    engine = engine_for(url)
    upgrade(engine)
    spec = load_campaign(ROOT / "examples" / "youth-vote" / "campaign.yaml").model_copy(
        update={"roster": None}
    )
    with transaction(engine) as session:
        campaign = apply_campaign(session, spec, source_path=None, actor="bench").campaign
        rows, _ = read_roster(roster, spec)
        import_roster(session, campaign, spec, rows, actor="bench")
    return engine


def rally_generate(engine: Engine, slug: str) -> tuple[float, int]:
    start = time.perf_counter()
    with transaction(engine, write=False) as session:
        run = prepare(session, slug, public_url=PUBLIC_URL)
        members = select_members(session, run.campaign)
    made = 0
    for i in range(0, len(members), BATCH):
        with transaction(engine) as session:
            run = prepare(session, slug, public_url=PUBLIC_URL)
            report = generate_batch(
                session, run, members[i : i + BATCH], actor="bench", send=False, now=utcnow()
            )
            made += report.rendered
    return time.perf_counter() - start, made


def plain_contexts(engine: Engine, run: BriefRun) -> list[dict[str, Any]]:
    """The same values Rally renders, as plain dicts, for the bare Jinja baseline."""
    with transaction(engine, write=False) as session:
        rows = creator_rows(session, RosterMember.campaign_id == run.campaign.id)
    campaign = campaign_part(run.spec)
    return [{"campaign": campaign, **run.creator_part(row)} for row in rows]


def bare_jinja(contexts: list[dict[str, Any]]) -> float:
    environment = Environment(
        loader=FileSystemLoader(str(BUILTIN_TEMPLATES)),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    templates = [environment.get_template(name) for name in BRIEF_TEMPLATES]
    start = time.perf_counter()
    for context in contexts:
        for template in templates:
            template.render(context)
    return time.perf_counter() - start


def run_once(scratch: Path, count: int, *, injected: bool) -> dict[str, float | int]:
    label = "injected" if injected else "plain"
    roster = scratch / f"{label}.csv"
    write_roster(roster, count, injected=injected)
    engine = store_with_roster(f"sqlite:///{scratch}/{label}.db", roster)
    with transaction(engine, write=False) as session:
        run = prepare(session, "first-vote-pa-2027", public_url=PUBLIC_URL)
    contexts = plain_contexts(engine, run)
    bare = bare_jinja(contexts)
    seconds, made = rally_generate(engine, "first-vote-pa-2027")
    engine.dispose()
    return {
        "rally_briefs_per_s": round(count / seconds),
        "bare_jinja_briefs_per_s": round(count / bare),
        "share_of_bare": round(bare / seconds, 3),
        "rally_seconds": round(seconds, 2),
        "stored": made,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creators", type=int, default=10_000)
    count = parser.parse_args().creators
    print(f"Briefs for {count:,} creators (SQLite store), against bare Jinja, same templates:")
    with tempfile.TemporaryDirectory() as scratch:
        plain = run_once(Path(scratch), count, injected=False)
        injected = run_once(Path(scratch), count, injected=True)
    for label, r in (("plain names", plain), ("injected names", injected)):
        print(
            f"  {label:<15} Rally {r['rally_briefs_per_s']:>6,} briefs/s "
            f"({r['rally_seconds']:.2f} s, {r['stored']:,} stored) | bare Jinja "
            f"{r['bare_jinja_briefs_per_s']:>6,} briefs/s | share {r['share_of_bare']:.2f}"
        )
    ratio = round(float(plain["rally_briefs_per_s"]) / float(injected["rally_briefs_per_s"]), 3)
    met = (
        plain["share_of_bare"] >= GOAL_SHARE
        and plain["stored"] == count == injected["stored"]
        and ratio <= GOAL_INJECTION_RATIO
    )
    print(
        f"  injected names take {ratio:.2f}x the time of plain names\n"
        f"Goal: at least {GOAL_SHARE} of bare Jinja's rate, every brief stored, injected names "
        f"no slower than {GOAL_INJECTION_RATIO}x: {'met' if met else 'MISSED'}"
    )
    print(
        json.dumps(
            {
                "benchmark": "briefs",
                "creators": count,
                "plain": plain,
                "injected": injected,
                "injected_time_ratio": ratio,
                "goal": {
                    "share_of_bare": GOAL_SHARE,
                    "injected_time_ratio": GOAL_INJECTION_RATIO,
                },
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()

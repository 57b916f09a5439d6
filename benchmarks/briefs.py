"""Rendering and storing briefs for 10,000 creators, beside bare Jinja rendering the same
templates with the same values in the same run.

Rally builds each creator's inputs, hashes them, renders the Markdown and HTML brief in the
sandbox with strict undefined values, and stores each version, in batches of 500 with one
transaction and one audit entry each, as the flow's batch task does. The baseline renders the
same two templates with a plain `jinja2.Environment` and stores nothing. Goal: Rally's rate is
at least half of bare Jinja's. A second figure renders creators whose names are template
injections beside plain names: the goal is no slower (within 20%, this machine's noise), since
user text is only ever data. Each figure is the best of several rounds.

    .venv/bin/python benchmarks/briefs.py [--creators 10000] [--rounds 3]
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
from tasks.briefs.generate import generate_batch
from tasks.briefs.inputs import campaign_part, creator_rows
from tasks.briefs.run import BRIEF_TEMPLATES, BriefRun, prepare, select_members
from tasks.campaigns.apply import apply_campaign
from tasks.campaigns.configs import read_configs
from tasks.campaigns.roster import read_roster
from tasks.campaigns.roster_import import import_roster

ROOT = Path(__file__).resolve().parents[1]
GOAL_SHARE = 0.5
GOAL_INJECTION_RATIO = 1.2
BATCH = 500
PUBLIC_URL = "https://rally.example.org"
SLUG = "first-vote-pa-2027"
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
    configs = read_configs(spec, ROOT / "examples" / "youth-vote", file="campaign.yaml")
    with transaction(engine) as session:
        change = apply_campaign(session, spec, configs=configs, source_path=None, actor="bench")
        campaign = change.campaign
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


def rally_render(run: BriefRun, contexts: list[dict[str, Any]]) -> float:
    """Rally's rendering alone (the sandbox, the context as templates see it), no store."""
    prepared = [{"campaign": run.campaign_context, **run.creator_part.context(c)} for c in contexts]
    start = time.perf_counter()
    for context in prepared:
        run.templates.render("brief.md.j2", context)
        run.templates.render("brief.html.j2", {**context, "campaign": run.campaign_context_html})
    return time.perf_counter() - start


def fresh(scratch: Path, roster: Path, label: str) -> tuple[Engine, BriefRun]:
    engine = store_with_roster(f"sqlite:///{scratch}/{label}.db", roster)
    with transaction(engine, write=False) as session:
        return engine, prepare(session, SLUG, public_url=PUBLIC_URL)


def injection_rounds(
    scratch: Path, rosters: dict[str, Path], *, rounds: int, sample: int
) -> dict[str, list[float]]:
    """Rendering `sample` creators with plain and with injected names, alternately."""
    sets = {}
    for label, roster in rosters.items():
        engine, run = fresh(scratch, roster, f"render-{label}")
        sets[label] = (run, plain_contexts(engine, run)[:sample])
        engine.dispose()
    times: dict[str, list[float]] = {label: [] for label in sets}
    for _ in range(rounds):
        for label, (run, contexts) in sets.items():
            times[label].append(rally_render(run, contexts))
    print(
        f"  rendering {sample:,} creators, best of {rounds}: plain names "
        f"{min(times['plain']):.2f} s, injected names {min(times['injected']):.2f} s"
    )
    return times


def measure(scratch: Path, count: int, rounds: int) -> dict[str, Any]:
    """Each figure is the best of `rounds` (the least disturbed by whatever else this machine
    is doing); bare Jinja and Rally alternate, each Rally round on a fresh store."""
    rosters = {}
    for label in ("plain", "injected"):
        rosters[label] = scratch / f"{label}.csv"
        write_roster(rosters[label], count, injected=label == "injected")
    bare: list[float] = []
    rally: list[float] = []
    stored = 0
    for n in range(rounds):
        engine, run = fresh(scratch, rosters["plain"], f"plain{n}")
        bare.append(bare_jinja(plain_contexts(engine, run)))
        seconds, stored = rally_generate(engine, SLUG)
        rally.append(seconds)
        engine.dispose()
        print(f"  round {n + 1}: bare Jinja {bare[-1]:.2f} s, Rally {rally[-1]:.2f} s")
    render = injection_rounds(scratch, rosters, rounds=7, sample=2_000)
    return {
        "rally_briefs_per_s": round(count / min(rally)),
        "bare_jinja_briefs_per_s": round(count / min(bare)),
        "share_of_bare": round(min(bare) / min(rally), 3),
        "stored": stored,
        "injected_time_ratio": round(min(render["injected"]) / min(render["plain"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creators", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    count = args.creators
    print(f"Briefs for {count:,} creators (SQLite store), against bare Jinja, same templates:")
    with tempfile.TemporaryDirectory() as scratch:
        r = measure(Path(scratch), count, args.rounds)
    print(
        f"  best: Rally {r['rally_briefs_per_s']:,} briefs/s rendered and stored | bare Jinja "
        f"{r['bare_jinja_briefs_per_s']:,} briefs/s rendered | share {r['share_of_bare']:.2f}\n"
        f"  injected names take {r['injected_time_ratio']:.2f}x the time of plain names"
    )
    met = (
        r["share_of_bare"] >= GOAL_SHARE
        and r["stored"] == count
        and r["injected_time_ratio"] <= GOAL_INJECTION_RATIO
    )
    print(
        f"Goal: at least {GOAL_SHARE} of bare Jinja's rate, every brief stored, injected names "
        f"no slower than {GOAL_INJECTION_RATIO}x: {'met' if met else 'MISSED'}"
    )
    goal = {"share_of_bare": GOAL_SHARE, "injected_time_ratio": GOAL_INJECTION_RATIO}
    print(json.dumps({"benchmark": "briefs", "creators": count, **r, "goal": goal, "met": met}))


if __name__ == "__main__":
    main()

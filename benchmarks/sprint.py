"""The simulated 12-week sprint for 50, 200 and 1,000 creators: wall time, and how much of it
Prefect takes.

Each size runs in a fresh store and a fresh process, as `rally sprint start --simulate` would;
all sizes share one Prefect home, which starts fresh for the first size, so the 50-creator
figure includes Prefect's first start after installation. Rosters repeat the example
campaign's creators (their followers, segments and tiers) under new handles.

Prefect's share is the wall time less the time spent inside Rally's task functions (each
task's function is timed where it is called), over the wall time.

Goals: 50 creators in under 60 s, 1,000 in under 3 minutes, and time growing no faster than
linearly (the 1,000-creator run takes at most 5 times the 200-creator run).

    .venv/bin/python benchmarks/sprint.py [--sizes 50,200,1000] [--seed 7]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "youth-vote"
SLUG = "first-vote-pa-2027"
GOALS = {50: 60.0, 1000: 180.0}
GROWTH = 5.0  # 1,000 creators against 200: linear is 5 times


def write_campaign(folder: Path, creators: int) -> Path:
    """The example campaign with `creators` creators modelled on its roster."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "campaign.yaml").write_text((EXAMPLE / "campaign.yaml").read_text())
    with (EXAMPLE / "roster.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with (folder / "roster.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for i in range(creators):
            row = dict(rows[i % len(rows)])
            row["handle"] = f"{row['handle'][:20]}_{i:04d}"
            row["email"] = f"creator{i:04d}@example.org"
            writer.writerow(row)
    return folder / "campaign.yaml"


def child(home: Path, campaign: Path, seed: int) -> dict[str, Any]:
    """One size, in this process: apply the campaign, then the timed rehearsal."""
    os.environ["RALLY_HOME"] = str(home)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from config.campaign_file import load_campaign
    from config.settings import get_settings
    from store.db import open_store, transaction
    from tasks.campaigns.apply import apply_campaign
    from tasks.campaigns.configs import read_configs
    from tasks.campaigns.roster import read_roster
    from tasks.campaigns.roster_import import import_roster

    settings = get_settings()
    spec = load_campaign(campaign)
    rows, _ = read_roster(campaign.parent / "roster.csv", spec)
    with transaction(open_store(settings)) as session:
        configs = read_configs(spec, campaign.parent, file=str(campaign))
        change = apply_campaign(
            session, spec, configs=configs, source_path=str(campaign), actor="benchmark"
        )
        import_roster(session, change.campaign, spec, rows, actor="benchmark")
    began = time.perf_counter()
    from prefect import Task

    import flows.briefing
    import flows.delivery
    import flows.engagement
    import flows.leads
    import flows.review
    import flows.sprint

    inside: dict[str, float] = defaultdict(float)
    modules = (flows.briefing, flows.delivery, flows.engagement, flows.leads, flows.review)
    for module in (*modules, flows.sprint):
        for task in vars(module).values():
            if isinstance(task, Task):
                task.fn = _timed(task.fn, task.name, inside)
    with flows.sprint.without_heartbeats():
        result = flows.sprint.run_sprint(SLUG, simulate=True, seed=seed)
    wall = time.perf_counter() - began
    return {
        "wall": wall,
        "inside": sum(inside.values()),
        "by_task": dict(inside),
        "events": sum(result["events"].values()),
        "followups": sum(result["followups"].values()),
        "leads": result["leads_synced"],
    }


def _timed(fn: Any, name: str, inside: dict[str, float]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            inside[name] += time.perf_counter() - began

    timed.__signature__ = __import__("inspect").signature(fn)  # type: ignore[attr-defined]
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs=2, metavar=("HOME", "CAMPAIGN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), Path(args.child[1]), args.seed)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect")}
        for size in sizes:
            campaign = write_campaign(Path(tmp) / f"campaign-{size}", size)
            print(f"{size} creators: rehearsing 12 weeks...", flush=True)
            began = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--seed", str(args.seed), "--child",
                 str(Path(tmp) / f"home-{size}"), str(campaign)],
                env=env, capture_output=True, text=True, check=False, cwd=ROOT,
            )  # fmt: skip
            total = time.perf_counter() - began
            if done.returncode:
                sys.exit(f"{size} creators failed:\n{done.stderr[-3000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            share = (run["wall"] - run["inside"]) / run["wall"]
            figures[str(size)] = {
                "seconds": round(total, 1),
                "prefect_share": round(share, 3),
                "events": run["events"],
                "followups": run["followups"],
                "leads": run["leads"],
            }
            slowest = sorted(run["by_task"].items(), key=lambda kv: -kv[1])[:4]
            print(
                f"  {total:6.1f} s in all ({total - run['wall']:.1f} s starting Python and "
                f"applying the campaign); Prefect {share:.0%} of the sprint's "
                f"{run['wall']:.1f} s; {run['events']:,} events, {run['followups']:,} "
                f"follow-ups, {run['leads']:,} leads",
                flush=True,
            )
            print("  slowest tasks: " + ", ".join(f"{k} {v:.1f} s" for k, v in slowest))
    goals: dict[str, Any] = {}
    for size, limit in GOALS.items():
        if str(size) in figures:
            seconds = figures[str(size)]["seconds"]
            goals[f"{size}_creators_s"] = {"value": seconds, "goal": f"< {limit:.0f}"}
            goals[f"{size}_creators_s"]["met"] = seconds < limit
    if "200" in figures and "1000" in figures:
        growth = figures["1000"]["seconds"] / figures["200"]["seconds"]
        goals["growth_1000_over_200"] = {"value": round(growth, 2), "goal": f"<= {GROWTH}"}
        goals["growth_1000_over_200"]["met"] = growth <= GROWTH
    for name, goal in goals.items():
        print(
            f"{name}: {goal['value']} (goal {goal['goal']}): {'met' if goal['met'] else 'NOT met'}"
        )
    print(json.dumps({"benchmark": "sprint", "figures": figures, "goals": goals}))


if __name__ == "__main__":
    main()

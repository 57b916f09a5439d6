"""The simulated 12-week sprint for 50, 200 and 1,000 creators: wall time, beside a floor
measured in the same run, and how much of the time Prefect takes.

Each size runs in a fresh SQLite store and a fresh process, as `rally sprint start --simulate`
would; all sizes share one Prefect home, which starts fresh for the first size, so the
50-creator figure includes Prefect's first start after installation. Rosters repeat the
example campaign's creators (their followers, segments and tiers) under new handles.

The floor of each size, measured right after it: the same store schema made from Rally's store
(its tables and indexes), every row the rehearsal left in Rally's store inserted with plain
executemany in one transaction, and one bare Prefect flow run making as many task runs as the
rehearsal made, each doing nothing: the least any implementation pays to start Python and
Prefect, run the same flow and task runs and store the same rows. It runs twice, each time in
a fresh process with a Prefect home of its own (fresh for the first size, as Rally's is, and
configured as Rally's flows configure Prefect); its figure is the mean of the two processes'
wall times, less the time each spent reading Rally's rows.

Prefect's share is the wall time less the time spent inside Rally's task functions (each
task's function is timed where it is called), over the wall time.

Goals: 50 creators at most 3.5x their floor (mostly Python's and Prefect's start), 200 at most
7x theirs, 1,000 at most 30x theirs (a floor that grows only with the rows stored), and time
growing no faster than linearly (the 1,000-creator run takes at most 5 times the 200-creator
run). The former absolute goals (50 creators in under 60 s, 1,000 in under 3 minutes) are
printed for reference; the ratios decide.

    .venv/bin/python benchmarks/sprint.py [--sizes 50,200,1000] [--seed 7]
"""

import argparse
import csv
import json
import os
import statistics
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
GOALS_OF_FLOOR = {50: 3.5, 200: 7.0, 1000: 30.0}
REFERENCE_S = {50: 60.0, 1000: 180.0}  # the former absolute goals, printed for reference
FLOOR_RUNS = 2  # the floor is the mean of this many runs, one after the other
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
    engine = open_store(settings)
    with transaction(engine) as session:
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
    runs: dict[str, int] = defaultdict(int)
    modules = (flows.briefing, flows.delivery, flows.engagement, flows.leads, flows.review)
    tasks = {id(t): t for m in (*modules, flows.sprint) for t in vars(m).values()}
    for task in tasks.values():  # each once: flows.sprint imports some of the others' tasks
        if isinstance(task, Task):
            task.fn = _timed(task.fn, task.name, inside, runs)
    with flows.sprint.without_heartbeats():
        result = flows.sprint.run_sprint(SLUG, simulate=True, seed=seed)
    wall = time.perf_counter() - began
    return {
        "wall": wall,
        "inside": sum(inside.values()),
        "by_task": dict(inside),
        "task_runs": sum(runs.values()),
        "store": engine.url.render_as_string(hide_password=False),
        "events": sum(result["events"].values()),
        "followups": sum(result["followups"].values()),
        "leads": result["leads_synced"],
    }


def _timed(fn: Any, name: str, inside: dict[str, float], runs: dict[str, int]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        runs[name] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            inside[name] += time.perf_counter() - began

    timed.__signature__ = __import__("inspect").signature(fn)  # type: ignore[attr-defined]
    return timed


def floor_child(source_url: str, target: Path, task_runs: int) -> dict[str, Any]:
    """The floor, in this process: Rally's store's schema and rows copied into a fresh store
    with plain statements, then one flow run of `task_runs` task runs that do nothing."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from sqlalchemy import MetaData

    from config.settings import use_rally_prefect_home
    from store.db import engine_for

    use_rally_prefect_home()  # Prefect configured as Rally's flows configure it

    began = time.perf_counter()
    source = engine_for(source_url)
    tables = MetaData()
    tables.reflect(source)
    with source.connect() as conn:
        schema = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            " ORDER BY type = 'index', rowid"
        ).all()
        rows = {
            table.name: [
                tuple(row) for row in conn.exec_driver_sql(f'SELECT * FROM "{table.name}"')
            ]
            for table in tables.sorted_tables
        }
    reading = time.perf_counter() - began
    stored = time.perf_counter()
    engine = engine_for(f"sqlite:///{target}")
    with engine.execution_options(rally_write=True).begin() as conn:
        for (sql,) in schema:
            conn.exec_driver_sql(sql)
        for name, values in rows.items():
            if values:
                marks = ", ".join("?" * len(values[0]))
                conn.exec_driver_sql(f'INSERT INTO "{name}" VALUES ({marks})', values)
    flowing = time.perf_counter()
    from prefect import flow, task
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    @task(name="nothing")
    def nothing() -> None:
        return None

    @flow(name="floor")
    def bare_flow() -> None:
        for _ in range(task_runs):
            nothing()

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        bare_flow()
    return {
        "reading": reading,
        "inserting": flowing - stored,
        "flow": time.perf_counter() - flowing,
        "rows": sum(len(v) for v in rows.values()),
    }


def run(command: list[str], env: dict[str, str], what: str) -> tuple[dict[str, Any], float]:
    """`command` (this file as a child) run to its end: its JSON line and its wall time."""
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    total = time.perf_counter() - began
    if done.returncode:
        sys.exit(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs=2, metavar=("HOME", "CAMPAIGN"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--floor", nargs=3, metavar=("STORE", "TARGET", "RUNS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), Path(args.child[1]), args.seed)))
        return
    if args.floor:
        print(json.dumps(floor_child(args.floor[0], Path(args.floor[1]), int(args.floor[2]))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    figures: dict[str, Any] = {}
    me = [sys.executable, __file__, "--seed", str(args.seed)]
    with tempfile.TemporaryDirectory() as tmp:
        # a fresh SQLite store under each size's RALLY_HOME, whatever store is configured
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect"), "RALLY_DATABASE_URL": ""}
        floor_envs = [  # a Prefect home each, fresh for the first size as Rally's is
            {**os.environ, "PREFECT_HOME": str(Path(tmp) / f"prefect-floor-{k}")}
            for k in range(FLOOR_RUNS)
        ]
        for size in sizes:
            campaign = write_campaign(Path(tmp) / f"campaign-{size}", size)
            print(f"{size} creators: rehearsing 12 weeks...", flush=True)
            home = Path(tmp) / f"home-{size}"
            rally, total = run([*me, "--child", str(home), str(campaign)], env, f"{size} creators")
            floors = []
            for k, floor_env in enumerate(floor_envs):
                target = Path(tmp) / f"floor-{size}-{k}" / "floor.db"
                floor_args = [rally["store"], str(target), str(rally["task_runs"])]
                floor, floor_total = run([*me, "--floor", *floor_args], floor_env, "the floor")
                floors.append(floor | {"seconds": floor_total - floor["reading"]})
            floor_s = statistics.mean(f["seconds"] for f in floors)
            share = (rally["wall"] - rally["inside"]) / rally["wall"]
            figures[str(size)] = {
                "seconds": round(total, 1),
                "floor_seconds": round(floor_s, 1),
                "of_floor": round(total / floor_s, 2),
                "task_runs": rally["task_runs"],
                "floor_runs_s": [round(f["seconds"], 1) for f in floors],
                "rows": floors[0]["rows"],
                "prefect_share": round(share, 3),
                "events": rally["events"],
                "followups": rally["followups"],
                "leads": rally["leads"],
            }
            slowest = sorted(rally["by_task"].items(), key=lambda kv: -kv[1])[:4]
            print(
                f"  {total:6.1f} s in all ({total - rally['wall']:.1f} s starting Python and "
                f"applying the campaign); Prefect {share:.0%} of the sprint's "
                f"{rally['wall']:.1f} s; {rally['events']:,} events, {rally['followups']:,} "
                f"follow-ups, {rally['leads']:,} leads\n"
                f"  slowest tasks: " + ", ".join(f"{k} {v:.1f} s" for k, v in slowest) + "\n"
                f"  the floor, {FLOOR_RUNS} runs: {floor_s:.1f} s on average ("
                + "; ".join(
                    f"{f['seconds']:.1f} s: {f['rows']:,} rows inserted in {f['inserting']:.1f} "
                    f"s, importing Prefect and {rally['task_runs']:,} empty task runs in one "
                    f"flow run {f['flow']:.1f} s"
                    for f in floors
                )
                + f"); Rally {total / floor_s:.2f}x it",
                flush=True,
            )
    goals: dict[str, Any] = {}
    for size, limit in GOALS_OF_FLOOR.items():
        if str(size) in figures:
            ratio = figures[str(size)]["of_floor"]
            goals[f"{size}_creators_of_floor"] = {"value": ratio, "goal": f"<= {limit:g}"}
            goals[f"{size}_creators_of_floor"]["met"] = ratio <= limit
    if "200" in figures and "1000" in figures:
        growth = figures["1000"]["seconds"] / figures["200"]["seconds"]
        goals["growth_1000_over_200"] = {"value": round(growth, 2), "goal": f"<= {GROWTH}"}
        goals["growth_1000_over_200"]["met"] = growth <= GROWTH
    for name, goal in goals.items():
        print(
            f"{name}: {goal['value']} (goal {goal['goal']}): {'met' if goal['met'] else 'NOT met'}"
        )
    reference = {}
    for size, limit in REFERENCE_S.items():
        if str(size) in figures:
            seconds = figures[str(size)]["seconds"]
            reference[f"{size}_creators_s"] = {"value": seconds, "under": limit}
            reference[f"{size}_creators_s"]["held"] = seconds < limit
            print(
                f"for reference, {size} creators under {limit:.0f} s (the former goal): "
                f"{seconds} s, {'held' if seconds < limit else 'not held'}; the ratios decide"
            )
    met = all(goal["met"] for goal in goals.values())
    print(
        json.dumps(
            {
                "benchmark": "sprint",
                "figures": figures,
                "goals": goals,
                "met": met,
                "reference": reference,
            }
        )
    )


if __name__ == "__main__":
    main()

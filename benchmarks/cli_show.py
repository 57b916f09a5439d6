"""How fast `rally campaign show SLUG --json` answers, as a person at a terminal runs it.

Applies the example campaign to a throwaway store, then times whole processes against a floor
measured in the same run: `import sqlmodel`, the least any command that reads the store pays
(it swings with the machine's load, so the goal is a ratio to it). The command and the floor
run in pairs, one right after the other (the order alternating), and each pair gives a ratio
of wall times; the CPU times' ratio is shown beside it. The goal: the median of seven pairs at
most 1.3x. The other read commands (campaign list, creators list, leads status, review queue)
are timed the same way and shown, without a goal. `rally --help`, which loads no store, is
paired with the floor too: under half of it.

    .venv/bin/python benchmarks/cli_show.py [--pairs 7] [--runs 9]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RALLY = str(Path(sys.executable).parent / "rally")
GOAL_SHOW_OF_FLOOR = 1.3
GOAL_HELP_OF_FLOOR = 0.5


def timed(args: list[str], env: dict[str, str], runs: int) -> list[float]:
    return [run_once(args, env)[0] for _ in range(runs)]


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def paired(command: list[str], floor: list[str], env: dict[str, str], pairs: int) -> dict:
    """The command and the floor run back to back, in alternating order; each pair's ratio is
    taken on wall time (what a person waits) and on CPU time (the work done)."""
    walls, cpus, own, floor_walls = [], [], [], []
    for i in range(pairs):
        first, second = (floor, command) if i % 2 == 0 else (command, floor)
        a, b = run_once(first, env), run_once(second, env)
        (f_wall, f_cpu), (c_wall, c_cpu) = (a, b) if first is floor else (b, a)
        walls.append(c_wall / f_wall)
        cpus.append(c_cpu / f_cpu)
        own.append(c_wall)
        floor_walls.append(f_wall)
    return {
        "median_s": round(statistics.median(own), 3),
        "of_floor": round(statistics.median(walls), 3),
        "cpu_of_floor": round(statistics.median(cpus), 3),
        "floor_median_s": round(statistics.median(floor_walls), 3),
    }


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
    }


SLUG = "first-vote-pa-2027"
READ_COMMANDS = {  # shown beside the goal: the other commands that only read the store
    "campaign_list_json": ["campaign", "list", "--json"],
    "creators_list_json": ["creators", "list", SLUG, "--json"],
    "leads_status_json": ["leads", "status", "--json"],
    "review_queue_json": ["review", "queue", "--json"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--runs", type=int, default=9, help="runs of `python -c pass`")
    args = parser.parse_args()
    floor = [sys.executable, "-c", "import sqlmodel"]
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RALLY_")}
        env["RALLY_HOME"] = home
        campaign = str(ROOT / "examples" / "youth-vote" / "campaign.yaml")
        subprocess.run(
            [RALLY, "campaign", "apply", campaign], env=env, check=True, stdout=subprocess.DEVNULL
        )
        show = [RALLY, "campaign", "show", SLUG, "--json"]
        timed(show, env, 2)  # warm the file cache
        shown = paired(show, floor, env, args.pairs)
        others = {
            name: paired([RALLY, *command], floor, env, args.pairs)
            for name, command in READ_COMMANDS.items()
        }
        python = summary(timed([sys.executable, "-c", "pass"], env, args.runs))
        rally_help = paired([RALLY, "--help"], floor, env, args.pairs)
    help_of_floor = rally_help["of_floor"]
    print(f"50 creators on SQLite; {args.pairs} pairs with the floor each (medians):")
    print(f"  python -c pass          {python['median_s']:6.3f} s")
    print(f"  import sqlmodel (floor) {shown['floor_median_s']:6.3f} s")
    for name, figure in {"campaign_show_json": shown, **others}.items():
        print(
            f"  {name:<23} {figure['median_s']:6.3f} s: {figure['of_floor']:.2f}x the floor "
            f"(CPU {figure['cpu_of_floor']:.2f}x)"
        )
    print(
        f"  rally --help            {rally_help['median_s']:6.3f} s: "
        f"{help_of_floor:.2f}x the floor "
        f"(CPU {rally_help['cpu_of_floor']:.2f}x)"
    )
    met = shown["of_floor"] <= GOAL_SHOW_OF_FLOOR and help_of_floor < GOAL_HELP_OF_FLOOR
    print(
        f"Goals: campaign show at most {GOAL_SHOW_OF_FLOOR}x the floor (pair by pair, wall "
        f"time); --help under {GOAL_HELP_OF_FLOOR}x the floor: " + ("met" if met else "MISSED")
    )
    goals = {"show_of_floor_at_most": GOAL_SHOW_OF_FLOOR, "help_of_floor_under": GOAL_HELP_OF_FLOOR}
    figures = {
        "python_startup_s": python["median_s"],
        "import_sqlmodel_s": shown["floor_median_s"],
        "campaign_show_json": shown,
        **others,
        "rally_help": rally_help,
    }
    print(json.dumps({"benchmark": "cli_show", **figures, "goal": goals, "met": met}))


if __name__ == "__main__":
    main()

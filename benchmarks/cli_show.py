"""How fast `rally campaign show SLUG --json` answers, as a person at a terminal runs it.

Applies the example campaign to a throwaway store, then times whole processes against a floor
measured in the same run: `import sqlmodel`, the least any command that reads the store pays
(it swings with the machine's load, so the goal is a ratio to it). The command and the floor
run in pairs, one right after the other, and each pair gives a ratio. The goal is the median
of seven pairs at most 1.3x. `rally --help`, which loads no store, is timed too: under 0.5 s,
and under half of the floor.

    .venv/bin/python benchmarks/cli_show.py [--pairs 7] [--runs 9]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RALLY = str(Path(sys.executable).parent / "rally")
GOAL_SHOW_OF_FLOOR = 1.3
GOAL_HELP_SECONDS = 0.5
GOAL_HELP_OF_FLOOR = 0.5


def timed(args: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    floor = [sys.executable, "-c", "import sqlmodel"]
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RALLY_")}
        env["RALLY_HOME"] = home
        campaign = str(ROOT / "examples" / "youth-vote" / "campaign.yaml")
        subprocess.run(
            [RALLY, "campaign", "apply", campaign], env=env, check=True, stdout=subprocess.DEVNULL
        )
        show = [RALLY, "campaign", "show", "first-vote-pa-2027", "--json"]
        timed(show, env, 2)  # warm the file cache
        pairs = [(timed(floor, env, 1)[0], timed(show, env, 1)[0]) for _ in range(args.pairs)]
        figures = {
            "python_startup": summary(timed([sys.executable, "-c", "pass"], env, args.runs)),
            "import_sqlmodel": summary([f for f, _ in pairs]),
            "campaign_show_json": summary([s for _, s in pairs]),
            "campaign_list_json": summary(
                timed([RALLY, "campaign", "list", "--json"], env, args.runs)
            ),
            "rally_help": summary(timed([RALLY, "--help"], env, args.runs)),
        }
    print(
        f"50 creators on SQLite; {args.pairs} pairs, {args.runs} runs of the rest (median / p95):"
    )
    for name, figure in figures.items():
        print(f"  {name:<20} {figure['median_s']:6.3f} s  / {figure['p95_s']:6.3f} s")
    show_of_floor = round(statistics.median(s / f for f, s in pairs), 3)
    help_median = figures["rally_help"]["median_s"]
    help_of_floor = round(help_median / figures["import_sqlmodel"]["median_s"], 3)
    met = (
        show_of_floor <= GOAL_SHOW_OF_FLOOR
        and help_median < GOAL_HELP_SECONDS
        and help_of_floor < GOAL_HELP_OF_FLOOR
    )
    print(f"  campaign show --json against import sqlmodel, pair by pair: {show_of_floor:.2f}x")
    print(f"  rally --help against import sqlmodel: {help_of_floor:.2f}x")
    print(
        f"Goals: campaign show at most {GOAL_SHOW_OF_FLOOR}x the floor; --help under "
        f"{GOAL_HELP_SECONDS} s and {GOAL_HELP_OF_FLOOR}x the floor: "
        + ("met" if met else "MISSED")
    )
    goals = {
        "show_of_floor_at_most": GOAL_SHOW_OF_FLOOR,
        "rally_help.median_s": GOAL_HELP_SECONDS,
        "help_of_floor": GOAL_HELP_OF_FLOOR,
    }
    print(
        json.dumps(
            {
                "benchmark": "cli_show",
                **figures,
                "show_of_floor": show_of_floor,
                "help_of_floor": help_of_floor,
                "goal": goals,
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()

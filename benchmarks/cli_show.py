"""How fast `rally campaign show SLUG --json` answers, as a person at a terminal runs it.

Applies the example campaign to a throwaway store, then times whole processes: the command
itself, and in the same run two baselines: a bare Python start-up and `import sqlmodel` (the
floor for any command that reads the store). Goals: the median under a second, and Rally's own
cost above that import floor under 0.35 s (the floor itself swings with the machine's load).
`rally --help`, which loads no store, is timed too: under 0.5 s, and under half of the
`import sqlmodel` floor measured in the same run.

    .venv/bin/python benchmarks/cli_show.py [--runs 15]
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
GOAL_SECONDS = 1.0
GOAL_ABOVE_FLOOR_SECONDS = 0.35
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
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RALLY_")}
        env["RALLY_HOME"] = home
        campaign = str(ROOT / "examples" / "youth-vote" / "campaign.yaml")
        subprocess.run(
            [RALLY, "campaign", "apply", campaign], env=env, check=True, stdout=subprocess.DEVNULL
        )
        show = [RALLY, "campaign", "show", "first-vote-pa-2027", "--json"]
        timed(show, env, 2)  # warm the file cache and bytecode
        figures = {
            "python_startup": summary(timed([sys.executable, "-c", "pass"], env, runs)),
            "import_sqlmodel": summary(timed([sys.executable, "-c", "import sqlmodel"], env, runs)),
            "campaign_show_json": summary(timed(show, env, runs)),
            "campaign_list_json": summary(timed([RALLY, "campaign", "list", "--json"], env, runs)),
            "rally_help": summary(timed([RALLY, "--help"], env, runs)),
        }
    print(f"rally campaign show --json, 50 creators on SQLite, {runs} runs each (median / p95):")
    for name, figure in figures.items():
        print(f"  {name:<20} {figure['median_s']:6.3f} s  / {figure['p95_s']:6.3f} s")
    show_median = figures["campaign_show_json"]["median_s"]
    above_floor = round(show_median - figures["import_sqlmodel"]["median_s"], 3)
    help_median = figures["rally_help"]["median_s"]
    help_of_floor = round(help_median / figures["import_sqlmodel"]["median_s"], 3)
    met = (
        show_median < GOAL_SECONDS
        and above_floor < GOAL_ABOVE_FLOOR_SECONDS
        and help_median < GOAL_HELP_SECONDS
        and help_of_floor < GOAL_HELP_OF_FLOOR
    )
    print(f"  Rally's own cost above the sqlmodel import floor: {above_floor:.3f} s")
    print(f"  rally --help against the sqlmodel import floor: {help_of_floor:.2f}x")
    print(
        f"Goals: median under {GOAL_SECONDS} s, {GOAL_ABOVE_FLOOR_SECONDS} s above the floor; "
        f"--help under {GOAL_HELP_SECONDS} s and {GOAL_HELP_OF_FLOOR}x the floor: "
        + ("met" if met else "MISSED")
    )
    goals = {
        "campaign_show_json.median_s": GOAL_SECONDS,
        "above_floor_s": GOAL_ABOVE_FLOOR_SECONDS,
        "rally_help.median_s": GOAL_HELP_SECONDS,
        "help_of_floor": GOAL_HELP_OF_FLOOR,
    }
    print(
        json.dumps(
            {
                "benchmark": "cli_show",
                **figures,
                "above_floor_s": above_floor,
                "help_of_floor": help_of_floor,
                "goal": goals,
                "met": met,
            }
        )
    )


if __name__ == "__main__":
    main()

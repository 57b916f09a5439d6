"""What `make test` costs on a fresh clone: the CPU time of everything it runs (creating the
environment, ruff, mypy and the quick tests), against a floor measured in the same run.

The floor is the CPU time of `python -c "import sqlmodel"` (the median of seven runs before the
suite and seven after), which swings with the machine as the suite does: on this kind of
machine both ran about 2.5x slower on one day than on another. The goal: at most 600 floors,
the 5 CPU-minutes asked for on a day when the import took 0.5 s. The absolute figure is shown
beside it. With `--slow`, `make test-slow` runs after it in the same clone and is shown
without a goal: CI runs both.

The clone is of the last commit (uncommitted changes are not in it); the installers' caches
are used as `make test` would use them. PostgreSQL and the browser are asked for as CI does
(RALLY_REQUIRE_POSTGRES=1, RALLY_REQUIRE_BROWSER=1).

    .venv/bin/python benchmarks/suite.py [--slow] [--floors 7] [--keep]
"""

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_OF_FLOOR = 600  # 300 CPU-seconds at 0.5 s an import
GOAL_CPU_SECONDS = 300  # the 5 CPU-minutes, shown for reference


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def floor(python: str, runs: int) -> list[float]:
    """CPU seconds of each of `runs` fresh interpreters importing sqlmodel."""
    spent = []
    for _ in range(runs):
        before = children_cpu()
        subprocess.run([python, "-c", "import sqlmodel"], check=True)
        spent.append(children_cpu() - before)
    return spent


def make(target: str, clone: Path, log: Path) -> dict:
    """Run `make <target>` in the clone, its output to `log`; its wall and CPU seconds (every
    process it waited for), and the summary lines pytest printed."""
    env = os.environ | {"RALLY_REQUIRE_POSTGRES": "1", "RALLY_REQUIRE_BROWSER": "1"}
    before, start = children_cpu(), time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(["make", target], cwd=clone, env=env, stdout=out, stderr=out)
    wall, cpu = time.perf_counter() - start, children_cpu() - before
    text = log.read_text()
    tests = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s", text, re.M)
    return {
        "ok": done.returncode == 0,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "tests": tests[-1] if tests else "",
        "pytest_cpu": next(iter(re.findall(r"^CPU time: (\d+) s", text, re.M)[-1:]), ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", action="store_true", help="run make test-slow after it too")
    parser.add_argument("--floors", type=int, default=7, help="floor runs before and after")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is shown)")
    args = parser.parse_args()
    if args.floors < 1:
        parser.error("--floors must be at least 1")
    if shutil.which("make") is None or shutil.which("git") is None:
        sys.exit("make and git are needed")

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    base = Path(tempfile.mkdtemp(prefix="rally-suite-"))
    passed = False
    try:
        passed = measure(args, commit, base)
    finally:
        if args.keep or not passed:
            print(f"kept, with the logs: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def measure(args: argparse.Namespace, commit: str, base: Path) -> bool:
    """Clone, floor, `make test` (and `make test-slow`), floor again; print the figures.
    Whether every make passed."""
    clone = base / "rally"
    print(f"Cloning {commit} into {clone}", flush=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    print(f"Floor: import sqlmodel, {args.floors} runs", flush=True)
    floors = floor(sys.executable, args.floors)
    print("make test (several minutes; its output goes to make-test.log)", flush=True)
    quick = make("test", clone, base / "make-test.log")
    slow = None
    if args.slow:
        print("make test-slow (its output goes to make-test-slow.log)", flush=True)
        slow = make("test-slow", clone, base / "make-test-slow.log")
    print(f"Floor again, {args.floors} runs", flush=True)
    floors += floor(sys.executable, args.floors)

    unit = statistics.median(floors)
    of_floor = quick["cpu_seconds"] / unit
    passed = quick["ok"] and (slow is None or slow["ok"])
    met = passed and of_floor <= GOAL_OF_FLOOR
    print()
    print(f"floor (import sqlmodel, median of {len(floors)}): {unit:.2f} CPU-s")
    print(
        f"make test:      {quick['wall_seconds'] / 60:.1f} min wall, "
        f"{quick['cpu_seconds']:.0f} CPU-s ({quick['cpu_seconds'] / 60:.1f} CPU-minutes), "
        f"{of_floor:.0f}x the floor (goal at most {GOAL_OF_FLOOR}x); "
        f"{quick['tests'] or 'no test summary'}{'' if quick['ok'] else ', FAILED'}"
    )
    print(
        f"  of that, pytest's session: {quick['pytest_cpu'] or '?'} CPU-s; "
        f"5 CPU-minutes {'held' if quick['cpu_seconds'] <= GOAL_CPU_SECONDS else 'did not hold'}"
    )
    if slow is not None:
        print(
            f"make test-slow: {slow['wall_seconds'] / 60:.1f} min wall, "
            f"{slow['cpu_seconds']:.0f} CPU-s ({slow['cpu_seconds'] / unit:.0f}x the floor); "
            f"{slow['tests'] or 'no test summary'}{'' if slow['ok'] else ', FAILED'}"
        )
    figures = {
        "commit": commit,
        "floor_cpu_seconds": round(unit, 3),
        "make_test": quick | {"of_floor": round(of_floor, 1)},
    }
    if slow is not None:
        figures["make_test_slow"] = slow | {"of_floor": round(slow["cpu_seconds"] / unit, 1)}
    goals = {
        "make_test_of_floor_at_most": GOAL_OF_FLOOR,
        "reference": {"cpu_seconds_at_most": GOAL_CPU_SECONDS},
    }
    print(json.dumps({"benchmark": "suite", "figures": figures, "goals": goals, "met": met}))
    return passed


if __name__ == "__main__":
    main()

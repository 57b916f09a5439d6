"""Every benchmark but the suite's (`make bench`), one after another, each in a process of its
own, printing its figures as it goes; then one line per benchmark: its goals met, missed, or
the benchmark failed to run. One that fails or misses never keeps the others from running;
the exit status is 1 unless every goal was met.

    .venv/bin/python -m benchmarks [NAME ...]    (NAME: sync, scale, ...; all by default)
"""

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

APART = {"__init__", "__main__", "suite"}  # the suite runs `make test` itself: `make bench-suite`


def verdict(output: str, code: int) -> str:
    """What a benchmark's run says of its goals: its last JSON line's `met`, else why not."""
    if code:
        return f"FAILED (exit status {code})"
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                return "met" if json.loads(line).get("met") else "MISSED"
            except ValueError:
                break
    return "FAILED (no JSON line of figures at the end)"


def run_all(folder: Path, names: Sequence[str] = ()) -> int:
    scripts = {p.stem: p for p in sorted(folder.glob("*.py")) if p.stem not in APART}
    unknown = [name for name in names if name not in scripts]
    if unknown:
        sys.exit(f"no benchmark {unknown[0]!r}; there are: {', '.join(scripts)}")
    results = []
    for name, script in scripts.items():
        if names and name not in names:
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        output = []
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            output.append(line)
        said = verdict("".join(output), process.wait())
        results.append((name, said, time.perf_counter() - started))
    print("\nBenchmarks:")
    for name, said, seconds in results:
        print(f"  {name:<18} {said:<10} ({seconds:,.0f} s)")
    return 0 if all(said == "met" for _, said, _ in results) else 1


if __name__ == "__main__":
    sys.exit(run_all(Path(__file__).parent, sys.argv[1:]))

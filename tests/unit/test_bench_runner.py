"""`make bench`: a benchmark that misses its goal or fails to run is named at the end, and the
ones after it run all the same."""

from pathlib import Path

import pytest

from benchmarks.__main__ import run_all

pytestmark = pytest.mark.slow  # each benchmark is a process of its own

SCRIPTS = {
    "a_crashes": "raise SystemExit('no store')",
    "b_misses": "print('figures'); print('{\"met\": false}')",
    "c_meets": "print('figures'); print('{\"met\": true}')",
    "suite": "raise SystemExit('the suite is run apart')",
}


def folder_of(tmp_path: Path, scripts: dict[str, str]) -> Path:
    for name, body in scripts.items():
        (tmp_path / f"{name}.py").write_text(body + "\n")
    return tmp_path


def test_every_benchmark_runs_and_the_summary_names_each_verdict(tmp_path, capfd):
    assert run_all(folder_of(tmp_path, SCRIPTS)) == 1
    out = capfd.readouterr().out
    summary = out[out.index("Benchmarks:") :].splitlines()[1:]
    assert [line.split()[:2] for line in summary] == [
        ["a_crashes", "FAILED"],
        ["b_misses", "MISSED"],
        ["c_meets", "met"],
    ]
    assert "exit status 1" in summary[0]
    assert out.count("figures") == 2


def test_all_met_exits_0_and_names_pick_some(tmp_path, capfd):
    folder = folder_of(tmp_path, SCRIPTS)
    assert run_all(folder, ["c_meets"]) == 0
    assert "b_misses" not in capfd.readouterr().out
    with pytest.raises(SystemExit, match="no benchmark 'syncc'; there are: a_crashes, b_misses"):
        run_all(folder, ["syncc"])


def test_a_run_without_its_json_line_is_a_failure(tmp_path, capfd):
    folder = folder_of(tmp_path, {"quiet": "print('figures only')"})
    assert run_all(folder) == 1
    assert "FAILED (no JSON line" in capfd.readouterr().out

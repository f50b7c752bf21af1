"""Tests for the `race-harness` command line: run, check (the CI gate), report, and errors.

Mostly in-process through `harness.cli.main([...])` (the embedded mock is still
a real child process); one call goes through the installed console script.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.sequential import decide, decide_window
from harness.cli import EXIT_ERROR, EXIT_GATE_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, main
from harness.report import FIGURES_PENDING

DELAY_MS = 200
OFFSETS = [-100, 60, 120]
TRIALS_PER_OFFSET = 8  # per offset bin: enough for the sequential gate to decide these thresholds
GUARDS = ["none", "finished-check"]
RACE_WINDOW = (50, 150)  # inside (0, D): every unguarded trial here races
# The first t0 this far after scheduling starts, so outcomes do not depend on how fast the run's
# helper processes start (see tests/test_runner.py::test_embedded_first_trials_are_fired_on_time).
LEAD_MS = 1000

RAW_FILES = ["run.json", "trials.csv", "history.jsonl", "audits.jsonl"]
REPORT_FILES = ["summary.json", "rates.csv", "race_rate.png", "timeline.png", "offset_error.png",
                "guard_cost.png", "report.html", "report.md", "junit.xml"]


def scenario_toml(thresholds: list[dict[str, Any]], *, name: str = "cli-test", seed: int = 31,
                  trials: int = TRIALS_PER_OFFSET, extra: str = "") -> str:
    lines = [
        f'name = "{name}"',
        f"seed = {seed}",
        "[target]", 'kind = "embedded"',
        "[mock]", 'policy = "vulnerable"', f'change_delay = "fixed:{DELAY_MS}"', "settle_ms = 0", "pin_delays = true",
        "[order]",
        'items = [{ id = "1", name = "Shirt", quantity = 2, price = 5000 }, '
        '{ id = "2", name = "Shoes", quantity = 1, price = 12000 }]',
        "shipping = 1000",
        "[change]", 'items_removed = [{ id = "1", quantity = 1 }]',
        "[sweep]", f"offsets_ms = {OFFSETS}", f"trials_per_offset = {trials}",
        "[guards]", f"names = {json.dumps(GUARDS)}", "poll_interval_ms = 10", "timeout_ms = 3000",
        "[run]", "concurrency = 10", "start_spread_ms = 100", f"lead_ms = {LEAD_MS}",
        # Every offset is >= 40 ms from the race window's edges (0 and D), so a trial's outcome holds
        # under 20 ms of timing error: judging it "late" sooner would make these tests depend on load.
        "timing_tolerance_ms = 20",
    ]
    for t in thresholds:
        lines.append("[[thresholds]]")
        for key, value in t.items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n" + extra


def write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def only_run_dir(out: Path) -> Path:
    dirs = [p for p in out.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def wait_for_figures(run_dir: Path, timeout_s: float = 120.0) -> None:
    """`run` draws its figures in a background process after the verdict; it removes the marker when done."""
    marker = run_dir / FIGURES_PENDING
    deadline = time.monotonic() + timeout_s
    while marker.exists():
        assert time.monotonic() < deadline, f"figures still pending after {timeout_s} s: {marker.read_text()}"
        time.sleep(0.1)


def gate_lines(stdout: str) -> list[str]:
    """The gate's per-threshold lines: `<VERDICT> <guard>: ...` at the start of a line."""
    return [ln for ln in stdout.splitlines()
            if ln.startswith(tuple(f"{v} {g}: " for v in ("PASS", "FAIL", "INCONCLUSIVE") for g in GUARDS))]


def n_in_range(lo: float, hi: float) -> int:
    return sum(1 for o in OFFSETS if lo <= o <= hi) * TRIALS_PER_OFFSET


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VTEX_APP_KEY", "VTEX_APP_TOKEN", "MOCK_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)


# Thresholds the model guarantees for this scenario (fixed D, S = 0, pinned delays).
GRID_N = len(OFFSETS) * TRIALS_PER_OFFSET * len(GUARDS)
FC_WINDOW_N = sum(1 for o in OFFSETS if abs(o) >= 50) * TRIALS_PER_OFFSET
NONE_WINDOW_N = n_in_range(*RACE_WINDOW)
FC_MAX_UPPER = 0.5
NONE_MIN_LOWER = 0.3
HOLDING = [
    {"guard": "finished-check", "max_upper": FC_MAX_UPPER, "min_abs_offset_ms": 50},
    {"guard": "none", "min_lower": NONE_MIN_LOWER, "offset_range_ms": list(RACE_WINDOW)},
]


def test_thresholds_are_attainable_with_this_many_trials() -> None:
    """Preconditions of the gate tests: with 0 races / all races every bin is decided."""
    assert NONE_WINDOW_N > 0 and FC_WINDOW_N > 0
    fc_bins = [(0, TRIALS_PER_OFFSET)] * (FC_WINDOW_N // TRIALS_PER_OFFSET)
    assert decide_window(fc_bins, FC_MAX_UPPER).verdict == "pass"
    assert decide_window([(0, TRIALS_PER_OFFSET)] * (NONE_WINDOW_N // TRIALS_PER_OFFSET),
                         1 - NONE_MIN_LOWER).verdict == "pass"  # the mirror: no races in the race window
    assert decide_window([(TRIALS_PER_OFFSET, TRIALS_PER_OFFSET)] * len(fc_bins), 1 - 0.8).verdict == "fail"
    assert decide(TRIALS_PER_OFFSET, TRIALS_PER_OFFSET, 0.0).verdict == "fail"


# --------------------------------------------------------------------------- check


def test_check_passes_when_thresholds_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, scenario_toml(HOLDING))
    out = tmp_path / "out"
    # The budget is the grid: these tests count the grid's trials in each window.
    rc = main(["check", str(path), "--out", str(out), "--no-progress", "--max-trials", str(GRID_N)])
    captured = capsys.readouterr()
    assert rc == EXIT_OK, captured.err
    lines = gate_lines(captured.out)
    assert len(lines) == len(HOLDING)
    assert lines[0].startswith("PASS finished-check: worst bin ")
    assert "upper bound " in lines[0] and f"<= max {FC_MAX_UPPER:g}" in lines[0]
    assert f"(0/{FC_WINDOW_N} races pooled over 3 bin(s)" in lines[0]
    assert lines[1].startswith("PASS none: worst bin ") and f">= min {NONE_MIN_LOWER:g}" in lines[1]
    assert f"({NONE_WINDOW_N}/{NONE_WINDOW_N} races pooled" in lines[1]
    assert "gate: PASS" in captured.out
    summary = json.loads((only_run_dir(out) / "summary.json").read_text(encoding="utf-8"))
    assert summary["gate"]["passed"] is True and summary["gate"]["verdict"] == "pass"
    assert summary["gate"]["results"] == lines


def test_check_fails_with_one_reason_per_failed_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    thresholds = [
        # Impossible: the unguarded race rate in the race window cannot be shown to be 0.
        {"guard": "none", "max_upper": 0.0, "offset_range_ms": list(RACE_WINDOW)},
        # Holds.
        {"guard": "finished-check", "max_upper": FC_MAX_UPPER, "min_abs_offset_ms": 50},
        # Fails: finished-check does not race, so its rate is shown to be below 0.8 in every bin.
        {"guard": "finished-check", "min_lower": 0.8, "min_abs_offset_ms": 50},
    ]
    path = write(tmp_path, scenario_toml(thresholds))
    out = tmp_path / "out"
    # The budget is the grid: these tests count the grid's trials in each window.
    rc = main(["check", str(path), "--out", str(out), "--no-progress", "--max-trials", str(GRID_N)])
    captured = capsys.readouterr()
    assert rc == EXIT_GATE_FAILED
    assert "gate: FAIL" in captured.err
    lines = gate_lines(captured.out)
    assert len(lines) == len(thresholds)  # one line each, in the scenario's order
    none_line, fc_ok_line, fc_bad_line = lines
    assert none_line.startswith("FAIL none: worst bin ") and "a race proves the rate > max 0 " in none_line
    # check stops at the first batch that decides every threshold: at most the grid's trials.
    m = re.search(r"\((\d+)/(\d+) races pooled over 2 bin\(s\), offset in \[(\d+), (\d+)\] ms\)", none_line)
    assert m and m[1] == m[2] and 0 < int(m[1]) <= NONE_WINDOW_N, none_line
    assert (int(m[3]), int(m[4])) == tuple(RACE_WINDOW)
    assert fc_ok_line.startswith("PASS finished-check: ") and f"<= max {FC_MAX_UPPER:g}" in fc_ok_line
    assert fc_bad_line.startswith("FAIL finished-check: worst bin ") and "< min 0.8" in fc_bad_line
    m = re.search(r"\(0/(\d+) races pooled over 3 bin\(s\), \|offset\| >= 50 ms\)", fc_bad_line)
    assert m and 0 < int(m[1]) <= FC_WINDOW_N, fc_bad_line

    run_dir = only_run_dir(out)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["gate"]["passed"] is False and summary["gate"]["verdict"] == "fail"
    assert [t["verdict"] for t in summary["gate"]["thresholds"]] == ["fail", "pass", "fail"]
    junit = (run_dir / "junit.xml").read_text(encoding="utf-8")
    assert 'failures="2"' in junit and 'errors="0"' in junit


def test_one_trial_against_a_tenth_of_a_percent_is_inconclusive(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Not enough evidence is neither PASS nor FAIL: exit 3 with the reason."""
    path = write(tmp_path, scenario_toml([{"guard": "finished-check", "max_upper": 0.001}]))
    rc = main(["check", str(path), "--simulate", "--trials", "1", "--out", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == EXIT_INCONCLUSIVE == 3, captured.err
    [line] = gate_lines(captured.out)
    assert line.startswith("INCONCLUSIVE finished-check: worst bin ") and "> max 0.001" in line
    assert "gate: INCONCLUSIVE" in captured.err
    junit = (only_run_dir(tmp_path / "out") / "junit.xml").read_text(encoding="utf-8")
    assert 'errors="1"' in junit and 'failures="0"' in junit and 'type="Inconclusive"' in junit


def test_gate_table_is_validated_in_the_scenario_error_style(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, scenario_toml(HOLDING, extra="[gate]\nmax_failed = -1\n"))
    assert main(["check", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == EXIT_ERROR
    assert f"error: {path}: gate.max_failed: expected an integer >= 0; got -1 (int)" in capsys.readouterr().err
    path = write(tmp_path, scenario_toml(HOLDING, extra="[gate]\nmax_faild = 2\n"))
    assert main(["check", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == EXIT_ERROR
    assert "'max_faild' (did you mean 'max_failed'?)" in capsys.readouterr().err


# --------------------------------------------------------------------------- run / report / overrides


def test_run_writes_the_report_and_report_rebuilds_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, scenario_toml(HOLDING, seed=31))
    out = tmp_path / "out"
    trials, seed = 1, 977
    rc = main(["run", str(path), "--out", str(out), "--no-progress", "--trials", str(trials), "--seed", str(seed)])
    captured = capsys.readouterr()
    assert rc == EXIT_OK, captured.err
    run_dir = only_run_dir(out)
    assert f"run folder: {run_dir}" in captured.err
    # `run` is the QA reproduction command: same verdict lines, exit 0 even when not PASS.
    assert len(gate_lines(captured.out)) == len(HOLDING)
    assert "gate: INCONCLUSIVE" in captured.out  # 1 trial per offset decides nothing
    # The verdict does not wait for the figures: report.html is there at once, the figures follow.
    assert (run_dir / "report.html").is_file()
    wait_for_figures(run_dir)
    assert '<img src="data:image/png' in (run_dir / "report.html").read_text(encoding="utf-8")
    for name in RAW_FILES + REPORT_FILES:
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name

    # --trials and --seed override the scenario file.
    planned = len(OFFSETS) * len(GUARDS) * trials
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert meta["seed"] == seed and meta["scenario"]["seed"] == seed
    assert meta["scenario"]["sweep"]["trials_per_offset"] == trials
    assert meta["planned_trials"] == planned
    with (run_dir / "trials.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == planned
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["seed"] == seed and summary["run"]["trials"] == planned
    numbers = [json.loads(line)["request_body"]["invoiceNumber"]
               for line in (run_dir / "history.jsonl").read_text(encoding="utf-8").splitlines()
               if json.loads(line)["kind"] == "invoice"]
    assert len(numbers) == planned and all(n.startswith(f"NF-{seed}-") for n in numbers)

    # `report DIR` rebuilds every report file from the raw records, identically.
    before = {name: (run_dir / name).read_bytes() for name in ("summary.json", "report.md", "rates.csv")}
    for name in REPORT_FILES:
        (run_dir / name).unlink()
    rc = main(["report", str(run_dir)])
    captured = capsys.readouterr()
    assert rc == EXIT_OK, captured.err
    assert str(run_dir / "report.html") in captured.out
    for name in REPORT_FILES:
        assert (run_dir / name).is_file(), name
    for name, data in before.items():
        assert (run_dir / name).read_bytes() == data, name


def test_report_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR
    assert err.startswith("error: ") and str(tmp_path / "run.json") in err


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda s: s.replace(f"trials_per_offset = {TRIALS_PER_OFFSET}", "trials_per_offset = 0"), "sweep.trials_per_offset"),
    (lambda s: s.replace('policy = "vulnerable"', 'policy = "lenient"'), "mock.policy"),
    (lambda s: s.replace("price = 5000", "price = 50.0"), "order.items[0].price"),
    (lambda s: s.replace("timeout_ms = 3000", "timeout_ms = 3000\nnmes = []"), "guards"),
])
def test_bad_scenario_exits_2_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    mutate: Any, field: str) -> None:
    good = scenario_toml(HOLDING)
    bad = mutate(good)
    assert bad != good
    path = write(tmp_path, bad, "broken.toml")
    out = tmp_path / "out"
    rc = main(["check", str(path), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}: {field}"), err
    assert not out.exists()  # nothing ran


def test_unknown_key_message_suggests_the_right_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, scenario_toml(HOLDING).replace("timeout_ms = 3000", "timeout_ms = 3000\nnmes = []"))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "'nmes' (did you mean 'names'?)" in err


def test_missing_and_invalid_toml_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["run", str(missing), "--out", str(tmp_path / "out"), "--no-progress"]) == EXIT_ERROR
    assert f"{missing}: no such scenario file" in capsys.readouterr().err
    broken = write(tmp_path, "name = \n", "broken.toml")
    assert main(["run", str(broken), "--out", str(tmp_path / "out"), "--no-progress"]) == EXIT_ERROR
    assert f"{broken}: not valid TOML" in capsys.readouterr().err


def test_bad_override_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, scenario_toml(HOLDING))
    assert main(["run", str(path), "--trials", "0", "--out", str(tmp_path / "out"), "--no-progress"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"{path}: sweep.trials_per_offset (override)" in err


# --------------------------------------------------------------------------- console script


def _console_script() -> str:
    candidate = Path(sys.executable).with_name("race-harness")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("race-harness")
    if found is None:
        pytest.fail("the race-harness console script is not installed (pip install -e .)")
    return found


def test_console_script_help() -> None:
    proc = subprocess.run([_console_script(), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: race-harness")
    for command in ("run", "check", "report", "serve"):
        assert command in proc.stdout


def test_console_script_without_command_is_a_usage_error() -> None:
    proc = subprocess.run([_console_script()], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage: race-harness" in proc.stderr

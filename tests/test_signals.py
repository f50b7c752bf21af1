"""Signals the way a terminal and CI send them, on real processes (issue 12, item 1).

A live run is started in a session of its own (as a shell starts a foreground job); Ctrl-C is
SIGINT to that whole process group (`os.killpg`), CI cancellation a SIGTERM to the harness. The
harness must finish (or, on a second Ctrl-C, abandon) its trials in flight and exit 130 with a
partial report and no traceback, and its children (the embedded mock, the last-byte firer) must
neither die of the signal nor outlive the harness, even when it is SIGKILLed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from mock_orders_api import child_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc: Linux")

_DEADLINE_S = 60.0  # generous bounds for a loaded CI machine: the tests assert order, not speed


def _wait_for(what: str, cond: Callable[[], bool], timeout_s: float = _DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for a reaper counts: it holds no port and runs no code)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _rows(out: Path) -> int:
    runs = list(out.glob("*/trials.csv"))
    return max(0, len(runs[0].read_bytes().splitlines()) - 1) if runs else 0


def _start(out: Path, log: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    """A live run in its own session, once trials are being written; with its children's pids."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "ticket-1348894", "--trials", "6",
                             "--no-progress", "--out", str(out)], stdout=(log / "stdout").open("wb"),
                            stderr=(log / "stderr").open("wb"), env=child_env(), start_new_session=True)
    try:
        _wait_for("trials being written", lambda: _rows(out) >= 1 or proc.poll() is not None)
        assert proc.poll() is None, (log / "stderr").read_text()
        children = _children(proc.pid)
        assert len(children) >= 2, children  # the embedded mock and the last-byte firer
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, children


def _check_interrupted_run(proc: subprocess.Popen[bytes], children: set[int], out: Path, log: Path) -> None:
    assert proc.wait(timeout=_DEADLINE_S) == 130
    stderr = (log / "stderr").read_text()
    assert "Traceback" not in stderr and "interrupted: kept" in stderr, stderr
    _wait_for("the children stopped", lambda: all(_gone(pid) for pid in children))
    (run_dir,) = [p.parent for p in out.glob("*/run.json")]
    meta = json.loads((run_dir / "run.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert meta["interrupted"] is True and summary["run"]["interrupted"] is True
    assert (run_dir / "report.html").exists()
    with (run_dir / "trials.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert 0 < len(rows) < meta["planned_trials"]
    # No trial was spoiled by the harness's own children dying: none failed for want of a connection.
    spoiled = [r for r in rows if r["error"] and ("firer" in r["error"] or "Connect" in r["error"])]
    assert not spoiled, spoiled[:3]
    # Every row's evidence is on disk.
    audited = {json.loads(line)["trial_id"] for line in (run_dir / "audits.jsonl").read_text().splitlines()}
    assert {int(r["trial_id"]) for r in rows} <= audited


def test_ctrl_c_to_the_process_group_finishes_trials_in_flight_and_exits_130(tmp_path: Path) -> None:
    proc, children = _start(tmp_path / "out", tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    # The children are in sessions of their own: they are not hit, and stop when the parent says.
    assert not any(_gone(pid) for pid in children)
    _check_interrupted_run(proc, children, tmp_path / "out", tmp_path)


def test_second_ctrl_c_abandons_trials_in_flight(tmp_path: Path) -> None:
    proc, children = _start(tmp_path / "out", tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    _wait_for("the first Ctrl-C acknowledged", lambda: "stopping" in (tmp_path / "stderr").read_text())
    os.killpg(proc.pid, signal.SIGINT)
    _check_interrupted_run(proc, children, tmp_path / "out", tmp_path)


def test_sigterm_is_one_ctrl_c(tmp_path: Path) -> None:
    proc, children = _start(tmp_path / "out", tmp_path)
    proc.terminate()  # CI cancellation / `timeout`: SIGTERM to the harness alone
    _check_interrupted_run(proc, children, tmp_path / "out", tmp_path)


def test_children_exit_by_themselves_when_the_harness_is_killed(tmp_path: Path) -> None:
    proc, children = _start(tmp_path / "out", tmp_path)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait()
    _wait_for("every child exited after its parent died", lambda: all(_gone(pid) for pid in children),
              timeout_s=15.0)


def test_closed_stdout_pipe_is_no_traceback(tmp_path: Path) -> None:
    """`race-harness scenarios | head -0`: the reader is gone before the output is flushed."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "scenarios"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=_DEADLINE_S) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr

"""Wall time of the simulated main command, as a user runs it (a benchmark script, not a test).

Runs `race-harness run ticket-1348894 --simulate --no-progress` (`python -m harness.cli`, a
fresh interpreter each time: imports included) --repeat times and reports, per run: the wall
time to the verdict line (`gate: ...`, what the user waits for), to the process's exit, the
command's CPU (user + system of the process and its forked simulation workers), and the
simulation runner's own wall time from run.json. The figures are drawn after the verdict in a
background process (docs/outputs.md, `figures.pending`): not part of the command's time; the
script waits for them after each run (`figures s`: from the command's exit until they are
written) and outside the CPU meter, so neither the next run nor "cpu others" carries them.
The package's bytecode is compiled first (`compileall`, as `pip install` does): a checkout run
with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module of the harness and the mock
on every run (~0.2 s), which no installed copy does. Target (issue 17): the command <= 1.0 s
wall. Prints one JSON line, then a readable table.

    python benchmarks/sim_command_time.py [--repeat 3] [--scenario ticket-1348894]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, CpuMeter, emit, machine, time_command

TARGET_S = 1.0
_FIGURES_TIMEOUT_S = 120.0


def _one(scenario: str, out: Path) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with CpuMeter() as cpu:  # the command and its workers (it reaps them); not the detached figures
        rc, verdict_s, exit_s = time_command([sys.executable, "-m", "harness.cli", "run", scenario, "--simulate",
                                              "--no-progress", "--out", str(out)], stderr=subprocess.DEVNULL,
                                             timeout_s=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_dir = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    exited = time.monotonic()
    deadline = exited + _FIGURES_TIMEOUT_S
    while (run_dir / "figures.pending").exists() and time.monotonic() < deadline:  # bounded wait
        time.sleep(0.02)
    figures_s = None if (run_dir / "figures.pending").exists() else time.monotonic() - exited
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return {"exit_code": rc, "to_verdict_s": verdict_s, "to_exit_s": exit_s,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "cpu_cores": cpu.result, "figures_after_exit_s": figures_s,
            "runner_wall_s": meta.get("wall_s"), "trials": meta.get("planned_trials")}


def _compile_bytecode() -> None:
    for package in ("harness", "mock_orders_api"):
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise SystemExit(f"compileall {ROOT / package} failed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="runs (default 3)")
    p.add_argument("--scenario", default="ticket-1348894", help="built-in scenario name or TOML path")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    res: dict[str, Any] = {"benchmark": "sim_command_time", "scenario": args.scenario, "machine": machine(),
                           "target_s": TARGET_S, "bytecode": "precompiled", "runs": []}
    _compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="simcmd-", ignore_cleanup_errors=True) as tmp:  # a late figure process
        for _ in range(args.repeat):
            res["runs"].append(_one(args.scenario, Path(tmp)))
    walls = [r["to_exit_s"] for r in res["runs"]]
    res["median_to_exit_s"] = statistics.median(walls)
    res["median_to_verdict_s"] = statistics.median(r["to_verdict_s"] or r["to_exit_s"] for r in res["runs"])
    return emit(res, table)


def table(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"race-harness run {res['scenario']} --simulate (nproc={m['nproc']}, load before={m['loadavg_1m']:.2f})",
             f"{'run':>3} {'to verdict s':>12} {'to exit s':>9} {'cpu s':>6} {'runner s':>8} {'trials':>6} "
             f"{'figures s':>9}  cpu others (cores)"]
    for i, r in enumerate(res["runs"], 1):
        others = r["cpu_cores"].get("others_cores")
        figures = r["figures_after_exit_s"]
        lines.append(f"{i:>3} {r['to_verdict_s'] or float('nan'):12.2f} {r['to_exit_s']:9.2f} {r['cpu_s']:6.2f} "
                     f"{r['runner_wall_s'] or float('nan'):8.2f} {r['trials'] or 0:>6} "
                     f"{'timeout' if figures is None else f'{figures:.2f}':>9}  "
                     f"{'' if others is None else f'{others:.2f}'}")
    ok = "met" if res["median_to_exit_s"] <= TARGET_S else "MISSED"
    lines.append(f"median to exit {res['median_to_exit_s']:.2f} s (target <= {TARGET_S:g} s: {ok}); "
                 f"median to verdict {res['median_to_verdict_s']:.2f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())

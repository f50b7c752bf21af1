"""Throughput of the ticket scenario's full sweep, live and simulated (a benchmark script, not a test).

Runs `scenarios/ticket-1348894.toml` (41 offsets x 8 trials x 3 guards = 984 trials) through
the same code paths as `race-harness run` and `race-harness run --simulate`
(`harness.live.run.run_scenario` / `harness.sim.run.run_simulated`), and reports trials, wall seconds and
trials/s. Live: once per --concurrency value (trials in flight; default the scenario's own),
against the embedded mock. Simulated: --sim-repeat times (a run is a fraction of a second, so
its figure varies more), with --workers processes (default: one per CPU). Two wall times:
`runner` is the runner's own (run.json `wall_s`, what the report's trials/s uses), `end to
end` adds starting the mock and the helper processes (live) or forking the workers
(simulated); building the report is not included. Live runs also give the harness process's
own CPU per trial (`time.process_time` of this process: the mock and the last-byte firer are
other processes; it holds under load where wall time does not) and the server-side offset
error of the unguarded trials (p99, |actual - planned|, from the mock's audits). Targets
(issue 17): live >= 200 trials/s with server-side offset p99 <= 1 ms and <= 4 ms of harness
CPU per trial; simulated >= 10,000 trials/s. Prints one JSON line, then a readable table.

A live run meets its target only if all three figures hold. --lead-ms overrides the scenario's
lead (setup time before a trial's first timed request): a trial lasts lead + |offset| + the Change
delay, so at a given number in flight a shorter lead gives more trials/s.

    python benchmarks/sweep_throughput.py [--concurrency 100 200] [--lead-ms 300] [--trials 8] [--workers N] [--sim-repeat 3] [--no-simulate]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, CpuMeter, emit, machine

os.chdir(ROOT)

from harness.analysis.stats import load_trials  # noqa: E402
from harness.core.scenario import load_scenario  # noqa: E402
from harness.live.run import run_scenario  # noqa: E402
from harness.sim.run import run_simulated  # noqa: E402

SCENARIO = "ticket-1348894"  # built-in, found by name from any directory
TARGETS = {"live": 200.0, "simulated": 10000.0}
TARGET_CPU_MS_PER_TRIAL = 4.0
TARGET_SERVER_P99_MS = 1.0


def _result(mode: str, run_dir: Path, elapsed: float, cpu: dict[str, Any], **extra: Any) -> dict[str, Any]:
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    df = load_trials(run_dir)
    n = len(df)
    wall = float(meta.get("wall_s") or elapsed)
    if mode == "live":
        err = df.loc[df["guard"] == "none", "server_offset_error_ms"].abs().dropna()
        extra["server_offset_p99_ms"] = float(err.quantile(0.99)) if len(err) else None
        extra["late"] = (meta.get("timing") or {}).get("late")
    return {"mode": mode, "trials": n, "planned": meta.get("planned_trials"), "runner_wall_s": wall,
            "end_to_end_s": elapsed, "trials_per_s": n / wall if wall > 0 else None,
            "end_to_end_trials_per_s": n / elapsed if elapsed > 0 else None,
            "interrupted": bool(meta.get("interrupted")), "cpu_cores": cpu, **extra}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, nargs="*", default=None,
                   help="live runs: trials in flight, one run each (default: the scenario's)")
    p.add_argument("--lead-ms", type=float, default=None,
                   help="live runs: a trial's lead before its first timed request (default: the scenario's)")
    p.add_argument("--trials", type=int, default=None, help="trials per offset (default: the scenario's, 8)")
    p.add_argument("--workers", type=int, default=None, help="simulated: processes (default: one per CPU)")
    p.add_argument("--sim-repeat", type=int, default=3, help="simulated runs (default 3)")
    p.add_argument("--no-simulate", action="store_true", help="live only")
    p.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    args = p.parse_args(argv)
    base = load_scenario(SCENARIO).with_overrides(trials_per_offset=args.trials)
    conc = args.concurrency if args.concurrency is not None else [base.run.concurrency]
    if any(c < 1 for c in conc) or (args.trials is not None and args.trials < 1) or args.sim_repeat < 1:
        p.error("--concurrency, --trials and --sim-repeat must be >= 1")
    if args.lead_ms is not None and args.lead_ms <= 0:
        p.error("--lead-ms must be > 0")
    lead_ms = args.lead_ms if args.lead_ms is not None else base.run.lead_ms
    res: dict[str, Any] = {"benchmark": "sweep_throughput", "scenario": SCENARIO, "machine": machine(),
                           "targets_trials_per_s": TARGETS, "target_harness_cpu_ms_per_trial": TARGET_CPU_MS_PER_TRIAL,
                           "target_server_offset_p99_ms": TARGET_SERVER_P99_MS, "runs": []}
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        out = args.out or Path(tmp)
        for c in conc:
            scenario = dataclasses.replace(base, run=dataclasses.replace(base.run, concurrency=c, lead_ms=lead_ms))
            t0, own0 = time.monotonic(), time.process_time()
            with CpuMeter() as cpu:
                run_dir, _ = run_scenario(scenario, out)
            own = time.process_time() - own0
            r = _result("live", run_dir, time.monotonic() - t0, cpu.result, concurrency=c, lead_ms=lead_ms)
            r["harness_cpu_ms_per_trial"] = 1000 * own / r["trials"] if r["trials"] else None
            res["runs"].append(r)
        if args.no_simulate:
            res["simulated_note"] = "skipped (--no-simulate)"
        for _ in range(0 if args.no_simulate else args.sim_repeat):
            t0 = time.monotonic()
            with CpuMeter() as cpu:
                run_dir, _ = run_simulated(base, out, workers=args.workers)
            meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
            res["runs"].append(_result("simulated", run_dir, time.monotonic() - t0, cpu.result,
                                       workers=args.workers or os.cpu_count(),
                                       virtual_s=(meta.get("simulate") or {}).get("virtual_s")))
    return emit(res, table)


def _met(r: dict[str, Any]) -> bool:
    if (r["trials_per_s"] or 0) < TARGETS[r["mode"]]:
        return False
    if r["mode"] != "live":
        return True
    own, p99 = r.get("harness_cpu_ms_per_trial"), r.get("server_offset_p99_ms")
    return own is not None and own <= TARGET_CPU_MS_PER_TRIAL and p99 is not None and p99 <= TARGET_SERVER_P99_MS


def table(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"full sweep of {SCENARIO} (nproc={m['nproc']}, load before={m['loadavg_1m']:.2f})",
             f"{'mode':<10} {'n/lead ms':>9} {'trials':>7} {'runner s':>9} {'trials/s':>9} {'end-to-end s':>12} "
             f"{'trials/s':>9}  {'target':>7}  {'harness cpu/trial':>17}  {'server p99':>10}  cpu ours/others"]
    for r in res["runs"]:
        c = r["cpu_cores"]
        cpu = f"{c['ours_cores']:.2f}/{c['others_cores']:.2f}" if c.get("others_cores") is not None else ""
        flight = f"{r['concurrency']}/{r['lead_ms']:g}" if r["mode"] == "live" else f"{r['workers']} proc"
        own = r.get("harness_cpu_ms_per_trial")
        p99 = r.get("server_offset_p99_ms")
        ok = "met" if _met(r) else "MISSED"
        lines.append(f"{r['mode']:<10} {flight:>9} {r['trials']:>7} {r['runner_wall_s']:9.2f} {r['trials_per_s']:9.1f} "
                     f"{r['end_to_end_s']:12.2f} {r['end_to_end_trials_per_s']:9.1f}  {ok:>7}  "
                     f"{'-' if own is None else f'{own:.2f} ms':>17}  {'-' if p99 is None else f'{p99:.2f} ms':>10}  {cpu}")
    if res.get("simulated_note"):
        lines.append(res["simulated_note"])
    lines.append(f"targets: live >= {TARGETS['live']:g} trials/s with server-side offset p99 <= "
                 f"{TARGET_SERVER_P99_MS:g} ms and <= {TARGET_CPU_MS_PER_TRIAL:g} ms of harness CPU per trial; "
                 f"simulated >= {TARGETS['simulated']:g} trials/s (runner wall time).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

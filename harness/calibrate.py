"""`race-harness calibrate`: run a scenario live and simulated and overlay both on the race model.

The computation is `harness.analysis.calibration` (pure); this module runs the two modes, then writes
into the live run folder: `calibration.json` (the coverage dict), `calibration.png` (per
guard: the model line, live points with their 95% intervals, simulated points) and
`calibration.html`, and rebuilds the live run's report, which then has a calibration section.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from harness.analysis.calibration import (
    COVERAGE_HEADERS,
    MIN_COVERAGE,
    calibrate_trials,
    coverage_rows,
    power_decide,
    verdict_sentence,
)
from harness.analysis.model import model_from_run
from harness.analysis.stats import load_trials, ordered_guards
from harness.core.scenario import Scenario
from harness.live.run import run_scenario
from harness.report import build_report
from harness.report.plots import plot_calibration
from harness.rounds import ReplayRounds, RoundLoop
from harness.runfolder import read_run_json
from harness.sim.run import run_simulated


@dataclass(frozen=True)
class CalibrationRun:
    live_dir: Path
    simulated_dir: Path | None
    result: dict[str, Any]
    json_path: Path
    png_path: Path
    html_path: Path
    interrupted: bool


def run_calibration(scenario: Scenario, out: Path, *, simulate: bool = True, min_coverage: float = MIN_COVERAGE,
                    gate_on: str = "model", progress: Callable[[Any, Any], None] | None = None,
                    on_phase: Callable[[str], None] | None = None, max_trials: int | None = None) -> CalibrationRun:
    """Run live (and simulated, same plan), build both reports, compute and write the calibration.

    `max_trials`: a budget for adaptive rounds (harness.rounds) that add trials to the unguarded
    curve's bins too small to detect a deviation from the model; the simulated run replays the live
    run's rounds. None: the grid only."""
    say = on_phase or (lambda _msg: None)
    say("live run")
    rounds = None
    if max_trials is not None:
        mock = scenario.mock
        rounds = RoundLoop(scenario, power_decide(mock.change_delay, mock.settle_ms, mock.policy),
                           max_trials=max_trials, early_stop=True)
    live_dir, interrupted = run_scenario(scenario, out, progress=progress, handle_sigint=True, rounds=rounds)
    sim_dir: Path | None = None
    note = ""
    if interrupted:
        note = "live run interrupted: simulated run skipped"
    elif not simulate:
        note = "simulated run not requested (--no-simulate)"
    else:
        say("simulated run")
        sim_dir, sim_interrupted = run_simulated(scenario, out,
                                                 rounds=None if rounds is None else ReplayRounds(rounds))
        build_report(sim_dir)
        interrupted = interrupted or sim_interrupted
    meta = read_run_json(live_dir)
    live_df = load_trials(live_dir)
    sim_df = load_trials(sim_dir) if sim_dir is not None else None
    result, live_rates, sim_rates = calibrate_trials(live_df, sim_df, meta, min_coverage=min_coverage,
                                                     gate_on=gate_on)
    result["note"] = note
    result["live_run"] = str(live_dir)
    result["simulated_run"] = str(sim_dir) if sim_dir is not None else None
    json_path = live_dir / "calibration.json"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    png_path = plot_calibration(live_rates, sim_rates, model_from_run(meta), live_dir / "calibration.png")
    html_path = live_dir / "calibration.html"
    html_path.write_text(calibration_html(result, live_rates, sim_rates, png_path.name), encoding="utf-8")
    build_report(live_dir)  # after calibration.json: the report gets its calibration section
    return CalibrationRun(live_dir, sim_dir, result, json_path, png_path, html_path, interrupted)


# --------------------------------------------------------------------------- HTML


def calibration_html(result: dict[str, Any], live: pd.DataFrame, sim: pd.DataFrame | None, png_name: str) -> str:
    e = html.escape
    verdict = {"pass": "passed", "fail": "FAILED"}.get(result.get("verdict", ""), "INCONCLUSIVE")
    rows = ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in coverage_rows(result)]
    bins = []
    for guard in ordered_guards(live["guard"]):
        lv = live[(live["guard"] == guard) & (live["trials"] > 0)]
        sv = sim[sim["guard"] == guard].set_index("offset_ms") if sim is not None else None
        for r in lv.itertuples():
            s_rate = sv.loc[r.offset_ms, "rate"] if sv is not None and r.offset_ms in sv.index else None
            cov_m = r.ci_low - 1e-9 <= r.model <= r.ci_high + 1e-9 if not math.isnan(r.model) else None
            cov_c = (r.ci_low - 1e-9 <= r.conditional <= r.ci_high + 1e-9) if not math.isnan(r.conditional) else None
            bins.append("<tr>" + "".join(f"<td>{e(v)}</td>" for v in (
                guard, f"{r.offset_ms:g}", f"{r.races}/{r.trials}", f"{r.rate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]",
                f"{r.model:.2f}" + ("" if cov_m is None else (" ✓" if cov_m else " ✗")),
                "–" if math.isnan(r.conditional) else f"{r.conditional:.2f}" + (" ✓" if cov_c else " ✗"),
                "–" if s_rate is None or (isinstance(s_rate, float) and math.isnan(s_rate)) else f"{s_rate:.2f}",
                "–" if s_rate is None or (isinstance(s_rate, float) and math.isnan(s_rate)) else f"{r.rate - s_rate:+.2f}",
            )) + "</tr>")
    note = f"<p class='note'>{e(result['note'])}</p>" if result.get("note") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Calibration</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}td:first-child{{text-align:left}}
.passed{{color:#2ca02c}}.FAILED{{color:#d62728}}.INCONCLUSIVE{{color:#a60}}.note{{color:#a60}}</style></head><body>
<h1>Calibration: measured race rate vs the race model</h1>
<p class="{verdict}">{e(verdict_sentence(result))}.</p>
{note}
<p>model = the distribution-level race model (delay drawn from the configured distribution); conditional = the
model given each trial's pinned delay (the fraction of the bin's trials whose delay exceeds the offset, for the
unguarded curve). Live and simulated runs play the same plan (same trials, same delays).</p>
<img src="{e(png_name)}" alt="calibration plot" style="max-width:100%">
<h2>Coverage per guard</h2>
<table><tr>{''.join(f"<th>{e(h)}</th>" for h in COVERAGE_HEADERS)}</tr>
{''.join(rows)}</table>
<h2>Bins</h2>
<table><tr><th>guard</th><th>offset ms</th><th>races</th><th>live rate [95% CI]</th><th>model</th><th>conditional</th>
<th>simulated</th><th>live − simulated</th></tr>
{''.join(bins)}</table>
<p>Live run: <code>{e(str(result.get('live_run')))}</code>; simulated run: <code>{e(str(result.get('simulated_run')))}</code></p>
</body></html>
"""

"""`race-harness scorecard`: every hazard (harness.hazards) against the built-in subjects or a
team's service, each with the sequential gate, into one folder with a matrix.

Contract:
- `run_scorecard` runs each hazard's built-in scenario as `race-harness check` does (batches that
  stop once the gate decides, within the scenario's budget) into `<out>/scorecard-<UTC stamp>/runs/`,
  builds each run's report, and returns a `Scorecard`: one `Cell` per (hazard, subject).
- A subject is a service of an integration hazard (the reference connector's modes; with
  `hook_url`, the one service named "integration") or a harness guard of a core-mode hazard.
  Core-mode hazards do not apply to a team's service and are skipped for it.
- A cell's `verdict` is the gate's verdict on that subject alone: FAIL if one of its thresholds
  fails or it has more failed trials than `[gate] max_failed`; INCONCLUSIVE if a threshold is
  undecided or too many trials were not judged; PASS otherwise; "error" when the hazard could
  not run (its reason says why). `expected` is "pass" for the hazard's survivors and any team
  service, "fail" for the built-in known-bad references.
- `exit_code`: by the worst cell, judged against its expectation (a known-bad reference that
  FAILs is as expected; one that PASSes means the hazard did not show): any unexpected FAIL -> 1,
  else any error -> 2, else any INCONCLUSIVE -> 3, else 0 (VERDICT_EXIT_CODES).
- Files: `scorecard.json` (docs/outputs.md) and `scorecard.html` (harness.report.scorecard).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import RaceHarnessError, StorageError
from harness.hazards import get_hazard, hazard_ids
from harness.hazards.base import Hazard
from harness.report.scorecard import (
    SCORECARD_SCHEMA_VERSION,
    Cell,
    Scorecard,
    write_html,
)
from harness.runfolder import new_run_dir


def parse_hazard_list(raw: str | None) -> list[str]:
    """`--hazards id,id` (None: every hazard, in catalogue order)."""
    if raw is None:
        return hazard_ids()
    wanted = [x.strip() for x in raw.split(",") if x.strip()]
    if not wanted:
        raise RaceHarnessError(f"--hazards: expected a comma-separated list of ids among {', '.join(hazard_ids())}")
    for hid in wanted:
        get_hazard(hid)  # ScenarioError naming the known ids
    return wanted


def run_scorecard(hazards: Sequence[str], out: Path, *, target_url: str | None = None, hook_url: str | None = None,
                  simulate: bool = False, trials: int | None = None,
                  on_hazard: Callable[[str], None] | None = None,
                  overrides: dict[str, Any] | None = None) -> Scorecard:
    """Run the hazards and write scorecard.json + scorecard.html (module docstring).

    `trials` overrides each scenario's trials per offset and caps each run at its grid; `overrides` is passed to
    `Scenario.with_overrides` for a team's service (e.g. a feed URL where supported)."""
    folder = new_run_dir(out, "scorecard")  # reports/scorecard-<timestamp>/, like a run folder
    try:
        (folder / "runs").mkdir()
    except OSError as err:
        raise StorageError(f"cannot create {folder / 'runs'}: {err.strerror or err}") from None
    team = hook_url or (overrides or {}).get("feed")
    card = Scorecard(folder, datetime.now(timezone.utc).isoformat(timespec="seconds"), str(team or "built-in"), [])
    began = time.monotonic()
    for hid in hazards:
        hazard = get_hazard(hid)
        if team and hazard.subjects == "guards":
            continue  # the harness's own guards: nothing of a team's service is tested there
        if on_hazard is not None:
            on_hazard(hid)
        card.cells += _run_hazard(hazard, folder, team=bool(team), target_url=target_url, hook_url=hook_url,
                                  simulate=simulate, trials=trials, overrides=overrides or {})
        card.wall_s = time.monotonic() - began
        _write(card)  # after every hazard: an interrupted scorecard keeps what it measured
    write_html(card, folder / "scorecard.html")
    return card


def _write(card: Scorecard) -> None:
    path = card.folder / "scorecard.json"
    try:
        path.write_text(json.dumps(card.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err.strerror or err}") from None


def _subjects_of(hazard: Hazard, team: bool) -> list[str]:
    from harness.core.scenario import load_scenario

    if team:
        return ["integration"]
    return list(load_scenario(hazard.scenario).guards.names)


def _run_hazard(hazard: Hazard, folder: Path, *, team: bool, target_url: str | None, hook_url: str | None, simulate: bool,
                trials: int | None, overrides: dict[str, Any]) -> list[Cell]:
    from harness.analysis.rounds import threshold_decide
    from harness.core.adaptive import CHECK_BUDGET_GRIDS
    from harness.core.scenario import load_scenario
    from harness.report import build_report
    from harness.rounds import RoundLoop

    expected = {s: "pass" if team or s in hazard.survivors else "fail" for s in _subjects_of(hazard, team)}
    try:
        scenario = load_scenario(hazard.scenario).with_overrides(trials_per_offset=trials, target_url=target_url,
                                                                 hook_url=hook_url, **overrides)
        # `trials` given: the grid only (a quick look); else the scenario's budget (sized to decide).
        budget = scenario.n_trials if trials is not None else (
            scenario.gate.max_trials or CHECK_BUDGET_GRIDS * scenario.n_trials)
        rounds = RoundLoop(scenario, threshold_decide(scenario.thresholds, scenario.gate), max_trials=budget,
                           early_stop=True)
        if simulate and hazard.simulate:
            from harness.sim.run import run_simulated

            run_dir, _ = run_simulated(scenario, folder / "runs", rounds=rounds)
        else:
            from harness.live.run import run_scenario

            run_dir, _ = run_scenario(scenario, folder / "runs", rounds=rounds)
        report = build_report(run_dir)
    except RaceHarnessError as err:
        return [Cell(hazard.id, s, "error", e, reasons=(str(err),)) for s, e in expected.items()]
    summary = report.summary
    rel = run_dir.relative_to(folder).as_posix()
    evidence = next((f"{rel}/{name}" for name in ("reproduce.sh", "audits.jsonl", "trials.csv")
                     if (run_dir / name).exists()), "")
    return [_cell(hazard.id, s, e, summary, rel, f"{rel}/{report.paths.html.name}", evidence)
            for s, e in expected.items()]


def subject_verdict(summary: dict[str, Any], subject: str) -> tuple[str, tuple[str, ...]]:
    """The gate's verdict on one subject of a run's summary.json, and the gate lines about it."""
    gate = summary.get("gate") or {}
    policy = gate.get("policy") or {}
    mine = [t for t in gate.get("thresholds") or [] if t.get("guard") == subject]
    verdicts = [str(t.get("verdict")) for t in mine]
    reasons = [str(t.get("reason")) for t in mine if t.get("verdict") != "pass"]
    counts = (gate.get("outcomes") or {}).get(subject) or {}
    total = sum(int(v) for v in counts.values())
    if int(counts.get("failed", 0)) > int(policy.get("max_failed", 0)):
        verdicts.append("fail")
        reasons.append(f"{counts['failed']} of {total} trials failed their own job")
    if total and int(counts.get("not_judged", 0)) / total > float(policy.get("max_not_judged_fraction", 0.05)):
        verdicts.append("inconclusive")
        reasons.append(f"{counts['not_judged']} of {total} trials not judged")
    if not total:
        return "inconclusive", ("no trials",)
    verdict = "fail" if "fail" in verdicts else "pass" if verdicts and all(v == "pass" for v in verdicts) \
        else "inconclusive"
    return verdict, tuple(reasons)


def _cell(hazard: str, subject: str, expected: str, summary: dict[str, Any], run_dir: str, report: str,
          evidence: str) -> Cell:
    verdict, reasons = subject_verdict(summary, subject)
    g = (summary.get("guards") or {}).get(subject) or {}
    counts = ((summary.get("gate") or {}).get("outcomes") or {}).get(subject) or {}
    return Cell(hazard, subject, verdict, expected, races=int(g.get("races", 0)), trials=int(g.get("trials", 0)),
                rate=g.get("rate"), ci_low=g.get("ci_low"), ci_high=g.get("ci_high"),
                not_judged=int(counts.get("not_judged", 0)), failed=int(counts.get("failed", 0)),
                outcomes={k: int(v) for k, v in (g.get("outcomes") or {}).items() if v},
                reasons=reasons, run_dir=run_dir, report=report, evidence=evidence)


def format_matrix(card: Scorecard) -> list[str]:
    """The console matrix: one row per hazard, one column per subject."""
    subjects = card.subjects
    width = max([len(h) for h in card.hazards] + [6])
    lines = [" " * width + "  " + "  ".join(f"{s:<28}" for s in subjects)]
    for hid in card.hazards:
        row = []
        for s in subjects:
            c = card.cell(hid, s)
            row.append(f"{_describe(c):<28}")
        lines.append(f"{hid:<{width}}  " + "  ".join(row))
    return lines


def _describe(c: Cell | None) -> str:
    if c is None:
        return "-"
    mark = "" if c.score == c.verdict or c.expected == "pass" else "*"
    if c.verdict == "error" or c.rate is None:
        return f"{c.verdict.upper()}{mark}" + (f" {c.failed} failed" if c.failed else "")
    failed = f" +{c.failed} failed" if c.failed else ""
    return f"{c.verdict.upper()}{mark} {c.races}/{c.trials} [{c.ci_low:.2f},{c.ci_high:.2f}]{failed}"


__all__ = ["SCORECARD_SCHEMA_VERSION", "Cell", "Scorecard", "format_matrix", "parse_hazard_list", "run_scorecard",
           "subject_verdict"]

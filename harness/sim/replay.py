"""Replay: re-run one trial of a run folder alone in simulated mode, and show it as text.

A simulated trial replays exactly (its order id, latency draws and delays derive
from the seed and its trial id), so `replay` compares the replayed trials.csv
row with the recorded one: any difference in a simulated run is a bug; in a
live run it is the real network's variation.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core import history as h
from harness.core.history import rel_ms
from harness.core.plan import Plan, build_plan
from harness.rounds import round_plans
from harness.core.results import TrialResult
from harness.core.scenario import Scenario, parse_scenario
from harness.errors import RaceHarnessError
from harness.sim.clock import VirtualClock, run_virtual
from harness.sim.run import SimRunner, build_sim_app, check_simulatable
from mock_orders_api.dates import DATE_SOURCE, virtual_dates


@dataclass
class _MemoryWriter:
    """A RunWriter stand-in that keeps the trials in memory."""

    trials: list[tuple[TrialResult, list[dict[str, Any]], dict[str, Any] | None]] = field(default_factory=list)

    def add(self, result: TrialResult, events: list[dict[str, Any]], audit: dict[str, Any] | None) -> None:
        self.trials.append((result, events, audit))


@dataclass
class Replay:
    result: TrialResult
    events: list[dict[str, Any]]  # history.jsonl entries (ms relative to t0)
    audit: dict[str, Any] | None
    t0_ns: int | None
    recorded: dict[str, str] | None  # the trial's row in trials.csv (as text), None if absent
    simulated_run: bool  # the run folder itself was simulated (so the replay must match exactly)
    differences: list[tuple[str, str, str]]  # (column, recorded, replayed)


def replay_trial(scenario: Scenario, trial_id: int, transport: str = "direct",
                 rounds: dict[str, Any] | None = None) -> tuple[TrialResult, list[dict[str, Any]],
                                                                dict[str, Any] | None, int | None]:
    """Run one planned trial alone in simulated mode: (row, history events, audit, t0 virtual ns).

    `rounds`: run.json's `rounds` record of a run played in rounds (the trial is looked up in them)."""
    check_simulatable(scenario)
    plans = round_plans(scenario, rounds) if rounds and rounds.get("plans") else [build_plan(scenario)]
    plan = Plan(plans[0].scenario_name, plans[0].seed, tuple(t for p in plans for t in p.trials))
    try:
        planned = plan.by_id(trial_id)
    except KeyError:
        raise RaceHarnessError(f"trial {trial_id}: not in the plan of scenario {scenario.name!r} "
                               f"({len(plan.trials)} trials)") from None
    single = Plan(scenario_name=plan.scenario_name, seed=plan.seed, trials=(planned,))

    async def _one() -> tuple[_MemoryWriter, SimRunner]:
        clock = VirtualClock()
        DATE_SOURCE.set(virtual_dates(clock.now_ns))
        app, creds = build_sim_app(scenario, clock)
        writer = _MemoryWriter()
        runner = SimRunner(scenario, single, writer, app=app, clock=clock, transport=transport, credentials=creds,
                           record_t0=True)
        gc.freeze()  # see harness.sim.run._execute_part
        await runner.run()
        return writer, runner

    writer, runner = run_virtual(_one())
    if not writer.trials:
        raise RaceHarnessError(f"trial {trial_id}: the replay produced no result")
    result, events, audit = writer.trials[0]
    return result, events, audit, (runner.t0_ns or {}).get(trial_id)


def replay(run_dir: Path, trial_id: int) -> Replay:
    """Replay trial `trial_id` of a run folder from its run.json (scenario, seed, simulation settings)."""
    meta_path = run_dir / "run.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RaceHarnessError(f"{meta_path}: no such file (is {run_dir} a run folder?)") from None
    except (OSError, ValueError) as err:
        raise RaceHarnessError(f"{meta_path}: unreadable: {err}") from None
    if not isinstance(meta.get("scenario"), dict):
        raise RaceHarnessError(f"{meta_path}: no scenario recorded")
    scenario = parse_scenario(meta["scenario"], str(meta_path))
    sim = meta.get("simulate") or {}
    simulated = (meta.get("target") or {}).get("kind") == "simulated"
    transport = sim.get("transport", "direct") if simulated else "direct"
    result, events, audit, t0 = replay_trial(scenario, trial_id, transport, meta.get("rounds"))
    recorded = _recorded_row(run_dir / "trials.csv", trial_id)
    replayed = _as_csv_row(result)
    diffs = [] if recorded is None else [(k, recorded.get(k, ""), v) for k, v in replayed.items()
                                         if recorded.get(k, "") != v]
    return Replay(result, events, audit, t0, recorded, simulated, diffs)


def _as_csv_row(result: TrialResult) -> dict[str, str]:
    """The row exactly as trials.csv holds it (csv module formatting)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TrialResult.columns())
    w.writeheader()
    w.writerow(result.row())
    buf.seek(0)
    return next(csv.DictReader(buf))


def _recorded_row(path: Path, trial_id: int) -> dict[str, str] | None:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("trial_id") == str(trial_id):
                    return row
    except FileNotFoundError:
        return None
    return None


def format_timeline(r: Replay) -> str:
    """The replayed trial as text: its requests, the mock's record, the outcome, the comparison."""
    res = r.result
    lines = [f"trial {res.trial_id} (seq {res.seq}): guard {res.guard}, offset {res.offset_ms:g} ms, "
             f"order {res.order_id}, Change delay {_ms(res.change_delay_ms)} ms",
             "times in ms relative to t0 (the Change's planned send time), virtual clock", "",
             f"{'request':<15} {'method':<6} {'planned':>9} {'sent':>9} {'response':>9} {'status':>6}  detail"]
    for ev in r.events:
        detail = ev.get("error") or _body_note(ev)
        lines.append(f"{ev['kind']:<15} {ev['method']:<6} {_ms(ev.get('planned_ms')):>9} {_ms(ev.get('sent_ms')):>9} "
                     f"{_ms(ev.get('response_ms')):>9} {ev.get('status', 0):>6}  {detail}")
    if r.audit is not None and r.t0_ns is not None:
        t0 = r.t0_ns
        lines += ["", "mock's record (server times):"]
        for c in r.audit.get("changes") or []:
            state = "accepted" if c.get("accepted") else f"refused ({c.get('status')})"
            lines.append(f"  Change {state:<16} arrived {_ms(rel_ms(c.get('arrivalNs'), t0)):>9}  acted {_ms(rel_ms(c.get('actedNs'), t0)):>9}"
                         f"  finished {_ms(rel_ms(c.get('finishedNs'), t0)):>9}")
        for inv in r.audit.get("invoices") or []:
            state = "accepted" if inv.get("accepted") else f"refused ({inv.get('status')})"
            against = inv.get("validatedAgainst")
            lines.append(f"  invoice {inv.get('invoiceValue')} {state:<10} arrived {_ms(rel_ms(inv.get('arrivalNs'), t0)):>9}  "
                         f"acted {_ms(rel_ms(inv.get('actedNs'), t0)):>9}"
                         + (f"  validated against {against}" if against is not None else ""))
        lines.append(f"  final value {r.audit.get('finalValue')}, invoiced total {r.audit.get('invoicedTotal')}, "
                     f"verdict {r.audit.get('verdict')}")
    lines += ["", f"outcome: {res.outcome}" + (f" ({res.error})" if res.error else "")
              + ("" if res.agree else f"; client and audit disagree: {res.disagreement}")]
    if r.recorded is None:
        lines.append("trials.csv: no row for this trial (interrupted run?)")
    elif not r.differences:
        lines.append("trials.csv: the replayed row is identical to the recorded one")
    else:
        what = ("MISMATCH: a simulated trial must replay exactly" if r.simulated_run
                else "expected variation: the recorded trial ran live (real network and clocks)")
        lines.append(f"trials.csv: {len(r.differences)} column(s) differ, {what}")
        for col, rec, rep in r.differences:
            lines.append(f"  {col:<24} recorded {rec:<24} replayed {rep}")
    return "\n".join(lines)


def _ms(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{float(x):.3f}"


def _body_note(ev: dict[str, Any]) -> str:
    body = ev.get("response_body")
    if not isinstance(body, dict):
        return ""
    if ev["kind"] == h.GET_CHANGES:
        reqs = body.get("requests") or []
        return f"{sum(1 for c in reqs if c.get('finished'))}/{len(reqs)} Change(s) finished"
    if ev["kind"] == h.GET_ORDER:
        return f"status {body.get('status')}, value {body.get('value')}"
    if ev["kind"] == h.CHANGE and "totalChangeValue" in body:
        return f"totalChangeValue {body['totalChangeValue']}, delayMs {body.get('delayMs')}"
    if "error" in body and isinstance(body["error"], dict):
        return f"{body['error'].get('code')}: {body['error'].get('message')}"
    if ev["kind"] == h.INVOICE:
        req = ev.get("request_body") or {}
        return f"invoiceValue {req.get('invoiceValue')}"
    return ""


__all__ = ["Replay", "format_timeline", "replay", "replay_trial"]

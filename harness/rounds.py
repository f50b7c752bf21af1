"""The round loop both drivers (live `harness.live.run`, simulated `harness.sim.run`) use.

A run is a sequence of rounds written into ONE run folder, against one target (the embedded mock
or the simulated setup is not restarted between rounds):

1. the scenario's grid, in batches of `harness.core.adaptive.batch_reps` repetitions (~4); after
   every batch the decision callback (`harness.analysis.rounds.Decide`) looks at every trial so
   far and, when `early_stop` is set, the run stops as soon as every threshold is decided (PASS or FAIL);
2. then, while thresholds are undecided and the budget `max_trials` allows, adaptive rounds
   (`harness.core.adaptive.next_cells`): more trials at the undecided bins and at new offsets
   bisecting each guard's race-window edges.

`max_trials` None means the grid only, in one round: exactly the plan `build_plan` gives (what
`run` does by default). The budget is never exceeded: a batch or round that would is cut.
Everything is seeded (`harness.core.plan.grid_batch` / `round_plan`), so the same scenario, seed
and budget give the same rounds. The record (`record()`) goes into run.json `rounds`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness.core.adaptive import batch_reps, next_cells, resolution_ms
from harness.core.plan import Plan, build_plan, grid_batch, round_plan
from harness.core.scenario import Scenario

if TYPE_CHECKING:
    from harness.analysis.rounds import Decide


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


class RoundLoop:
    """Plans round after round; `first()` once, then `next(run_dir)` after each round until None."""

    def __init__(self, scenario: Scenario, decide: Decide | None = None, *, max_trials: int | None = None,
                 early_stop: bool = False, say: Callable[[str], None] = _say) -> None:
        if max_trials is not None and max_trials < 1:
            raise ValueError(f"max_trials must be >= 1; got {max_trials}")
        self.scenario = scenario
        self.decide = decide
        self.max_trials = max_trials
        self.early_stop = early_stop and decide is not None
        self.say = say
        self._grid = build_plan(scenario)
        reps = scenario.sweep.trials_per_offset
        self._batch = reps if max_trials is None else batch_reps(reps)
        self._next_rep = 0
        self._resolution = resolution_ms(scenario.sweep.offsets_ms)
        self.plans: list[Plan] = []  # every round's plan, for `ReplayRounds`
        self._specs: list[dict[str, Any]] = []  # how each round was planned (run.json), for `round_plans`
        self.rounds: list[int] = []  # trials per round
        self._grid_run = 0  # trials of the grid planned so far (the adaptive rounds' ids follow the grid's)
        self.stopped_early = False
        self.stop_reason = ""

    @property
    def planned(self) -> int:
        return sum(self.rounds)

    def _remaining(self) -> int:
        return len(self._grid.trials) if self.max_trials is None else self.max_trials - self.planned

    def _emit(self, plan: Plan, spec: dict[str, Any], note: str = "") -> Plan | None:
        trials = plan.trials[:self._remaining()]
        if not trials:
            return None
        self._specs.append({**spec, "first_seq": self.planned, "trials": len(trials)})
        plan = Plan(plan.scenario_name, plan.seed, trials)
        self.plans.append(plan)
        self.rounds.append(len(trials))
        offsets = {t.offset_ms for t in trials}
        self.say(f"round {len(self.rounds)}: {len(trials)} trials at {len(offsets)} "
                 f"offset{'s' if len(offsets) != 1 else ''}{note}")
        return plan

    def _grid_batch(self, note: str = "") -> Plan | None:
        total = self.scenario.sweep.trials_per_offset
        reps = range(self._next_rep, min(self._next_rep + self._batch, total))
        self._next_rep = reps.stop
        batch = grid_batch(self.scenario, self._grid, reps, len(self.rounds) + 1, self.planned)
        span = f" {reps.start + 1}" if len(reps) == 1 else f"s {reps.start + 1}-{reps.stop}"
        where = "" if len(reps) == total else f" (grid repetition{span} of {total})"
        plan = self._emit(batch, {"grid_repetitions": [reps.start, reps.stop]}, where + note)
        self._grid_run += 0 if plan is None else len(plan.trials)
        return plan

    def first(self) -> Plan:
        plan = self._grid_batch()
        assert plan is not None  # max_trials >= 1 and a scenario has at least one cell
        return plan

    def next(self, run_dir: Path) -> Plan | None:
        """The next round after the trials in `run_dir`, or None: decided, out of budget, or nothing to add."""
        if self.max_trials is None:
            return None
        # The analysis (pandas) is imported here, at the first look, unless the caller did it already:
        # a simulated run while the first round's workers run (harness.sim.run `while_running`), a
        # live one before its timed trials (the CLI), so that no import falls between rounds.
        from harness.analysis.rounds import cell_counts
        from harness.analysis.stats import load_trials

        df = load_trials(run_dir)
        stop, undecided = self.decide(df) if self.decide is not None else (False, [])
        if stop and self.early_stop:
            if self._next_rep < self.scenario.sweep.trials_per_offset:
                self.stopped_early = True
            self.stop_reason = "every threshold decided"
            return None
        note = f", {len(undecided)} bins undecided" if self.decide is not None else ""
        if self._next_rep < self.scenario.sweep.trials_per_offset:
            plan = self._grid_batch(note)
            if plan is None:
                self.stop_reason = "budget spent"
            return plan
        cells = next_cells(cell_counts(df), undecided, per_cell=self._batch, budget=self._remaining(),
                           resolution=self._resolution)
        if not cells:
            self.stop_reason = "budget spent" if self._remaining() <= 0 else "nothing left to refine"
            return None
        first_id = len(self._grid.trials) + self.planned - self._grid_run
        plan = round_plan(self.scenario, cells, len(self.rounds) + 1, first_id, self.planned)
        new = len({o for _, o in cells} - set(self.scenario.sweep.offsets_ms))
        return self._emit(plan, {"first_id": first_id, "cells": [list(c) for c in cells]},
                          f" ({new} new){note}" if new else note)

    def record(self) -> dict[str, Any]:
        """run.json `rounds`: how the trials were spent."""
        return {"rounds": len(self.rounds), "trials_per_round": list(self.rounds), "budget": self.max_trials,
                "grid_trials": len(self._grid.trials), "stopped_early": self.stopped_early,
                "stop_reason": self.stop_reason, "plans": self._specs}


def round_plans(scenario: Scenario, record: dict[str, Any]) -> list[Plan]:
    """Every round's plan again, from run.json's `rounds` record (`sim.replay` re-runs one trial of
    a run with rounds: its id, seed and seq come from its round)."""
    grid = build_plan(scenario)
    out = []
    for k, spec in enumerate(record.get("plans") or [], start=1):
        if "grid_repetitions" in spec:
            plan = grid_batch(scenario, grid, range(*spec["grid_repetitions"]), k, spec["first_seq"])
        else:
            cells = [(str(g), float(o)) for g, o in spec["cells"]]
            plan = round_plan(scenario, cells, k, spec["first_id"], spec["first_seq"])
        out.append(Plan(plan.scenario_name, plan.seed, plan.trials[:spec["trials"]]))
    return out


class ReplayRounds:
    """Another run's rounds, replayed plan for plan (calibrate: the simulated run plays exactly the
    live run's trials, whatever its own outcomes would have decided). Same interface as RoundLoop."""

    def __init__(self, loop: RoundLoop) -> None:
        self._plans = list(loop.plans)
        self._record = loop.record()
        self._next = 0

    @property
    def planned(self) -> int:
        return sum(len(p.trials) for p in self._plans[:self._next])

    def first(self) -> Plan:
        self._next = 1
        return self._plans[0]

    def next(self, run_dir: Path) -> Plan | None:
        if self._next >= len(self._plans):
            return None
        self._next += 1
        return self._plans[self._next - 1]

    def record(self) -> dict[str, Any]:
        return {**self._record, "replayed": True}


__all__ = ["ReplayRounds", "RoundLoop", "round_plans"]

"""Adaptive rounds: the pure planner (harness.core.adaptive, plan.grid_batch / round_plan), the
decision callback (harness.analysis.rounds) and the loop (harness.rounds) in simulated mode:
seeded and reproducible, stops early when every threshold is decided, never beyond the budget."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.analysis.rounds import cell_counts, threshold_decide
from harness.core.adaptive import (
    batch_reps,
    bisection_offsets,
    describe_edges,
    next_cells,
    resolution_ms,
    window_edges,
)
from harness.core.plan import build_plan, derive_seed, grid_batch, round_plan
from harness.core.scenario import Scenario, parse_scenario
from harness.core.thresholds import Threshold
from harness.report import build_report
from harness.rounds import RoundLoop
from harness.sim.run import run_simulated

D_MS = 200  # fixed Change delay, settle 0: the unguarded guard races exactly at 0 < offset < D


def scenario(thresholds: list[dict[str, Any]] | None = None, reps: int = 4, seed: int = 5,
             offsets: list[float] | None = None) -> Scenario:
    data: dict[str, Any] = {
        "name": "rounds-test", "seed": seed,
        "mock": {"policy": "vulnerable", "change_delay": f"fixed:{D_MS}", "settle_ms": 0, "pin_delays": True},
        "order": {"items": [{"id": "1", "name": "Shirt", "quantity": 2, "price": 5000}], "shipping": 1000},
        "change": {"items_removed": [{"id": "1", "quantity": 1}]},
        "sweep": {"offsets_ms": offsets or [-100, 50, 150, 300], "trials_per_offset": reps},
        "guards": {"names": ["none", "finished-check"], "poll_interval_ms": 20, "timeout_ms": 3000},
        "run": {"concurrency": 20, "lead_ms": 200},
        "thresholds": thresholds or [],
    }
    return parse_scenario(data, "mem")


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- the planner (pure)


def test_batches_split_the_grid_in_about_four() -> None:
    assert [batch_reps(n) for n in (1, 3, 4, 8, 20, 21)] == [1, 1, 1, 2, 5, 6]
    assert resolution_ms([-100, 50, 150]) == 100 / 16
    assert resolution_ms([0, 5, 10]) == 1.0 and resolution_ms([7]) == 1.0


def test_bisection_halves_between_racing_and_raceless_neighbours_down_to_the_resolution() -> None:
    counts = {("none", -100.0): (0, 4), ("none", 0.0): (3, 4), ("none", 100.0): (4, 4), ("none", 300.0): (0, 4),
              ("fc", -100.0): (0, 4), ("fc", 100.0): (0, 4)}
    assert bisection_offsets(counts, 1.0) == [("none", -50.0), ("none", 200.0)]
    # rounded to the resolution, strictly between the neighbours
    assert bisection_offsets({("g", 0.0): (1, 2), ("g", 10.0): (0, 2)}, 4.0) == [("g", 4.0)]
    # neighbours no farther apart than the resolution: nothing left to halve
    assert bisection_offsets({("g", 0.0): (1, 2), ("g", 3.0): (0, 2)}, 4.0) == []
    # a cell without judged trials is not a neighbour
    assert bisection_offsets({("g", 0.0): (1, 2), ("g", 5.0): (0, 0), ("g", 10.0): (1, 2)}, 1.0) == []


def test_next_round_puts_undecided_cells_first_and_stops_at_the_budget() -> None:
    counts = {("none", 0.0): (2, 4), ("none", 100.0): (0, 4)}
    cells = next_cells(counts, [("fc", 50.0), ("fc", -50.0)], per_cell=2, budget=100, resolution=1.0)
    assert cells == [("fc", -50.0)] * 2 + [("fc", 50.0)] * 2 + [("none", 50.0)] * 2
    assert next_cells(counts, [("fc", 50.0)], per_cell=2, budget=3, resolution=1.0) == [("fc", 50.0)] * 2 + [
        ("none", 50.0)]
    assert next_cells(counts, [], per_cell=2, budget=0, resolution=1.0) == []
    assert next_cells(counts, [], per_cell=2, budget=9, resolution=1.0, bisect=False) == []
    with pytest.raises(ValueError):
        next_cells(counts, [], per_cell=0, budget=9, resolution=1.0)


def test_window_edges_are_the_outermost_racing_offsets_and_their_raceless_neighbours() -> None:
    counts = {("none", -151.0): (1, 4), ("none", -154.0): (0, 4), ("none", -1.0): (2, 4), ("none", 2.0): (0, 4),
              ("none", -50.0): (4, 4), ("fc", 0.0): (0, 8), ("open", 10.0): (1, 1),
              ("half", 0.0): (0, 2), ("half", 5.0): (1, 2)}
    edges = window_edges(counts)
    assert edges["none"] == {"low": -151.0, "high": -1.0, "low_gap": 3.0, "high_gap": 3.0, "edge_ms": 3.0}
    assert edges["fc"] is None
    assert edges["open"] == {"low": 10.0, "high": 10.0, "low_gap": None, "high_gap": None, "edge_ms": None}
    assert describe_edges("none", edges["none"]) == "none race window -151 ... -1 ms, edges +-3 ms"
    assert describe_edges("open", edges["open"]) == ("open race window 10 ... 10 ms, low edge open (no raceless "
                                                     "offset beyond), high edge open (no raceless offset beyond)")
    assert edges["half"] == {"low": 5.0, "high": 5.0, "low_gap": 5.0, "high_gap": None, "edge_ms": None}
    assert describe_edges("half", edges["half"]).endswith("low edge +-5 ms, high edge open (no raceless offset beyond)")
    assert describe_edges("fc", None) == "fc: no races"


def test_grid_batches_are_the_grid_and_rounds_derive_from_the_seed() -> None:
    scn = scenario(reps=5)
    grid = build_plan(scn)
    batches = [grid_batch(scn, grid, range(a, min(a + 2, 5)), k + 1, 0) for k, a in enumerate(range(0, 5, 2))]
    ids = sorted(t.trial_id for b in batches for t in b.trials)
    assert ids == sorted(t.trial_id for t in grid.trials)
    by_id = {t.trial_id: t for t in grid.trials}
    assert all((t.trial_seed, t.change_delay_ms) == (by_id[t.trial_id].trial_seed, by_id[t.trial_id].change_delay_ms)
               for b in batches for t in b.trials)
    assert grid_batch(scn, grid, range(5), 1, 0) == grid  # the whole grid in one round is the plan itself

    cells = [("none", 75.0), ("none", 75.0), ("finished-check", 300.0)]
    r = round_plan(scn, cells, 3, 40, 17)
    assert r == round_plan(scn, cells, 3, 40, 17)
    assert [t.seq for t in r.trials] == [17, 18, 19] and sorted(t.trial_id for t in r.trials) == [40, 41, 42]
    seeds = {(t.guard, t.offset_ms, t.trial_seed) for t in r.trials}
    assert seeds == {("none", 75.0, derive_seed(5, "round", 3, "none", "75", 0)),
                     ("none", 75.0, derive_seed(5, "round", 3, "none", "75", 1)),
                     ("finished-check", 300.0, derive_seed(5, "round", 3, "finished-check", "300", 0))}
    assert all(t.change_delay_ms == D_MS for t in r.trials)  # pinned from the configured distribution


# --------------------------------------------------------------------------- the decision callback


def frame(data: dict[tuple[str, float], tuple[int, int]]) -> pd.DataFrame:
    out = []
    for (guard, offset), (races, n) in data.items():
        out += [{"guard": guard, "offset_ms": offset, "outcome": "race" if i < races else "clean"} for i in range(n)]
    return pd.DataFrame(out)


def test_threshold_decide_stops_only_when_every_threshold_is_decided() -> None:
    fc = Threshold("finished-check", max_upper=0.5, min_abs_offset_ms=50)
    none = Threshold("none", min_lower=0.5, offset_range_ms=(50, 150))
    decide = threshold_decide([fc, none])
    few = frame({("finished-check", 50.0): (0, 2), ("finished-check", -100.0): (0, 20),
                 ("none", 50.0): (20, 20), ("none", 150.0): (20, 20), ("none", 300.0): (0, 2)})
    assert decide(few) == (False, [("finished-check", 50.0)])
    enough = frame({("finished-check", 50.0): (0, 20), ("finished-check", -100.0): (0, 20),
                    ("none", 50.0): (20, 20), ("none", 150.0): (20, 20)})
    assert decide(enough) == (True, [])
    assert threshold_decide([])(enough) == (False, [])  # no thresholds: nothing to stop for
    assert decide(enough.iloc[:0]) == (False, [])  # empty windows are undecided
    with_indeterminate = pd.concat([few, pd.DataFrame([{"guard": "finished-check", "offset_ms": 50.0,
                                                         "outcome": "indeterminate"}] * 30)])
    assert cell_counts(with_indeterminate)[("finished-check", 50.0)] == (0, 2)


def test_a_guard_failing_its_job_gets_no_more_trials() -> None:
    """Failed trials only accumulate: a guard past max_failed FAILs whatever its bins say, so its
    bins (undecided for lack of judged trials) are not where further rounds go."""
    naive, robust = Threshold("naive", max_upper=0.25), Threshold("robust", max_upper=0.25)
    decide = threshold_decide([naive, robust])
    rows = pd.concat([frame({("robust", 0.0): (0, 5)}),
                      pd.DataFrame([{"guard": "naive", "offset_ms": 0.0, "outcome": "no_invoice"}] * 5)])
    assert decide(rows) == (False, [("robust", 0.0)])
    done = pd.concat([frame({("robust", 0.0): (0, 20)}),
                      pd.DataFrame([{"guard": "naive", "offset_ms": 0.0, "outcome": "no_invoice"}] * 5)])
    assert decide(done) == (True, [])


# --------------------------------------------------------------------------- the loop, simulated


def run_rounds(tmp_path: Path, scn: Scenario, budget: int | None, early_stop: bool, workers: int = 1,
               name: str = "a") -> tuple[Path, RoundLoop, list[str]]:
    said: list[str] = []
    loop = RoundLoop(scn, threshold_decide(scn.thresholds), max_trials=budget, early_stop=early_stop,
                     say=said.append)
    run_dir, interrupted = run_simulated(scn, tmp_path / name, workers=workers, rounds=loop)
    assert not interrupted
    return run_dir, loop, said


UNDECIDED = [{"guard": "finished-check", "max_upper": 0.2, "min_abs_offset_ms": 50}]


def test_rounds_are_reproducible_from_the_seed(tmp_path: Path) -> None:
    scn = scenario(UNDECIDED, reps=4)
    a, loop, said = run_rounds(tmp_path, scn, 3 * scn.n_trials, early_stop=True, workers=1, name="a")
    b, _, _ = run_rounds(tmp_path, scn, 3 * scn.n_trials, early_stop=True, workers=2, name="b")
    assert (a / "trials.csv").read_bytes() == (b / "trials.csv").read_bytes()
    assert len(loop.rounds) > 4  # the grid's 4 batches, then adaptive rounds
    assert said[0] == "round 1: 8 trials at 4 offsets (grid repetition 1 of 4)"
    assert said[4].startswith("round 5: ") and "bins undecided" in said[4]
    got = rows(a)
    assert [int(r["seq"]) for r in got] == list(range(len(got)))
    assert len({r["trial_id"] for r in got}) == len(got)
    new = {float(r["offset_ms"]) for r in got} - set(scn.sweep.offsets_ms)
    assert new and all(r["guard"] == "none" for r in got if float(r["offset_ms"]) in new)  # bisected edges
    c, _, _ = run_rounds(tmp_path, scenario(UNDECIDED, reps=4, seed=6), 3 * scn.n_trials, early_stop=True, name="c")
    assert (c / "trials.csv").read_bytes() != (a / "trials.csv").read_bytes()


def test_check_stops_early_when_a_guard_is_clearly_fine_or_clearly_racing(tmp_path: Path) -> None:
    scn = scenario([{"guard": "none", "max_upper": 0.05, "offset_range_ms": [50, 150]},  # always races there
                    {"guard": "finished-check", "max_upper": 0.5, "min_abs_offset_ms": 50}],  # never races
                   reps=20)
    run_dir, loop, said = run_rounds(tmp_path, scn, 3 * scn.n_trials, early_stop=True)
    n = len(rows(run_dir))
    assert n < scn.n_trials and loop.stopped_early and len(said) == len(loop.rounds) < 4
    summary = build_report(run_dir).summary
    assert summary["rounds"]["stopped_early"] is True and summary["rounds"]["stop_reason"] == "every threshold decided"
    assert summary["rounds"]["trials_per_round"] == loop.rounds and sum(loop.rounds) == n
    assert summary["run"]["planned_trials"] == n
    edges = summary["rounds"]["window_edges"]
    assert edges["none"]["low"] == 50 and edges["none"]["high"] == 150 and edges["finished-check"] is None
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "stopped early: every threshold decided" in md
    assert "none race window 50 ... 150 ms, edges +-" in md and "none race window" in (run_dir / "report.html").read_text(
        encoding="utf-8")


@pytest.mark.parametrize("budget", [7, 40, 61])
def test_the_budget_is_never_exceeded(tmp_path: Path, budget: int) -> None:
    scn = scenario(UNDECIDED, reps=4)  # grid 32; the threshold stays undecided
    run_dir, loop, _ = run_rounds(tmp_path, scn, budget, early_stop=True)
    assert len(rows(run_dir)) == sum(loop.rounds) == min(budget, len(rows(run_dir))) <= budget
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert meta["rounds"]["budget"] == budget and meta["planned_trials"] == sum(loop.rounds)
    if budget > scn.n_trials:
        assert sum(loop.rounds) == budget and meta["rounds"]["stop_reason"] == "budget spent"


def test_run_without_a_budget_is_the_grid_in_one_round(tmp_path: Path) -> None:
    scn = scenario(UNDECIDED, reps=4)
    with_loop, loop, said = run_rounds(tmp_path, scn, None, early_stop=False, name="loop")
    plain, _ = run_simulated(scn, tmp_path / "plain", workers=1)
    assert (with_loop / "trials.csv").read_bytes() == (plain / "trials.csv").read_bytes()
    assert loop.rounds == [scn.n_trials] and said == [f"round 1: {scn.n_trials} trials at 4 offsets"]


def test_replay_finds_every_round_trial_and_reproduces_its_row(tmp_path: Path) -> None:
    from harness.sim.replay import replay

    scn = scenario(UNDECIDED, reps=4)
    run_dir, _, _ = run_rounds(tmp_path, scn, 2 * scn.n_trials, early_stop=True)
    got = rows(run_dir)
    grid_row = next(r for r in got if int(r["seq"]) == 9)  # a grid trial played in its batch (round 2)
    extra_row = got[-1]  # a trial of the last adaptive round
    assert int(extra_row["trial_id"]) >= scn.n_trials
    for row in (grid_row, extra_row):
        r = replay(run_dir, int(row["trial_id"]))
        assert r.simulated_run and r.differences == [], r.differences

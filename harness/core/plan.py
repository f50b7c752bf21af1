"""Turn a scenario into a seeded, fully determined list of trials.

Everything random about a run is decided here, from the scenario seed, before
any request is sent: which trial runs when, and (with `pin_delays`) how long
each Change takes on the mock. So a run can be repeated exactly, and a
surprising trial can be re-run alone from its `trial_seed`.

Trial ids are repetition-major (repetition, then guard, then offset): raising
or lowering `trials_per_offset` keeps every remaining trial's id, seed and
delay draw, and only adds or drops whole repetitions at the end.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from harness.core.scenario import Scenario


@dataclass(frozen=True)
class PlannedTrial:
    trial_id: int  # canonical id, independent of execution order
    seq: int  # position in execution order
    guard: str
    offset_ms: float  # planned t_invoice - t_change
    change_delay_ms: float | None  # pinned Change processing delay (None: the mock draws it)
    trial_seed: int  # derived from (scenario seed, trial_id) for any later per-trial randomness


@dataclass(frozen=True)
class Plan:
    scenario_name: str
    seed: int
    trials: tuple[PlannedTrial, ...]  # in execution order (trials[i].seq == trials[0].seq + i; 0 for a whole plan)
    _index: dict[int, PlannedTrial] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {t.trial_id: t for t in self.trials})

    def by_id(self, trial_id: int) -> PlannedTrial:
        """The trial with this canonical id; KeyError if the plan has none."""
        return self._index[trial_id]


def build_plan(scenario: Scenario) -> Plan:
    """Plan every trial of `scenario`: ids, execution order, pinned delays."""
    guards = scenario.guards.names
    offsets = scenario.sweep.offsets_ms
    reps = scenario.sweep.trials_per_offset
    seed = scenario.seed
    pin = scenario.mock.pin_delays
    delay = scenario.mock.change_delay

    per_guard: dict[str, list[PlannedTrial]] = {g: [] for g in guards}
    trial_id = 0
    for _rep in range(reps):
        for guard in guards:
            for offset in offsets:
                tseed = derive_seed(seed, "trial", trial_id)
                # A separate stream from trial_seed, so later users of Random(trial_seed)
                # do not replay the delay draw.
                drawn = delay.sample(random.Random(derive_seed(tseed, "change_delay"))) if pin else None
                per_guard[guard].append(
                    PlannedTrial(
                        trial_id=trial_id,
                        seq=-1,
                        guard=guard,
                        offset_ms=offset,
                        change_delay_ms=drawn,
                        trial_seed=tseed,
                    )
                )
                trial_id += 1

    order = _interleave(per_guard, random.Random(derive_seed(seed, "execution_order")))
    trials = tuple(replace(t, seq=seq) for seq, t in enumerate(order))
    return Plan(scenario_name=scenario.name, seed=seed, trials=trials)


def _interleave(per_guard: dict[str, list[PlannedTrial]], rng: random.Random) -> list[PlannedTrial]:
    """Blocked randomisation: every consecutive block of len(guards) trials holds each guard once.

    A plain shuffle would already mix guards, but blocks guarantee it: drift over
    the run (warm-up, GC, a noisy neighbour) then hits every guard alike instead
    of biasing whichever guard happened to cluster early. Within a guard, the
    offsets are shuffled so no offset is tied to a phase of the run.
    """
    queues = []
    for trials in per_guard.values():
        q = list(trials)
        rng.shuffle(q)
        queues.append(q)
    out: list[PlannedTrial] = []
    # A grid gives every guard the same number of trials; an adaptive round may not, and then
    # the last blocks hold only the guards that still have trials.
    for block in itertools.zip_longest(*queues):
        b = [t for t in block if t is not None]
        rng.shuffle(b)
        out.extend(b)
    return out


def grid_batch(scenario: Scenario, plan: Plan, reps: range, round_no: int, first_seq: int) -> Plan:
    """The grid trials of repetitions `reps`, as one round starting at `first_seq`.

    Ids, seeds and pinned delays are the grid plan's (ids are repetition-major, so a repetition's
    trials are one id range); the order is re-drawn per round, blocked by guard as in the grid."""
    per_rep = len(scenario.guards.names) * len(scenario.sweep.offsets_ms)
    if reps == range(scenario.sweep.trials_per_offset):  # the whole grid in one round: the plan itself
        return _renumber(plan, plan.trials, first_seq)
    chosen = [t for t in sorted(plan.trials, key=lambda t: t.trial_id) if t.trial_id // per_rep in reps]
    per_guard: dict[str, list[PlannedTrial]] = {g: [] for g in scenario.guards.names}
    for t in chosen:
        per_guard[t.guard].append(t)
    order = _interleave(per_guard, random.Random(derive_seed(scenario.seed, "execution_order", "round", round_no)))
    return _renumber(plan, order, first_seq)


def round_plan(scenario: Scenario, cells: Sequence[tuple[str, float]], round_no: int, first_id: int,
               first_seq: int) -> Plan:
    """An adaptive round: one trial per entry of `cells` ((guard, offset_ms), repeated for more trials).

    Each trial's seed derives from (scenario seed, round, guard, offset, index within its cell), so
    the round depends only on the seed and the cells; ids continue after `first_id`."""
    seen: dict[tuple[str, float], int] = {}
    per_guard: dict[str, list[PlannedTrial]] = {g: [] for g in scenario.guards.names}
    for k, (guard, offset) in enumerate(cells):
        index = seen.get((guard, offset), 0)
        seen[(guard, offset)] = index + 1
        tseed = derive_seed(scenario.seed, "round", round_no, guard, f"{offset:g}", index)
        drawn = (scenario.mock.change_delay.sample(random.Random(derive_seed(tseed, "change_delay")))
                 if scenario.mock.pin_delays else None)
        per_guard[guard].append(PlannedTrial(trial_id=first_id + k, seq=-1, guard=guard, offset_ms=offset,
                                             change_delay_ms=drawn, trial_seed=tseed))
    order = _interleave(per_guard, random.Random(derive_seed(scenario.seed, "execution_order", "round", round_no)))
    return Plan(scenario.name, scenario.seed, tuple(replace(t, seq=first_seq + i) for i, t in enumerate(order)))


def _renumber(plan: Plan, trials: Sequence[PlannedTrial], first_seq: int) -> Plan:
    return Plan(plan.scenario_name, plan.seed, tuple(replace(t, seq=first_seq + i) for i, t in enumerate(trials)))


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts; hashlib, because hash() is salted per process.

    Public: the plan, the simulated latency and anything else that needs a
    reproducible stream per (seed, purpose) derives it here."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


__all__ = ["Plan", "PlannedTrial", "build_plan", "derive_seed", "grid_batch", "round_plan"]

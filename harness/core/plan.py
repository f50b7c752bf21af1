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
import random
from dataclasses import dataclass, field, replace
from typing import Any

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
    trials: tuple[PlannedTrial, ...]  # in execution order (trials[i].seq == i)
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
    # Every guard has the same number of trials (offsets x repetitions).
    for block in zip(*queues):
        b = list(block)
        rng.shuffle(b)
        out.extend(b)
    return out


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts; hashlib, because hash() is salted per process.

    Public: the plan, the simulated latency and anything else that needs a
    reproducible stream per (seed, purpose) derives it here."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


__all__ = ["Plan", "PlannedTrial", "build_plan", "derive_seed"]

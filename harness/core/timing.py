"""Timing quality of a trial: the tolerance, the `late` test, and the concurrency controller.

A trial is `late` when its timing error exceeds the run's tolerance (docs/model.md,
"Timing quality"); a late trial is kept in trials.csv but not judged. The live
runner feeds each finished trial's `late` flag to a `ConcurrencyController`,
which lowers the number of trials in flight while late trials show up and raises
it again when they stop: a busy machine gives a slower run, not a wrong one.

Pure: no clock, no I/O, no event loop. The controller decides from the flags it
is fed, so it is tested with synthetic sequences.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

# The tolerance is at most this (ms), and at most a tenth of the smallest gap between swept offsets.
TOLERANCE_CAP_MS = 5.0
_TOLERANCE_GAP_FRACTION = 0.1


def default_tolerance_ms(offsets_ms: Sequence[float]) -> float:
    """The smaller of 5 ms and a tenth of the smallest gap between distinct swept offsets."""
    ordered = sorted(set(offsets_ms))
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    return min([TOLERANCE_CAP_MS, *(g * _TOLERANCE_GAP_FRACTION for g in gaps)])


def scenario_tolerance_ms(scenario_dict: Mapping[str, Any]) -> float:
    """`Scenario.timing_tolerance_ms` from the scenario's dict form (run.json, a load run's state)."""
    run = scenario_dict.get("run")
    explicit = run.get("timing_tolerance_ms") if isinstance(run, Mapping) else None
    if explicit is not None:
        return float(explicit)
    sweep = scenario_dict.get("sweep")
    return default_tolerance_ms((sweep.get("offsets_ms") if isinstance(sweep, Mapping) else None) or [])


def is_late(error_ms: float, tolerance_ms: float) -> bool:
    """|error| > tolerance; an unknown (NaN) error is not late (the trial has no timing to judge)."""
    return not math.isnan(error_ms) and abs(error_ms) > tolerance_ms


class ConcurrencyController:
    """AIMD on late trials: the number of trials allowed in flight, between 1 and `maximum`.

    * Decrease (halve) when at least `late_to_decrease` of the last `window`
      judged trials were late (2 of 32 by default: a late share above ~5%, the
      gate's not-judged allowance, would otherwise pile up).
    * After a decrease, the trials already in flight were started under the old
      limit: the next `old limit` completions are not counted against the new one
      (the window restarts after them).
    * Increase by 1 after every `window` consecutive completions without a late trial.

    With no late trial the limit never moves from `maximum`, so a quiet run is
    scheduled exactly as without the controller.
    """

    def __init__(self, maximum: int, *, window: int = 32, late_to_decrease: int = 2) -> None:
        if maximum < 1:
            raise ValueError(f"maximum: expected an integer >= 1; got {maximum}")
        if window < 1 or not 1 <= late_to_decrease <= window:
            raise ValueError(f"window {window} / late_to_decrease {late_to_decrease}: expected 1 <= late <= window")
        self.maximum = maximum
        self.window = window
        self.late_to_decrease = late_to_decrease
        self.limit = maximum
        self.lowest = maximum
        self._recent: list[bool] = []
        self._quiet = 0  # consecutive completions without a late trial
        self._ignore = 0  # completions still owed to the limit before the last decrease

    def observe(self, late: bool) -> int:
        """Count one finished trial; returns the limit for the trials started from now on."""
        if self._ignore:
            self._ignore -= 1
            return self.limit
        self._quiet = 0 if late else self._quiet + 1
        self._recent.append(late)
        if len(self._recent) > self.window:
            del self._recent[0]
        if sum(self._recent) >= self.late_to_decrease:
            if self.limit > 1:
                self._ignore = self.limit
                self.limit = max(1, self.limit // 2)
                self.lowest = min(self.lowest, self.limit)
            self._recent.clear()
        elif self._quiet >= self.window and self.limit < self.maximum:
            self.limit += 1
            self._quiet = 0
        return self.limit


__all__ = ["TOLERANCE_CAP_MS", "ConcurrencyController", "default_tolerance_ms", "is_late", "scenario_tolerance_ms"]

"""Gate thresholds and policy: the `Threshold` and `GatePolicy` records and their validators.

A threshold bounds one guard's race rate in every offset bin of a window, with an
anytime-valid sequential test (harness.analysis.gate evaluates it); `GatePolicy` is the
scenario's optional `[gate]` table (alpha, failed-trial allowance, not-judged fraction,
trial budget). Scenario files and run.json
both describe thresholds as tables; `Threshold.from_dict` is the only place
their fields are checked, and raises `ThresholdError` naming the field so each
caller can wrap it in its own error format (the scenario's `<file>: <path>:
expected X; got Y`, the report's run.json error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

FIELDS: tuple[str, ...] = ("guard", "max_upper", "min_lower", "min_abs_offset_ms", "offset_range_ms")


class ThresholdError(ValueError):
    """A threshold field is invalid: `field` ("" for the whole table), what was `expected`, what it `got`."""

    def __init__(self, field: str, expected: str, got: Any, raw: bool = False) -> None:
        self.field, self.expected, self.got, self.raw = field, expected, got, raw
        shown = str(got) if raw else repr(got)
        super().__init__(f"{field + ': ' if field else ''}expected {expected}; got {shown}")


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Threshold:
    guard: str
    max_upper: float | None = None
    min_lower: float | None = None
    min_abs_offset_ms: float = 0.0
    offset_range_ms: tuple[float, float] | None = None

    def window(self) -> str:
        """The offset window in words, e.g. "|offset| >= 50 ms"."""
        parts = []
        if self.offset_range_ms is not None:
            lo, hi = self.offset_range_ms
            parts.append(f"offset in [{lo:g}, {hi:g}] ms")
        if self.min_abs_offset_ms > 0:
            parts.append(f"|offset| >= {self.min_abs_offset_ms:g} ms")
        return ", ".join(parts) if parts else "all offsets"

    def describe(self) -> str:
        """One line, e.g. "finished-check: race rate <= 0.05 in every bin of |offset| >= 50 ms"."""
        bounds = []
        if self.min_lower is not None:
            bounds.append(f"race rate >= {self.min_lower:g}")
        if self.max_upper is not None:
            bounds.append(f"race rate <= {self.max_upper:g}")
        what = " and ".join(bounds) if bounds else "no bound set"
        return f"{self.guard}: {what} in every offset bin of {self.window()}"

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, guards: Sequence[str] | None = None, one_bound: bool = False
    ) -> Threshold:
        """Build from a scenario/run.json table; raises ThresholdError naming the bad field.

        `guards`: the guard names the threshold may name (None: any non-empty name).
        `one_bound`: require exactly one of max_upper / min_lower (scenario files do;
        a run.json written by another version is judged as it is).
        """
        if not isinstance(data, Mapping):
            raise ThresholdError("", "a table", type(data).__name__, raw=True)
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ThresholdError("", f"only the fields {list(FIELDS)}", sorted(unknown))
        guard = data.get("guard")
        if guards is not None and guard not in guards:
            raise ThresholdError("guard", f"a guard listed in guards.names {list(guards)}", guard)
        if not isinstance(guard, str) or not guard:
            raise ThresholdError("guard", "a guard name", guard)
        if one_bound and (data.get("max_upper") is None) == (data.get("min_lower") is None):
            got = "both" if data.get("max_upper") is not None else "neither"
            raise ThresholdError("", "exactly one of max_upper / min_lower", got, raw=True)
        bounds: dict[str, float | None] = {}
        for name in ("max_upper", "min_lower"):
            v = data.get(name)
            if v is not None and not (_finite(v) and 0 <= v <= 1):
                raise ThresholdError(name, "a rate between 0 and 1 (or none)", v)
            bounds[name] = None if v is None else float(v)
        min_abs = data.get("min_abs_offset_ms", 0.0)
        if min_abs is None:
            min_abs = 0.0
        if not _finite(min_abs) or min_abs < 0:
            raise ThresholdError("min_abs_offset_ms", "a finite number >= 0", min_abs)
        rng = data.get("offset_range_ms")
        offset_range: tuple[float, float] | None = None
        if rng is not None:
            if not isinstance(rng, (list, tuple)) or len(rng) != 2 or not all(_finite(x) for x in rng):
                raise ThresholdError("offset_range_ms", "[low, high] (two numbers)", rng)
            if rng[0] > rng[1]:
                raise ThresholdError("offset_range_ms", "low <= high", list(rng))
            offset_range = (float(rng[0]), float(rng[1]))
        return cls(guard, bounds["max_upper"], bounds["min_lower"], float(min_abs), offset_range)


# A gate verdict's process exit code (harness.cli: EXIT_OK, EXIT_GATE_FAILED, EXIT_INCONCLUSIVE); here, in a
# module without heavy imports, so load mode's exit code needs neither pandas nor the CLI.
VERDICT_EXIT_CODES: Mapping[str, int] = {"pass": 0, "fail": 1, "inconclusive": 3}

POLICY_FIELDS: tuple[str, ...] = ("alpha", "max_failed", "max_not_judged_fraction", "max_trials")


@dataclass(frozen=True)
class GatePolicy:
    """How the gate judges, beyond the thresholds (scenario `[gate]`, every field optional).

    alpha: error level of each sequential verdict (false PASS <= alpha, false FAIL <= alpha).
    max_failed: trials per guard allowed to fail the guard's / integration's own job
      (no_invoice, guard_timeout) before the gate FAILS; 0 by default: such a trial is a bug.
    max_not_judged_fraction: share of a guard's trials that may be not judged (indeterminate,
      late) before the verdict is INCONCLUSIVE: excluded trials could hide where races are.
    max_trials: the run's trial budget for further rounds (None: the scenario's grid only).
    """

    alpha: float = 0.05
    max_failed: int = 0
    max_not_judged_fraction: float = 0.05
    max_trials: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "max_failed": self.max_failed,
                "max_not_judged_fraction": self.max_not_judged_fraction, "max_trials": self.max_trials}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GatePolicy:
        """Build from a `[gate]` table / run.json; raises ThresholdError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ThresholdError("", "a table", type(data).__name__, raw=True)
        unknown = set(data) - set(POLICY_FIELDS)
        if unknown:
            raise ThresholdError("", f"only the fields {list(POLICY_FIELDS)}", sorted(unknown))
        default = cls()
        alpha = data.get("alpha", default.alpha)
        if not (_finite(alpha) and 0 < alpha < 1):
            raise ThresholdError("alpha", "a number in (0, 1)", alpha)
        max_failed = data.get("max_failed", default.max_failed)
        if isinstance(max_failed, bool) or not isinstance(max_failed, int) or max_failed < 0:
            raise ThresholdError("max_failed", "an integer >= 0", max_failed)
        fraction = data.get("max_not_judged_fraction", default.max_not_judged_fraction)
        if not (_finite(fraction) and 0 <= fraction <= 1):
            raise ThresholdError("max_not_judged_fraction", "a fraction between 0 and 1", fraction)
        max_trials = data.get("max_trials")
        if max_trials is not None and (isinstance(max_trials, bool) or not isinstance(max_trials, int)
                                       or max_trials < 1):
            raise ThresholdError("max_trials", "an integer >= 1 (or none)", max_trials)
        return cls(float(alpha), max_failed, float(fraction), max_trials)


__all__ = ["FIELDS", "POLICY_FIELDS", "VERDICT_EXIT_CODES", "GatePolicy", "Threshold", "ThresholdError"]

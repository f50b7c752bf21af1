"""Gate thresholds: the `Threshold` record and its one validator.

A threshold bounds the 95% Wilson interval of one guard's race rate over an
offset window (harness.analysis.gate evaluates it). Scenario files and run.json
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
        """One line, e.g. "finished-check: 95% upper bound <= 0.05 over |offset| >= 50 ms"."""
        bounds = []
        if self.min_lower is not None:
            bounds.append(f"95% lower bound >= {self.min_lower:g}")
        if self.max_upper is not None:
            bounds.append(f"95% upper bound <= {self.max_upper:g}")
        what = " and ".join(bounds) if bounds else "no bound set"
        return f"{self.guard}: {what} over {self.window()}"

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


__all__ = ["FIELDS", "Threshold", "ThresholdError"]

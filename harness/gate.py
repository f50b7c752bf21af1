"""CI gate: turn per-guard race-rate thresholds into pass/fail with a one-line reason.

A threshold bounds the 95% Wilson interval of one guard's race rate over an
offset window, not the point estimate: "max_upper 0.05" passes only when the
data shows, with 95% confidence, that the rate is at most 5% (a lucky run with
few trials does not pass). Client/audit disagreements are reported by the
summary, not gated here: the gate is about thresholds only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pandas as pd

from harness.analysis import window_rate


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
    def from_dict(cls, data: Mapping[str, Any]) -> Threshold:
        """Build from a scenario/run.json dict; raises ValueError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a table; got {type(data).__name__}")
        unknown = set(data) - {"guard", "max_upper", "min_lower", "min_abs_offset_ms", "offset_range_ms"}
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}")
        guard = data.get("guard")
        if not isinstance(guard, str) or not guard:
            raise ValueError(f"guard: expected a guard name; got {guard!r}")
        bounds: dict[str, float | None] = {}
        for name in ("max_upper", "min_lower"):
            v = data.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
                raise ValueError(f"{name}: expected a probability in [0, 1] or null; got {v!r}")
            bounds[name] = None if v is None else float(v)
        min_abs = data.get("min_abs_offset_ms", 0.0)
        if isinstance(min_abs, bool) or not isinstance(min_abs, (int, float)) or min_abs < 0:
            raise ValueError(f"min_abs_offset_ms: expected a number >= 0; got {min_abs!r}")
        rng = data.get("offset_range_ms")
        offset_range: tuple[float, float] | None = None
        if rng is not None:
            if (
                not isinstance(rng, (list, tuple))
                or len(rng) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in rng)
                or rng[0] > rng[1]
            ):
                raise ValueError(f"offset_range_ms: expected [low, high] with low <= high, or null; got {rng!r}")
            offset_range = (float(rng[0]), float(rng[1]))
        return cls(guard, bounds["max_upper"], bounds["min_lower"], float(min_abs), offset_range)


@dataclass
class GateResult:
    threshold: Threshold
    passed: bool
    measured: dict[str, Any] = field(default_factory=dict)  # window_rate() of the threshold's window
    reason: str = ""  # one line, e.g. "none: 95% upper bound 0.083 > max 0.05 (3/60 races, all offsets)"


def _evaluate_one(df: pd.DataFrame, t: Threshold) -> GateResult:
    m = window_rate(df, t.guard, t.min_abs_offset_ms, t.offset_range_ms)
    counts = f"({m['races']}/{m['trials']} races, {t.window()})"
    if m["trials"] == 0:
        return GateResult(t, False, m, f"{t.guard}: no trials in window ({t.window()})")
    if t.max_upper is None and t.min_lower is None:
        # Fail rather than pass vacuously: a bound-less threshold is a scenario mistake.
        return GateResult(t, False, m, f"{t.guard}: threshold sets neither max_upper nor min_lower {counts}")
    checks: list[tuple[bool, str]] = []
    if t.min_lower is not None:
        ok = m["ci_low"] >= t.min_lower
        checks.append((ok, f"95% lower bound {m['ci_low']:.3f} {'>=' if ok else '<'} min {t.min_lower:g}"))
    if t.max_upper is not None:
        ok = m["ci_high"] <= t.max_upper
        checks.append((ok, f"95% upper bound {m['ci_high']:.3f} {'<=' if ok else '>'} max {t.max_upper:g}"))
    passed = all(ok for ok, _ in checks)
    # On failure name only the failing bound(s): that is what the reader must act on.
    shown = [text for ok, text in checks if passed or not ok]
    return GateResult(t, passed, m, f"{t.guard}: {'; '.join(shown)} {counts}")


def evaluate(df: pd.DataFrame, thresholds: Iterable[Threshold]) -> list[GateResult]:
    """One GateResult per threshold, in the given order. A window with no
    determinate trial fails ("no trials in window")."""
    return [_evaluate_one(df, t) for t in thresholds]

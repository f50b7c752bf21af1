"""CI gate: turn per-guard race-rate thresholds into pass/fail with a one-line reason.

A threshold bounds the 95% Wilson interval of one guard's race rate over an
offset window, not the point estimate: "max_upper 0.05" passes only when the
data shows, with 95% confidence, that the rate is at most 5% (a lucky run with
few trials does not pass). Client/audit disagreements are reported by the
summary, not gated here: the gate is about thresholds only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import pandas as pd

from harness.analysis.stats import window_rate
from harness.core.thresholds import Threshold


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

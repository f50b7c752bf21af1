"""Paired guard comparison: how much of the unguarded baseline's racing each guard removes, per window.

Guards run interleaved on the same planned offsets, so for one offset window the
difference of race rates (baseline - guard) is measured over the offsets *both*
were tried at, with Newcombe's hybrid-score 95% interval
(`harness.analysis.sequential.newcombe_diff_interval`). Windows are the scenario's
threshold windows and the summary's standard window (|offset| >= 50 ms).

Only judged trials count: a race, or one of the no-race outcomes (clean,
invoice_refused, change_refused) not marked `late` (a trials.csv without the
`late` column is read as all on time). Indeterminate, late and failed
(no_invoice, guard_timeout) trials say nothing about a guard's race rate.
Pure: no I/O; the output is JSON-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from harness.analysis.sequential import newcombe_diff_interval
from harness.analysis.stats import kinds
from harness.core.thresholds import Threshold, ThresholdError

BASELINE = "none"


@dataclass(frozen=True)
class Window:
    """An offset window as thresholds state it: |offset| >= min_abs_offset_ms, within offset_range_ms."""

    min_abs_offset_ms: float = 0.0
    offset_range_ms: tuple[float, float] | None = None

    def words(self) -> str:
        # Threshold.window() is the one place windows are put into words (gate lines, report).
        return Threshold(guard=BASELINE, min_abs_offset_ms=self.min_abs_offset_ms,
                         offset_range_ms=self.offset_range_ms).window()

    def mask(self, offsets: pd.Series) -> pd.Series:
        m = offsets.abs() >= self.min_abs_offset_ms
        if self.offset_range_ms is not None:
            lo, hi = self.offset_range_ms
            m &= (offsets >= lo) & (offsets <= hi)
        return m


def windows_from_run(run_meta: Mapping[str, Any], standard: Window) -> list[Window]:
    """The scenario's threshold windows (run.json), then `standard`, without repeats.

    A malformed threshold is skipped here: the report's gate already rejects it with the reason.
    """
    scenario = run_meta.get("scenario")
    raw = scenario.get("thresholds") if isinstance(scenario, Mapping) else None
    found: list[Window] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            t = Threshold.from_dict(item)
        except ThresholdError:
            continue
        found.append(Window(t.min_abs_offset_ms, t.offset_range_ms))
    found.append(standard)
    return list(dict.fromkeys(found))


def _judged(df: pd.DataFrame) -> pd.DataFrame:
    return df[kinds(df).isin(("race", "no_race"))]


def _sentence(guard: str, diff: float, low: float, high: float, window: str) -> str:
    if diff >= 0:
        return f"{guard} removes {diff:.2f} [{low:.2f}, {high:.2f}] of races at {window}"
    return f"{guard} adds {-diff:.2f} [{-high:.2f}, {-low:.2f}] races at {window}"


def compare_guards(df: pd.DataFrame, windows: Sequence[Window], baseline: str = BASELINE,
                   alpha: float = 0.05) -> list[dict[str, Any]]:
    """Per window x guard (baseline excluded): baseline rate - guard rate over their shared offsets.

    Each entry: guard, baseline, window (min_abs_offset_ms, offset_range_ms, text), offsets (how
    many shared planned offsets), baseline_races/_trials, guard_races/_trials, difference,
    ci_low, ci_high (Newcombe, 1 - alpha) and a one-line sentence. A pair with no shared
    offset in a window is left out; no baseline trials: an empty list.
    """
    if df.empty:
        return []
    judged = _judged(df)
    guards = [g for g in dict.fromkeys(df["guard"].astype(str)) if g != baseline]
    out: list[dict[str, Any]] = []
    for window in windows:
        inside = judged[window.mask(judged["offset_ms"].astype("float64"))]
        base = inside[inside["guard"] == baseline]
        for guard in guards:
            other = inside[inside["guard"] == guard]
            shared = set(base["offset_ms"]) & set(other["offset_ms"])
            if not shared:
                continue
            b = base[base["offset_ms"].isin(shared)]
            g = other[other["offset_ms"].isin(shared)]
            kb, nb = int((b["outcome"] == "race").sum()), len(b)
            kg, ng = int((g["outcome"] == "race").sum()), len(g)
            low, high = newcombe_diff_interval(kb, nb, kg, ng, alpha)
            diff = kb / nb - kg / ng
            words = window.words()
            out.append({
                "guard": guard, "baseline": baseline,
                "window": {"min_abs_offset_ms": window.min_abs_offset_ms,
                           "offset_range_ms": list(window.offset_range_ms) if window.offset_range_ms else None,
                           "text": words},
                "offsets": len(shared),
                "baseline_races": kb, "baseline_trials": nb, "guard_races": kg, "guard_trials": ng,
                "difference": diff, "ci_low": low, "ci_high": high,
                "sentence": _sentence(guard, diff, low, high, words),
            })
    return out


__all__ = ["BASELINE", "Window", "compare_guards", "windows_from_run"]

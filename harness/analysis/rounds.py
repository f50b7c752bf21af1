"""What the round loop (`harness.rounds`) looks at between rounds, and what summary.json says about
the rounds: per-cell counts, the decision callback, the window edges. Pure (trials in, dicts out).

The decision callback contract: `decide(df) -> (stop, undecided)`, `stop` True when every
threshold is decided (PASS or FAIL), `undecided` the (guard, offset_ms) bins still inconclusive
inside an undecided threshold's window.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from harness.analysis.sequential import decide_window
from harness.core.adaptive import Cell, window_edges
from harness.core.oracle import Outcome
from harness.core.thresholds import Threshold

Decide = Callable[[pd.DataFrame], tuple[bool, list[Cell]]]


def cell_counts(df: pd.DataFrame) -> dict[Cell, tuple[int, int]]:
    """(races, judged trials) per (guard, planned offset); indeterminate trials are not judged."""
    if df.empty:
        return {}
    judged = df[df["outcome"] != Outcome.INDETERMINATE.value]
    if "late" in judged:  # older runs have no `late` column: all on time
        judged = judged[~judged["late"].astype(bool)]
    out: dict[Cell, tuple[int, int]] = {}
    for (guard, offset), g in judged.groupby(["guard", "offset_ms"], sort=True):
        out[(str(guard), float(offset))] = (int((g["outcome"] == Outcome.RACE.value).sum()), len(g))
    return out


def _in_window(t: Threshold, offset: float) -> bool:
    if abs(offset) < t.min_abs_offset_ms:
        return False
    return t.offset_range_ms is None or t.offset_range_ms[0] <= offset <= t.offset_range_ms[1]


# TEMPORARY (until the merge with helper "gate"): the default decision over the scenario's
# thresholds with `sequential.decide_window`; at the merge it becomes
#     report = gate.evaluate(df, thresholds, policy); return report.verdict != "inconclusive", report.undecided()
def threshold_decide(thresholds: Sequence[Threshold], alpha: float = 0.05) -> Decide:
    """The decision callback for these thresholds (none: never stop, nothing undecided)."""

    def _decide(df: pd.DataFrame) -> tuple[bool, list[Cell]]:
        counts = cell_counts(df)
        undecided: list[Cell] = []
        open_ = False  # some threshold undecided (an empty window is: nothing measured yet)
        for t in thresholds:
            cells = [c for c in sorted(counts) if c[0] == t.guard and _in_window(t, c[1])]
            # min_lower mirrors onto the non-races: "rate >= m" is "non-race rate <= 1 - m".
            bounds = [(False, t.max_upper)] if t.max_upper is not None else []
            bounds += [(True, 1 - t.min_lower)] if t.min_lower is not None else []
            for mirror, limit in bounds:
                bins = [(n - r, n) if mirror else (r, n) for r, n in (counts[c] for c in cells)]
                w = decide_window(bins, limit, alpha)
                if w.verdict == "inconclusive":
                    open_ = True
                    undecided += [c for c, d in zip(cells, w.bins) if d.verdict != "pass"]
        return bool(thresholds) and not open_, sorted(set(undecided))

    return _decide


def rounds_summary(df: pd.DataFrame, run_meta: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json `rounds`: run.json's round record plus each guard's race-window edges."""
    rec = dict(run_meta.get("rounds") or {})
    rec["window_edges"] = window_edges(cell_counts(df))
    return rec


__all__ = ["Decide", "cell_counts", "rounds_summary", "threshold_decide"]

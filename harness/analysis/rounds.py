"""What the round loop (`harness.rounds`) looks at between rounds, and what summary.json says about
the rounds: per-cell counts, the decision callback, the window edges. Pure (trials in, dicts out).

The decision callback contract: `decide(df) -> (stop, undecided)`, `stop` True once the gate's
verdict and every threshold's are decided (PASS or FAIL), `undecided` the (guard, offset_ms) bins still inconclusive
inside an undecided threshold's window.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from harness.analysis.gate import evaluate
from harness.analysis.stats import kinds
from harness.core.adaptive import Cell, window_edges
from harness.core.thresholds import GatePolicy, Threshold

Decide = Callable[[pd.DataFrame], tuple[bool, list[Cell]]]


def cell_counts(df: pd.DataFrame) -> dict[Cell, tuple[int, int]]:
    """(races, judged trials) per (guard, planned offset): not-judged and failed trials don't count."""
    if df.empty:
        return {}
    kind = kinds(df)
    mask = kind.isin(("race", "no_race")).to_numpy()
    races = (kind == "race").to_numpy()[mask]
    cells = df.loc[mask, ["guard", "offset_ms"]].groupby(["guard", "offset_ms"]).indices  # positions in `races`
    return {(str(guard), float(offset)): (int(races[idx].sum()), len(idx))
            for (guard, offset), idx in sorted(cells.items())}


def threshold_decide(thresholds: Sequence[Threshold], policy: GatePolicy | None = None) -> Decide:
    """The decision callback of a round loop: stop once the gate's verdict and every threshold's are
    PASS or FAIL (both anytime-valid: a look after every batch keeps them valid), so each threshold's
    line states a verdict; the bins still undecided are where the next round goes.

    A guard with more failed trials than `max_failed` already FAILs the gate whatever its
    thresholds say (failed trials only accumulate), so it gets no further trials: a service that
    never invoices would otherwise have undecided bins (no judged trial) until the budget ran out."""
    max_failed = (policy or GatePolicy()).max_failed

    def _decide(df: pd.DataFrame) -> tuple[bool, list[Cell]]:
        if not thresholds:
            return False, []
        report = evaluate(df, thresholds, policy)
        failed = {g for g, c in report.accounting.items() if c["failed"] > max_failed}
        pending = [t for t in report.thresholds if t.verdict == "inconclusive" and t.threshold.guard not in failed]
        decided = report.verdict != "inconclusive" and not pending
        return decided, [(g, o) for g, o in report.undecided() if g not in failed]

    return _decide


def rounds_summary(df: pd.DataFrame, run_meta: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json `rounds`: run.json's round record plus each guard's race-window edges."""
    rec = dict(run_meta.get("rounds") or {})
    rec["window_edges"] = window_edges(cell_counts(df))
    return rec


__all__ = ["Decide", "cell_counts", "rounds_summary", "threshold_decide"]

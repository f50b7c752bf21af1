"""Tests for harness.analysis.gate: thresholds on Wilson bounds, reasons, empty windows."""

from __future__ import annotations

from typing import Any

import math
import pandas as pd
import pytest

from harness.analysis.gate import GateResult, evaluate
from harness.analysis.stats import wilson_interval
from harness.core.results import TrialResult
from harness.core.thresholds import Threshold


def trial(trial_id: int, guard: str, offset_ms: float, outcome: str) -> TrialResult:
    raced = outcome == "race"
    fields: dict[str, Any] = dict(
        trial_id=trial_id, seq=trial_id, guard=guard, offset_ms=offset_ms, order_id=f"o-{trial_id}",
        outcome=outcome, audit_verdict="race" if raced else "clean", agree=True, disagreement="",
        initial_value=10_000, final_value=7_000, invoice_value=10_000 if raced else 7_000,
        invoiced_total=10_000 if raced else 7_000, invoice_status=204, change_status=202, change_delay_ms=300.0,
        change_planned_ms=0.0, invoice_planned_ms=offset_ms, change_sent_ms=0.0, invoice_sent_ms=offset_ms,
        change_acted_ms=0.3, invoice_acted_ms=offset_ms + 0.3, change_finished_ms=300.3, hook_sent_ms=math.nan,
        client_offset_error_ms=float("nan"), server_offset_error_ms=float("nan"), guard_cost_ms=1.0,
        duration_ms=350.0, error="",
    )
    return TrialResult(**fields)


def frame(spec: dict[tuple[str, float], tuple[int, int]]) -> tuple[pd.DataFrame, list[TrialResult]]:
    """spec: (guard, offset) -> (races, non-race trials)."""
    trials: list[TrialResult] = []
    for (guard, offset), (races, clean) in spec.items():
        for k in range(races + clean):
            trials.append(trial(len(trials), guard, offset, "race" if k < races else "clean"))
    return pd.DataFrame([t.row() for t in trials]), trials


SPEC = {
    ("finished-check", -20.0): (5, 15),  # residual invoice-first window, excluded by |offset| >= 50
    ("finished-check", 100.0): (3, 27),
    ("finished-check", 400.0): (0, 30),
    ("none", 100.0): (30, 0),
    ("none", 400.0): (0, 30),
}


def _counts(trials: list[TrialResult], guard: str, pred: Any) -> tuple[int, int]:
    sel = [t for t in trials if t.guard == guard and pred(t.offset_ms)]
    return sum(t.outcome == "race" for t in sel), len(sel)


def test_max_upper_fails_with_reason() -> None:
    df, trials = frame(SPEC)
    t = Threshold("finished-check", max_upper=0.05, min_abs_offset_ms=50)
    [res] = evaluate(df, [t])
    k, n = _counts(trials, "finished-check", lambda o: abs(o) >= 50)
    upper = wilson_interval(k, n)[1]
    assert upper > 0.05 and not res.passed
    assert res.reason == f"finished-check: 95% upper bound {upper:.3f} > max 0.05 ({k}/{n} races, |offset| >= 50 ms)"
    assert res.measured["trials"] == n and res.measured["races"] == k
    assert "\n" not in res.reason


def test_max_upper_passes_when_interval_is_tight_enough() -> None:
    df, trials = frame(SPEC)
    t = Threshold("finished-check", max_upper=0.2, offset_range_ms=(300.0, 500.0))
    [res] = evaluate(df, [t])
    k, n = _counts(trials, "finished-check", lambda o: 300 <= o <= 500)
    assert res.passed
    assert res.reason == (
        f"finished-check: 95% upper bound {wilson_interval(k, n)[1]:.3f} <= max 0.2 "
        f"({k}/{n} races, offset in [300, 500] ms)"
    )


def test_min_lower_reproduction_threshold() -> None:
    df, trials = frame(SPEC)
    ok, bad = evaluate(df, [Threshold("none", min_lower=0.8, offset_range_ms=(50.0, 200.0)),
                            Threshold("none", min_lower=0.8)])
    assert ok.passed and "95% lower bound" in ok.reason and ">= min 0.8" in ok.reason
    k, n = _counts(trials, "none", lambda o: True)
    assert not bad.passed
    assert bad.reason == f"none: 95% lower bound {wilson_interval(k, n)[0]:.3f} < min 0.8 ({k}/{n} races, all offsets)"


def test_both_bounds_name_only_the_failing_one() -> None:
    df, _ = frame(SPEC)
    [res] = evaluate(df, [Threshold("none", max_upper=0.55, min_lower=0.1)])
    assert wilson_interval(30, 60)[1] > 0.55  # the spec's 30/60 unguarded races
    assert not res.passed and "upper bound" in res.reason and "lower bound" not in res.reason


def test_empty_window_fails() -> None:
    df, _ = frame(SPEC)
    results = evaluate(df, [Threshold("serialized", max_upper=0.05),
                            Threshold("none", max_upper=0.5, offset_range_ms=(1000.0, 2000.0))])
    assert [r.passed for r in results] == [False, False]
    assert results[0].reason == "serialized: no trials in window (all offsets)"
    assert "no trials in window" in results[1].reason
    assert evaluate(pd.DataFrame(columns=TrialResult.columns()), [Threshold("none", max_upper=1.0)])[0].passed is False


def test_indeterminate_trials_do_not_count() -> None:
    df, trials = frame({("serialized", 100.0): (0, 10)})
    extra = pd.DataFrame([trial(100 + i, "serialized", 100.0, "indeterminate").row() for i in range(5)])
    [res] = evaluate(pd.concat([df, extra], ignore_index=True), [Threshold("serialized", max_upper=0.5)])
    assert res.measured["trials"] == len(trials) and res.measured["indeterminate"] == 5


def test_threshold_describe_and_from_dict() -> None:
    t = Threshold.from_dict({"guard": "finished-check", "max_upper": 0.05, "min_abs_offset_ms": 50,
                             "offset_range_ms": [-100, 1000]})
    assert t == Threshold("finished-check", 0.05, None, 50.0, (-100.0, 1000.0))
    assert t.describe() == "finished-check: 95% upper bound <= 0.05 over offset in [-100, 1000] ms, |offset| >= 50 ms"
    assert Threshold("none", min_lower=0.5).describe() == "none: 95% lower bound >= 0.5 over all offsets"
    for bad in ({"max_upper": 0.1}, {"guard": "none", "max_upper": 2}, {"guard": "none", "offset_range_ms": [5, 1]},
                {"guard": "none", "bogus": 1}, {"guard": "none", "min_abs_offset_ms": -1}):
        with pytest.raises(ValueError):
            Threshold.from_dict(bad)


def test_gate_result_is_plain_data() -> None:
    r = GateResult(Threshold("none", max_upper=0.1), True, {"trials": 1}, "why")
    assert r.passed and r.measured == {"trials": 1}

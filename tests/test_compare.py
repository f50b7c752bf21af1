"""Tests for harness.analysis.compare: paired guard comparison, checked against statsmodels directly."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from harness.analysis.compare import Window, compare_guards, windows_from_run
from harness.analysis.summary import summarize

STANDARD = Window(50.0)


def frame(spec: dict[tuple[str, float], list[str]], late: dict[tuple[str, float], int] | None = None) -> pd.DataFrame:
    """Trials from {(guard, offset): [outcome, ...]}; `late` marks the first k trials of a cell late."""
    rows: list[dict[str, Any]] = []
    for (guard, offset), outcomes in spec.items():
        for i, outcome in enumerate(outcomes):
            rows.append({"trial_id": len(rows) + 1, "guard": guard, "offset_ms": offset, "outcome": outcome,
                         "late": i < (late or {}).get((guard, offset), 0)})
    return pd.DataFrame(rows)


def statsmodels_newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=0.05)
    return float(low), float(high)


def test_difference_and_newcombe_interval_match_statsmodels() -> None:
    df = frame({("none", 100.0): ["race"] * 7 + ["clean"] * 3, ("none", 150.0): ["race"] * 5 + ["clean"] * 5,
                ("finished-check", 100.0): ["race"] + ["clean"] * 9,
                ("finished-check", 150.0): ["invoice_refused"] * 10})
    (c,) = compare_guards(df, [STANDARD])
    assert (c["guard"], c["baseline"], c["offsets"]) == ("finished-check", "none", 2)
    assert (c["baseline_races"], c["baseline_trials"], c["guard_races"], c["guard_trials"]) == (12, 20, 1, 20)
    assert c["difference"] == pytest.approx(12 / 20 - 1 / 20)
    low, high = statsmodels_newcombe(12, 20, 1, 20)
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert c["sentence"] == f"finished-check removes 0.55 [{low:.2f}, {high:.2f}] of races at |offset| >= 50 ms"
    assert c["window"] == {"min_abs_offset_ms": 50.0, "offset_range_ms": None, "text": "|offset| >= 50 ms"}


def test_only_shared_offsets_inside_the_window_count() -> None:
    df = frame({("none", 100.0): ["race"] * 4, ("none", 300.0): ["race"] * 4,  # 300 not tried by the guard
                ("none", 10.0): ["race"] * 4,  # outside |offset| >= 50
                ("serialized", 100.0): ["clean"] * 4, ("serialized", 10.0): ["clean"] * 4,
                ("serialized", 500.0): ["clean"] * 4})  # 500 not tried by none
    (c,) = compare_guards(df, [STANDARD])
    assert (c["offsets"], c["baseline_trials"], c["guard_trials"]) == (1, 4, 4)
    low, high = statsmodels_newcombe(4, 4, 0, 4)
    assert (c["difference"], c["ci_low"], c["ci_high"]) == (1.0, pytest.approx(low), pytest.approx(high))


def test_unjudged_trials_are_left_out() -> None:
    df = frame({("none", 100.0): ["race", "race", "indeterminate", "clean", "race"],
                ("finished-check", 100.0): ["guard_timeout", "no_invoice", "clean", "race", "change_refused"]},
               late={("none", 100.0): 1})  # the first race of none is late
    (c,) = compare_guards(df, [STANDARD])
    assert (c["baseline_races"], c["baseline_trials"], c["guard_races"], c["guard_trials"]) == (2, 3, 1, 3)
    no_late_column = frame({("none", 100.0): ["race"], ("finished-check", 100.0): ["clean"]}).drop(columns="late")
    assert compare_guards(no_late_column, [STANDARD])[0]["baseline_trials"] == 1


def test_a_guard_that_races_more_is_said_to_add_races() -> None:
    df = frame({("none", 100.0): ["clean"] * 9 + ["race"], ("finished-check", 100.0): ["race"] * 6 + ["clean"] * 4})
    (c,) = compare_guards(df, [STANDARD])
    low, high = statsmodels_newcombe(1, 10, 6, 10)
    assert c["difference"] == pytest.approx(-0.5)
    assert c["sentence"] == f"finished-check adds 0.50 [{-high:.2f}, {-low:.2f}] races at |offset| >= 50 ms"


def test_windows_and_pairs_without_data() -> None:
    df = frame({("none", 100.0): ["race"], ("finished-check", 100.0): ["clean"], ("serialized", 900.0): ["clean"]})
    ranged = Window(0.0, (50.0, 200.0))
    got = compare_guards(df, [ranged, STANDARD])
    assert [(c["guard"], c["window"]["text"]) for c in got] == [
        ("finished-check", "offset in [50, 200] ms"), ("finished-check", "|offset| >= 50 ms")]
    assert compare_guards(frame({("finished-check", 100.0): ["clean"]}), [STANDARD]) == []
    assert compare_guards(pd.DataFrame(), [STANDARD]) == []
    assert compare_guards(frame({("none", -100.0): ["race"], ("x", -100.0): ["clean"]}), [Window(0.0, (-150.0, -50.0))])


def test_windows_from_run_reads_thresholds_once_each_then_the_standard_window() -> None:
    meta = {"scenario": {"thresholds": [
        {"guard": "finished-check", "max_upper": 0.05, "min_abs_offset_ms": 50},
        {"guard": "serialized", "max_upper": 0.05, "min_abs_offset_ms": 50},
        {"guard": "none", "min_lower": 0.5, "offset_range_ms": [50, 200]},
        {"guard": "none", "bogus": 1},
    ]}}
    assert windows_from_run(meta, STANDARD) == [Window(50.0), Window(0.0, (50.0, 200.0))]
    assert windows_from_run({}, STANDARD) == [STANDARD]
    assert windows_from_run({"scenario": {"thresholds": "nope"}}, STANDARD) == [STANDARD]


def test_summary_carries_the_comparisons() -> None:
    df = frame({("none", 100.0): ["race"] * 3, ("finished-check", 100.0): ["clean"] * 3})
    for col, value in {"agree": True, "disagreement": "", "guard_cost_ms": 1.0, "client_offset_error_ms": 0.1,
                       "server_offset_error_ms": 0.1, "change_delay_ms": 300.0}.items():
        df[col] = value
    summary = summarize(df, {"scenario": {"name": "s", "thresholds": [
        {"guard": "finished-check", "max_upper": 0.05, "offset_range_ms": [0, 200]}]}})
    assert [c["window"]["text"] for c in summary["comparisons"]] == ["offset in [0, 200] ms", "|offset| >= 50 ms"]
    assert summary["comparisons"][0]["sentence"].startswith("finished-check removes 1.00 [")


def test_no_difference_is_said_to_remove_nothing() -> None:
    df = frame({("none", 100.0): ["race", "clean"], ("serialized", 100.0): ["clean", "race"]})
    (c,) = compare_guards(df, [STANDARD])
    low, high = statsmodels_newcombe(1, 2, 1, 2)
    assert c["sentence"] == f"serialized removes 0.00 [{low:.2f}, {high:.2f}] of races at |offset| >= 50 ms"


def test_window_bounds_are_inclusive_and_combine() -> None:
    offsets = pd.Series([-60.0, -50.0, -49.9, 0.0, 49.9, 50.0, 100.0, 200.0, 200.1])
    assert list(offsets[Window(50.0).mask(offsets)]) == [-60.0, -50.0, 50.0, 100.0, 200.0, 200.1]
    assert list(offsets[Window(0.0, (-50.0, 100.0)).mask(offsets)]) == [-50.0, -49.9, 0.0, 49.9, 50.0, 100.0]
    assert list(offsets[Window(50.0, (-50.0, 100.0)).mask(offsets)]) == [-50.0, 50.0, 100.0]
    meta = {"scenario": {"thresholds": [{"guard": "none", "bogus": 1},
                                        {"guard": "none", "max_upper": 0.5, "min_abs_offset_ms": 10}]}}
    assert windows_from_run(meta, STANDARD) == [Window(10.0), STANDARD]


def test_a_guard_without_shared_offsets_does_not_hide_the_next_guard() -> None:
    df = frame({("none", 100.0): ["race"] * 2, ("serialized", 900.0): ["clean"],  # no offset shared with none
                ("finished-check", 100.0): ["clean"] * 2})
    assert [c["guard"] for c in compare_guards(df, [STANDARD])] == ["finished-check"]


def test_interval_level_follows_alpha_and_ranged_window_is_reported() -> None:
    df = frame({("none", 100.0): ["race"] * 7 + ["clean"] * 3, ("finished-check", 100.0): ["race"] + ["clean"] * 9})
    (c,) = compare_guards(df, [Window(0.0, (50.0, 200.0))], alpha=0.2)
    low, high = confint_proportions_2indep(7, 10, 1, 10, method="newcomb", compare="diff", alpha=0.2)
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(float(low), abs=1e-12), pytest.approx(float(high), abs=1e-12))
    assert c["window"] == {"min_abs_offset_ms": 0.0, "offset_range_ms": [50.0, 200.0], "text": "offset in [50, 200] ms"}

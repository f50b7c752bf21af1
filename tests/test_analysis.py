"""Tests for harness.analysis.stats: Wilson intervals, loading, rate tables, the race model, summary."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.analysis.model import model_race_probability
from harness.analysis.stats import (
    actual_offsets,
    choose_bin_ms,
    guard_cost,
    load_trials,
    offset_error_stats,
    rate_table,
    window_rate,
)
from harness.analysis.sequential import wilson_interval
from harness.analysis.summary import SUMMARY_SCHEMA_VERSION, WINDOW_MIN_ABS_OFFSET_MS, summarize
from harness.core.results import TrialResult
from harness.errors import ReportError
from mock_orders_api.delays import Fixed, Uniform

INITIAL, FINAL = 10_000, 7_000


def trial(trial_id: int, guard: str = "none", offset_ms: float = 100.0, outcome: str = "clean", **kw: Any) -> TrialResult:
    raced = outcome == "race"
    base: dict[str, Any] = dict(
        trial_id=trial_id, seq=trial_id, guard=guard, offset_ms=offset_ms, order_id=f"o-{trial_id}",
        outcome=outcome, audit_verdict="race" if raced else "clean", agree=True, disagreement="",
        initial_value=INITIAL, final_value=FINAL, invoice_value=INITIAL if raced else FINAL,
        invoiced_total=INITIAL if raced else FINAL, invoice_status=204, change_status=202,
        change_delay_ms=300.0, change_planned_ms=0.0, invoice_planned_ms=offset_ms, change_sent_ms=0.1,
        invoice_sent_ms=offset_ms + 0.2, change_acted_ms=0.5, invoice_acted_ms=offset_ms + 0.6,
        change_finished_ms=300.5, hook_sent_ms=math.nan, client_offset_error_ms=0.1, server_offset_error_ms=0.1,
        guard_cost_ms=0.2, duration_ms=400.0, error="",
    )
    base.update(kw)
    return TrialResult(**base)


def frame(trials: list[TrialResult]) -> pd.DataFrame:
    return pd.DataFrame([t.row() for t in trials], columns=TrialResult.columns())


def write_csv(path: Path, trials: list[TrialResult]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=TrialResult.columns())
        w.writeheader()
        for t in trials:
            w.writerow(t.row())


# --------------------------------------------------------------------------- Wilson


def test_wilson_known_values() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    low, high = wilson_interval(1, 1)
    assert high == 1.0 and low == pytest.approx(0.2065, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_is_symmetric_and_rejects_bad_counts() -> None:
    low, high = wilson_interval(3, 60)
    low2, high2 = wilson_interval(57, 60)
    assert low == pytest.approx(1 - high2) and high == pytest.approx(1 - low2)
    with pytest.raises(ValueError):
        wilson_interval(4, 3)
    with pytest.raises(ValueError):
        wilson_interval(-1, 3)


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize(
    ("offset", "settle", "guard", "expected"),
    [
        (100.0, 0.0, "none", 1.0),  # Change unfinished (D = 300)
        (300.0, 0.0, "none", 0.0),  # Change finished exactly when the invoice lands
        (0.0, 0.0, "none", 1.0),  # simultaneous: Change first
        (-10.0, 0.0, "none", 0.0),  # no settle window: Change refused
        (-10.0, 50.0, "none", 1.0),
        (-50.0, 50.0, "none", 0.0),  # window is open at -settle
        (100.0, 50.0, "finished-check", 0.0),
        (0.0, 50.0, "finished-check", 0.0),
        (-10.0, 50.0, "finished-check", 1.0),
        (-10.0, 0.0, "finished-check", 0.0),
        (-10.0, 50.0, "serialized", 0.0),
        (100.0, 50.0, "serialized", 0.0),
    ],
)
def test_model_vulnerable(offset: float, settle: float, guard: str, expected: float) -> None:
    assert model_race_probability(offset, Fixed(300.0), settle, "vulnerable", guard) == expected


def test_model_uses_survival_function() -> None:
    delay = Uniform(100.0, 500.0)
    assert model_race_probability(200.0, delay, 0.0, "vulnerable", "none") == pytest.approx(delay.sf(200.0))
    assert model_race_probability(0.0, delay, 0.0, "vulnerable", "none") == delay.sf(0.0)


def test_model_strict_unknown_guard_and_policy() -> None:
    assert model_race_probability(100.0, Fixed(300.0), 50.0, "strict", "none") == 0.0
    assert model_race_probability(-10.0, Fixed(300.0), 50.0, "strict", "finished-check") == 0.0
    assert math.isnan(model_race_probability(100.0, Fixed(300.0), 0.0, "vulnerable", "magic"))
    assert math.isnan(model_race_probability(100.0, Fixed(300.0), 0.0, "bogus", "none"))


# --------------------------------------------------------------------------- rate table


def test_rate_table_counts_not_judged_and_failed_separately() -> None:
    spec = {  # (guard, offset) -> outcomes
        ("none", 100.0): ["race", "race", "race", "clean", "indeterminate"],
        ("none", -100.0): ["change_refused", "change_refused", "invoice_refused"],
        ("finished-check", 100.0): ["clean", "clean", "indeterminate", "indeterminate", "guard_timeout",
                                    "no_invoice"],
    }
    trials, i = [], 0
    for (guard, off), outcomes in spec.items():
        for o in outcomes:
            trials.append(trial(i, guard, off, o))
            i += 1
    table = rate_table(frame(trials))
    assert list(table["guard"]) == ["none", "none", "finished-check"]  # known guards first, offsets ascending
    assert list(table["offset_ms"]) == [-100.0, 100.0, 100.0]
    for (guard, off), outcomes in spec.items():
        row = table[(table["guard"] == guard) & (table["offset_ms"] == off)].iloc[0]
        det = [o for o in outcomes if o in ("race", "clean", "change_refused", "invoice_refused")]
        races = det.count("race")
        assert row["trials"] == len(det)
        assert row["races"] == races
        assert row["not_judged"] == outcomes.count("indeterminate")
        assert row["failed"] == outcomes.count("guard_timeout") + outcomes.count("no_invoice")
        assert row["rate"] == pytest.approx(races / len(det))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(races, len(det)))


def test_rate_table_all_indeterminate_bin_and_empty_frame() -> None:
    table = rate_table(frame([trial(0, outcome="indeterminate")]))
    assert table.iloc[0]["trials"] == 0 and math.isnan(table.iloc[0]["rate"])
    assert (table.iloc[0]["ci_low"], table.iloc[0]["ci_high"]) == (0.0, 1.0)
    empty = rate_table(frame([]))
    assert empty.empty and "ci_high" in empty.columns


def test_rate_table_model_column_and_binning() -> None:
    offsets = [float(o) for o in range(-200, 400, 7)] * 2  # many offsets, 2 trials each: continuous-ish
    df = frame([trial(i, "none", off, "race" if 0 <= off < 300 else "clean") for i, off in enumerate(offsets)])
    bin_ms = choose_bin_ms(df)
    assert bin_ms is not None and bin_ms > 0
    table = rate_table(df, bin_ms, lambda off, guard: model_race_probability(off, Fixed(300.0), 0, "vulnerable", guard))
    assert table["trials"].sum() == len(offsets)
    first = table.iloc[0]
    members = [o for o in offsets if math.floor(o / bin_ms) * bin_ms + bin_ms / 2 == first["offset_ms"]]
    assert first["trials"] == len(members)
    assert first["model"] == pytest.approx(sum(1.0 if 0 <= o < 300 else 0.0 for o in members) / len(members))
    assert choose_bin_ms(frame([trial(i, offset_ms=o) for i, o in enumerate([0.0, 50.0, 100.0])])) is None
    fine_grid = [float(o) for o in range(-200, 400, 7)] * 3  # many offsets but repeated enough: keep them
    assert choose_bin_ms(frame([trial(i, offset_ms=o) for i, o in enumerate(fine_grid)])) is None


def test_model_is_evaluated_at_each_trials_actual_offset() -> None:
    # Planned exactly on the model's jump at -settle: the sign of the measured error decides.
    df = frame([trial(0, "none", -150.0, "race", change_acted_ms=150.2, invoice_acted_ms=0.213),
                trial(1, "none", -150.0, "change_refused", change_acted_ms=150.2, invoice_acted_ms=0.198),
                trial(2, "none", -150.0, "change_refused", change_acted_ms=math.nan)])  # no audit: planned
    assert list(actual_offsets(df)) == pytest.approx([-149.987, -150.002, -150.0])
    model = lambda off, guard: model_race_probability(off, Fixed(300.0), 150.0, "vulnerable", guard)  # noqa: E731
    row = rate_table(df, None, model).iloc[0]
    assert (row["races"], row["trials"]) == (1, 3)
    assert row["model"] == pytest.approx(1 / 3)


def test_window_rate_filters() -> None:
    offsets = [-100.0, -20.0, 0.0, 20.0, 60.0, 200.0]
    trials = [trial(i, "finished-check", o, "race" if i % 2 else "clean") for i, o in enumerate(offsets)]
    trials.append(trial(99, "none", 60.0, "race"))
    df = frame(trials)
    w = window_rate(df, "finished-check", min_abs_offset_ms=50)
    inside = [t for t in trials if t.guard == "finished-check" and abs(t.offset_ms) >= 50]
    k = sum(t.outcome == "race" for t in inside)
    assert (w["trials"], w["races"]) == (len(inside), k)
    assert (w["ci_low"], w["ci_high"]) == pytest.approx(wilson_interval(k, len(inside)))
    r = window_rate(df, "finished-check", offset_range_ms=(-20.0, 60.0))
    assert r["trials"] == sum(1 for t in trials if t.guard == "finished-check" and -20 <= t.offset_ms <= 60)
    failed = window_rate(frame([trial(0, "none", 60.0, "no_invoice"), trial(1, "none", 60.0, "clean")]), "none")
    assert (failed["trials"], failed["failed"], failed["not_judged"]) == (1, 1, 0)  # never counted as "no race"
    nothing = window_rate(df, "serialized")
    assert nothing["trials"] == 0 and math.isnan(nothing["rate"]) and nothing["ci_high"] == 1.0


# --------------------------------------------------------------------------- timing / cost


def test_offset_error_and_guard_cost() -> None:
    client = [0.5, -1.5, 2.0, math.nan]
    server = [-3.0, 1.0, math.nan, math.nan]
    cost = [1.0, 2.0, 3.0, 100.0]
    df = frame([trial(i, "none" if i < 2 else "finished-check", client_offset_error_ms=c, server_offset_error_ms=s,
                      guard_cost_ms=g) for i, (c, s, g) in enumerate(zip(client, server, cost))])
    stats = offset_error_stats(df)
    assert stats["client"]["n"] == 3 and stats["client"]["max"] == 2.0
    assert stats["client"]["p50"] == pytest.approx(1.5)
    assert stats["server"]["n"] == 2 and stats["server"]["max"] == 3.0
    gc = guard_cost(df).set_index("guard")
    assert list(gc.index) == ["none", "finished-check"]
    assert gc.loc["finished-check", "mean"] == pytest.approx((3.0 + 100.0) / 2)
    assert gc.loc["none", "p50"] == pytest.approx(1.5)
    empty = offset_error_stats(frame([]))
    assert empty["client"]["n"] == 0 and math.isnan(empty["client"]["p99"])


# --------------------------------------------------------------------------- loading


def test_load_trials_types_and_truncated_tail(tmp_path: Path) -> None:
    trials = [trial(i, outcome="race" if i % 3 == 0 else "clean", error="x, \"quoted\"\nline") for i in range(5)]
    trials[1] = trial(1, invoice_sent_ms=math.nan, agree=False, disagreement="audit says clean")
    write_csv(tmp_path / "trials.csv", trials)
    with (tmp_path / "trials.csv").open("a", encoding="utf-8") as fh:
        fh.write("5,5,none,100.0,o-5,ra")  # crash mid-row: no newline
    df = load_trials(tmp_path)
    assert len(df) == 5 and df.attrs["skipped_lines"] == 1
    assert df["trial_id"].dtype == "int64" and df["invoice_value"].dtype == "int64"
    assert df["agree"].dtype == bool and not df.loc[1, "agree"]
    assert df["offset_ms"].dtype == "float64" and math.isnan(df.loc[1, "invoice_sent_ms"])
    assert df.loc[0, "error"] == "x, \"quoted\"\nline"


@pytest.mark.parametrize(
    "tail",
    [
        "5,5,none,100.0,o-5\n",  # short row, newline written
        '5,5,none,100.0,o-5,race,race,True,"unterminated',  # cut inside a quoted field
    ],
)
def test_load_trials_skips_other_truncations(tmp_path: Path, tail: str) -> None:
    write_csv(tmp_path / "trials.csv", [trial(0), trial(1)])
    with (tmp_path / "trials.csv").open("a", encoding="utf-8", newline="") as fh:
        fh.write(tail)
    df = load_trials(tmp_path)
    assert list(df["trial_id"]) == [0, 1] and df.attrs["skipped_lines"] == 1


def test_load_trials_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="trials.csv"):
        load_trials(tmp_path)
    (tmp_path / "trials.csv").write_text("trial_id,guard\n1,none\n")
    with pytest.raises(ReportError, match=r"trials\.csv.*missing column"):
        load_trials(tmp_path)
    write_csv(tmp_path / "trials.csv", [trial(0), trial(1)])
    lines = (tmp_path / "trials.csv").read_text().splitlines(keepends=True)
    (tmp_path / "trials.csv").write_text(lines[0] + "garbage\n" + "".join(lines[1:]))
    with pytest.raises(ReportError, match="corrupted"):
        load_trials(tmp_path)


def test_load_trials_header_only(tmp_path: Path) -> None:
    write_csv(tmp_path / "trials.csv", [])
    df = load_trials(tmp_path)
    assert df.empty and list(df.columns) == TrialResult.columns()
    assert rate_table(df).empty


# --------------------------------------------------------------------------- summary


def _meta(**kw: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "schema_version": 1, "scenario": {"name": "synthetic", "thresholds": []}, "seed": 7,
        "target": {"kind": "embedded", "url": "http://127.0.0.1:1"},
        "mock": {"policy": "vulnerable", "delay": {"kind": "fixed", "ms": 300.0}, "settle_ms": 0.0},
        "started_at": "2026-01-09T10:00:00+00:00", "finished_at": "2026-01-09T10:00:10+00:00",
        "interrupted": False, "planned_trials": 40, "wall_s": 10.0, "host": {}, "concurrency": 4,
    }
    meta.update(kw)
    return meta


def test_summarize_fields_from_data() -> None:
    offsets = [-100.0, 0.0, 100.0, 400.0]
    model = {o: model_race_probability(o, Fixed(300.0), 0.0, "vulnerable", "none") for o in offsets}
    trials, i = [], 0
    for o in offsets:
        for _ in range(5):
            trials.append(trial(i, "none", o, "race" if model[o] == 1.0 else "clean"))
            i += 1
            trials.append(trial(i, "finished-check", o, "clean", guard_cost_ms=float(i)))
            i += 1
    trials[0] = trial(0, "none", -100.0, "clean", agree=False, disagreement="audit: race")
    df = frame(trials)
    meta = _meta()
    s = summarize(df, meta)
    assert s["schema_version"] == SUMMARY_SCHEMA_VERSION and s["scenario"] == "synthetic" and s["seed"] == 7
    assert s["run"]["trials"] == len(trials)
    assert s["run"]["trials_per_s"] == pytest.approx(len(trials) / meta["wall_s"])
    assert list(s["guards"]) == ["none", "finished-check"]
    none = s["guards"]["none"]
    races = sum(t.outcome == "race" and t.guard == "none" for t in trials)
    assert none["races"] == races and none["trials"] == len(trials) // 2
    assert (none["ci_low"], none["ci_high"]) == pytest.approx(wilson_interval(races, len(trials) // 2))
    assert none["outcomes"]["race"] == races and none["outcomes"]["indeterminate"] == 0
    win = [t for t in trials if t.guard == "none" and abs(t.offset_ms) >= WINDOW_MIN_ABS_OFFSET_MS]
    assert none["window"]["trials"] == len(win)
    assert none["window"]["races"] == sum(t.outcome == "race" for t in win)
    assert s["disagreements"]["count"] == 1 and s["disagreements"]["examples"][0]["trial_id"] == 0
    assert s["model_agreement"]["bins"] == len(offsets)
    assert s["model_agreement"]["covered"] == len(offsets)
    fc_costs = [t.guard_cost_ms for t in trials if t.guard == "finished-check"]
    assert s["guards"]["finished-check"]["guard_cost_ms"]["p50"] == pytest.approx(pd.Series(fc_costs).median())


def test_summarize_empty_and_interrupted_is_json_safe() -> None:
    import json

    s = summarize(frame([]), _meta(finished_at=None, interrupted=True, wall_s=None))
    json.dumps(s, allow_nan=False)
    assert s["run"]["trials"] == 0 and s["run"]["trials_per_s"] is None and s["run"]["interrupted"]
    assert s["guards"] == {} and s["offset_error_ms"]["client"]["p50"] is None
    assert s["model_agreement"]["bins"] == 0 and s["model_agreement"]["fraction"] is None


def test_hook_stats_counts_notifications_delivered_out_of_status_order() -> None:
    from harness.analysis.summary import hook_stats

    def hook(state: str, change_ns: int, sent_ns: int, outcome: str = "delivered") -> dict:
        return {"state": state, "changeNs": change_ns, "sentNs": sent_ns, "outcome": outcome, "attempt": 1}

    in_order = {"trial_id": 0, "audit": {"hooks": [hook("ready-for-handling", 1, 10), hook("handling", 2, 20)]}}
    # `cancel` (the latest change) arrives first, `handling` before `ready-for-handling`: 3 inverted pairs;
    # a failed attempt and a later duplicate of an already-delivered status do not count.
    shuffled = {"trial_id": 1, "audit": {"hooks": [
        hook("ready-for-handling", 1, 50), hook("handling", 2, 40), hook("cancel", 3, 30),
        hook("ready-for-handling", 1, 5, outcome="timeout"), hook("handling", 2, 60)]}}
    stats = hook_stats([in_order, shuffled], service_of={0: "a", 1: "b"})
    assert stats["services"]["a"]["reorders"] == 0
    assert stats["services"]["b"]["reorders"] == 3

"""Calibration against the race model: the pure coverage computation on synthetic data, and
one short `race-harness calibrate` run on a tiny scenario (live and simulated)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import binom

from harness import calibrate as calibrate_mod
from harness.analysis.sequential import wilson_interval
from harness.analysis.stats import RATE_COLUMNS
from harness.calibrate import CalibrationRun
from harness.analysis.calibration import (
    DETECT_POWER,
    calibrate_trials,
    compare_bins,
    compare_trials,
    coverage,
    coverage_of,
    detection_power,
    power_decide,
    rate_table_with_models,
    verdict_sentence,
)
from harness.cli import EXIT_ERROR, EXIT_GATE_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, main
from harness.errors import ReportError
from harness.report import build_report
from mock_orders_api.delays import Fixed, parse_delay


def rates(rows: list[tuple[str, float, int, int, float]], conditional: list[float] | None = None) -> pd.DataFrame:
    """A rate table from (guard, offset, trials, races, model) rows."""
    out = []
    for i, (guard, offset, n, k, model) in enumerate(rows):
        low, high = wilson_interval(k, n)
        out.append({"guard": guard, "offset_ms": offset, "trials": n, "races": k, "rate": k / n if n else math.nan,
                    "ci_low": low, "ci_high": high, "not_judged": 0, "failed": 0, "model": model,
                    "conditional": conditional[i] if conditional else model})
    return pd.DataFrame(out, columns=RATE_COLUMNS + ["model", "conditional"])


def curve(races: list[int], n: int = 20, guard: str = "none") -> pd.DataFrame:
    """Ten bins whose model rises 0 -> 0.9; `races` per bin out of n."""
    models = [i / 10 for i in range(10)]
    return rates([(guard, float(100 * i), n, k, m) for i, (k, m) in enumerate(zip(races, models))])


ON_MODEL = [round(i / 10 * 20) for i in range(10)]


# --------------------------------------------------------------------------- coverage


def test_every_bin_covered_passes() -> None:
    res = coverage(curve(ON_MODEL))
    g = res["guards"]["none"]["live"]["model"]
    assert (g["bins"], g["covered"], g["fraction"], g["uncovered"]) == (10, 10, 1.0, [])
    assert res["passed"] is True and res["gated_fraction"] == 1.0
    assert res["simulated"] is False and "simulated" not in res["guards"]["none"]


def test_uncovered_bins_are_listed_and_fail_below_the_threshold() -> None:
    races = list(ON_MODEL)
    races[0] = 10  # model 0.0, measured 10/20: interval [0.30, 0.70]
    races[9] = 2  # model 0.9, measured 2/20
    res = coverage(curve(races))
    g = res["guards"]["none"]["live"]["model"]
    assert (g["bins"], g["covered"], g["fraction"]) == (10, 8, 0.8)
    assert [u["offset_ms"] for u in g["uncovered"]] == [0.0, 900.0]
    assert g["uncovered"][0]["model"] == 0.0 and g["uncovered"][0]["rate"] == 0.5
    assert res["passed"] is False  # 80% < 90%
    assert coverage(curve(races), min_coverage=0.8)["passed"] is True  # the threshold is inclusive


def test_only_the_unguarded_curve_gates() -> None:
    bad_guard = curve([20] * 10, guard="finished-check")  # far off the model everywhere
    res = coverage(pd.concat([curve(ON_MODEL), bad_guard], ignore_index=True))
    assert res["guards"]["finished-check"]["live"]["model"]["fraction"] == 0.1  # only its 0.9 bin covers
    assert res["passed"] is True


def test_empty_bins_and_missing_models_are_not_judged() -> None:
    t = rates([("none", 0.0, 0, 0, 0.5), ("none", 50.0, 10, 10, 1.0), ("none", 100.0, 10, 0, math.nan)])
    c = coverage_of(t, "model")
    assert (c["bins"], c["covered"]) == (1, 1)
    assert coverage(rates([("none", 0.0, 0, 0, 0.5)]))["passed"] is False  # nothing to judge: not a pass
    assert coverage(rates([("serialized", 0.0, 10, 0, 0.0)]))["passed"] is False  # no unguarded curve


def test_gate_on_the_conditional_model() -> None:
    # Few trials: the drawn delays happened to be short, so fewer races than the distribution predicts.
    t = rates([("none", 100.0, 10, 1, 0.9), ("none", 200.0, 10, 9, 0.9)], conditional=[0.1, 0.9])
    assert coverage(t)["passed"] is False  # 1/2 bins cover the distribution-level model
    res = coverage(t, gate_on="conditional")
    assert res["passed"] is True and res["gated_model"] == "conditional"
    assert res["guards"]["none"]["live"]["conditional"]["fraction"] == 1.0
    with pytest.raises(ValueError, match="gate_on"):
        coverage(t, gate_on="nope")


def test_live_vs_simulated_per_bin() -> None:
    live = curve(ON_MODEL)
    sim_races = list(ON_MODEL)
    sim_races[5] = 20  # 10/20 live vs 20/20 simulated: intervals do not overlap
    res = coverage(live, curve(sim_races))
    d = res["guards"]["none"]["live_vs_simulated"]
    assert d["bins"] == 10 and d["intervals_overlap"] == 9
    assert d["max_abs_diff"] == pytest.approx(0.5) and d["mean_abs_diff"] == pytest.approx(0.05)
    b5 = next(b for b in d["per_bin"] if b["offset_ms"] == 500.0)
    assert (b5["live"], b5["simulated"], b5["diff"], b5["overlap"]) == (0.5, 1.0, -0.5, False)
    assert res["simulated"] is True
    assert res["guards"]["none"]["simulated"]["model"]["covered"] == 9
    assert compare_bins(live, live.iloc[:0])["bins"] == 0


# --------------------------------------------------------------------------- rate tables from trials


def trials(rows: list[tuple[int, str, float, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["trial_id", "guard", "offset_ms", "outcome", "change_delay_ms"])


def test_models_per_bin_from_trials() -> None:
    # Offset 100: delays 50, 150, 250 -> conditional 2/3 (D > offset); offset -100 within S=150 -> 1.
    df = trials([(1, "none", 100.0, "race", 150.0), (2, "none", 100.0, "race", 250.0),
                 (3, "none", 100.0, "invoice_refused", 50.0), (4, "none", 100.0, "indeterminate", 500.0),
                 (5, "none", -100.0, "race", 80.0), (6, "serialized", 100.0, "clean", 250.0)])
    t = rate_table_with_models(df, parse_delay("lognormal:300,0.5"), 150.0, "vulnerable")
    row = t[(t["guard"] == "none") & (t["offset_ms"] == 100.0)].iloc[0]
    assert (row["trials"], row["races"], row["not_judged"]) == (3, 2, 1)  # indeterminate left out
    assert row["conditional"] == pytest.approx(2 / 3)
    assert row["model"] == pytest.approx(parse_delay("lognormal:300,0.5").sf(100.0))
    assert t[(t["guard"] == "none") & (t["offset_ms"] == -100.0)].iloc[0]["conditional"] == 1.0
    s = t[t["guard"] == "serialized"].iloc[0]
    assert (s["model"], s["conditional"]) == (0.0, 0.0)
    # Fixed delay: both models agree.
    f = rate_table_with_models(df, Fixed(200.0), 150.0, "vulnerable")
    assert f[(f["guard"] == "none") & (f["offset_ms"] == 100.0)].iloc[0]["model"] == 1.0


def test_calibrate_trials_bins_both_runs_alike_and_compares_trials() -> None:
    live = trials([(1, "none", 50.0, "race", 200.0), (2, "none", 400.0, "invoice_refused", 200.0),
                   (3, "none", 50.0, "race", 200.0), (4, "none", 400.0, "race", 200.0)])
    sim = live.assign(outcome=["race", "invoice_refused", "race", "invoice_refused"])
    meta = {"mock": {"policy": "vulnerable", "delay": {"kind": "fixed", "ms": 200.0}, "settle_ms": 0}}
    res, lr, sr = calibrate_trials(live, sim, meta)
    assert sr is not None and list(lr["offset_ms"]) == list(sr["offset_ms"]) == [50.0, 400.0]
    assert res["trial_agreement"]["none"] == {"trials": 4, "same_outcome": 3, "fraction": 0.75}
    assert res["guards"]["none"]["live"]["model"]["covered"] == 1  # 1/2 at 400: [0.09, 0.91] misses 0
    json.dumps(res)  # JSON-safe
    assert compare_trials(live, live.iloc[:0]) == {}


# --------------------------------------------------------------------------- power


def test_detection_power_is_the_binomial_probability_of_excluding_the_model() -> None:
    # model 0: only 0/n is covered, so power = P(k >= 1 | 0.2) = 1 - 0.8^n (0.8 reached at n = 8)
    assert detection_power(2, 0.0) == pytest.approx(1 - 0.8 ** 2)
    assert detection_power(7, 0.0) < DETECT_POWER <= detection_power(8, 0.0) == pytest.approx(1 - 0.8 ** 8)
    assert detection_power(8, 1.0) == pytest.approx(detection_power(8, 0.0))  # the mirror
    # model 0.5, n = 20: the interval excludes 0.5 for k <= 5 or k >= 15 (Wilson); the worse side is 0.3/0.7
    lo, hi = wilson_interval(14, 20), wilson_interval(15, 20)
    assert lo[0] <= 0.5 < hi[0]
    assert detection_power(20, 0.5) == pytest.approx(float(binom.sf(14, 20, 0.7) + binom.cdf(5, 20, 0.7)))
    assert detection_power(0, 0.5) == 0.0


def test_small_bins_make_a_covered_calibration_inconclusive() -> None:
    two = coverage(curve([0, 0, 0, 0, 1, 1, 1, 1, 2, 2], n=2))  # 2 trials per bin: every interval covers the model
    assert two["passed"] is True and two["verdict"] == "inconclusive"
    assert two["gated_power"]["powered"] == 0 and len(two["gated_power"]["underpowered"]) == 10
    assert "INCONCLUSIVE" in verdict_sentence(two) and "deviation of 0.2" in verdict_sentence(two)
    big = coverage(curve([round(i / 10 * 80) for i in range(10)], n=80))
    assert big["verdict"] == "pass" and big["gated_power"]["powered"] == 10
    assert coverage(curve([20] * 10))["verdict"] == "fail"  # not covered: a failure at any n


# --------------------------------------------------------------------------- the command


TINY = """
name = "calibrate-test"
seed = 7
[target]
kind = "embedded"
[mock]
policy = "vulnerable"
change_delay = "fixed:200"
settle_ms = 150
pin_delays = true
[order]
items = [{ id = "1", name = "Shirt", quantity = 2, price = 5000 }]
shipping = 1000
[change]
items_removed = [{ id = "1", quantity = 1 }]
[sweep]
offsets_ms = [-400, -100, 60, 400]
trials_per_offset = 2
[guards]
names = ["none", "finished-check"]
poll_interval_ms = 10
timeout_ms = 3000
[run]
concurrency = 8
start_spread_ms = 100
lead_ms = 1000
"""


def test_calibrate_command_live_and_simulated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TINY has 2 trials per offset: every interval covers the model, and none could have noticed a
    deviation of 0.2 from it, so the calibration is INCONCLUSIVE (exit 3), not passed."""
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY, encoding="utf-8")
    rc = main(["calibrate", str(scenario), "--out", str(tmp_path / "reports"), "--no-progress", "--trials", "2"])
    captured = capsys.readouterr()
    assert rc == EXIT_INCONCLUSIVE, captured.err
    assert "none" in captured.out
    assert ("calibration: INCONCLUSIVE (none vs model: 100% of bins covered (needed 90%); only 0 of 4 bins have "
            "enough trials to detect a deviation of 0.2 from the model with power 80%)") in captured.err
    runs = sorted((tmp_path / "reports").iterdir())
    assert len(runs) == 2  # live + simulated
    live = next(r for r in runs if (r / "calibration.json").exists())
    res = json.loads((live / "calibration.json").read_text(encoding="utf-8"))
    assert res["simulated"] is True and res["passed"] is True and res["verdict"] == "inconclusive"
    assert res["gated_power"]["bins"] == 4 and res["gated_power"]["powered"] == 0
    assert res["guards"]["none"]["live"]["model"] == {"bins": 4, "covered": 4, "fraction": 1.0, "uncovered": []}
    assert res["guards"]["none"]["live_vs_simulated"]["max_abs_diff"] == 0.0
    assert res["trial_agreement"]["none"]["same_outcome"] == 8
    assert (live / "calibration.png").stat().st_size > 0
    assert "INCONCLUSIVE: the live none curve" in (live / "calibration.html").read_text(encoding="utf-8")
    # the live run's report is rebuilt with a calibration section; the simulated one has none
    summary = json.loads((live / "summary.json").read_text(encoding="utf-8"))
    assert summary["calibration"]["passed"] is True and summary["calibration"]["gated_fraction"] == 1.0
    assert summary["calibration"]["verdict"] == "inconclusive"
    assert "Calibration against the race model" in (live / "report.html").read_text(encoding="utf-8")
    assert "| none | 4/4 (100%) |" in (live / "report.md").read_text(encoding="utf-8")
    sim = next(r for r in runs if r != live)
    assert "calibration" not in json.loads((sim / "summary.json").read_text(encoding="utf-8"))

    (live / "calibration.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ReportError, match="calibration.json: expected the object"):
        build_report(live)


def test_calibrate_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY, encoding="utf-8")
    seen = {}

    def fake(scn, out, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        res = coverage(curve([0] + [60] * 9, n=60), min_coverage=kw["min_coverage"])  # 1/10 bins covered
        res["note"] = "simulated mode not available in this version"
        p = tmp_path / "x"
        return CalibrationRun(p, None, res, p / "c.json", p / "c.png", p / "c.html", False)

    monkeypatch.setattr(calibrate_mod, "run_calibration", fake)
    assert main(["calibrate", str(scenario), "--no-progress", "--no-simulate"]) == EXIT_GATE_FAILED
    assert seen["simulate"] is False and seen["min_coverage"] == 0.9
    assert "calibration: FAILED" in capsys.readouterr().err
    assert main(["calibrate", str(scenario), "--no-progress", "--min-coverage", "0.1"]) == EXIT_OK
    assert main(["calibrate", str(scenario), "--no-progress", "--min-coverage", "2"]) == EXIT_ERROR


def test_power_decide_leaves_the_small_unguarded_bins_undecided() -> None:
    decide = power_decide(Fixed(200.0), 150.0, "vulnerable")
    df = pd.DataFrame([{"guard": "none", "offset_ms": -400.0, "outcome": "clean"}] * 8
                      + [{"guard": "none", "offset_ms": 60.0, "outcome": "race"}] * 2
                      + [{"guard": "finished-check", "offset_ms": 60.0, "outcome": "clean"}] * 2)
    assert decide(df) == (False, [("none", 60.0)])  # model 0 / 1: 8 trials reach power 0.83, 2 do not
    assert decide(df[df["offset_ms"] == -400.0]) == (True, [])


def test_calibrate_rounds_add_trials_and_the_simulated_run_replays_them(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY, encoding="utf-8")
    rc = main(["calibrate", str(scenario), "--out", str(tmp_path / "reports"), "--no-progress", "--trials", "2",
               "--max-trials", "24"])
    err = capsys.readouterr().err
    assert rc in (EXIT_INCONCLUSIVE, EXIT_OK), err
    assert "round 3: " in err
    live = next(r for r in (tmp_path / "reports").iterdir() if (r / "calibration.json").exists())
    sim = next(r for r in (tmp_path / "reports").iterdir() if r != live)
    ids = [sorted(pd.read_csv(r / "trials.csv")["trial_id"]) for r in (live, sim)]
    assert ids[0] == ids[1] and len(ids[0]) == 24
    meta = [json.loads((r / "run.json").read_text(encoding="utf-8"))["rounds"] for r in (live, sim)]
    assert meta[0]["trials_per_round"] == meta[1]["trials_per_round"] and sum(meta[0]["trials_per_round"]) == 24
    assert meta[1]["replayed"] is True


def test_verdict_sentence_of_a_pass_and_of_an_older_result_without_verdict() -> None:
    # calibration.json written before the three-verdict gate has only "passed".
    base = {"gated_guard": "none", "gated_model": "model", "gated_fraction": 0.95, "min_coverage": 0.9}
    tail = ": the live none curve's 95% intervals cover the model in 95% of its bins (needed 90%)"
    assert verdict_sentence({**base, "verdict": "pass", "passed": True}) == "passed" + tail
    assert verdict_sentence({**base, "passed": True}) == "passed" + tail
    assert verdict_sentence({**base, "passed": False}) == "FAILED" + tail


def test_detection_power_by_hand_for_one_trial_and_at_the_edges_of_the_probability_range() -> None:
    # One trial: Wilson(0/1) = [0, 0.79] holds 0.1, Wilson(1/1) = [0.21, 1] excludes it; the rate
    # 0.1 - 0.2 is no probability, so the power is P(1 race | rate 0.3) = 0.3.
    assert detection_power(1, 0.1) == pytest.approx(0.3)
    # Model 0.2 and a true rate of 0 (a side that *is* a probability): 0/10 gives Wilson [0, 0.28],
    # which still holds 0.2, so 10 trials can never notice it: power 0, whatever the other side says.
    assert detection_power(10, 0.2) == 0.0
    assert detection_power(10, 0.8) == 0.0  # the mirror, at a true rate of 1


def test_a_bad_delay_in_the_run_is_named_where_it_comes_from() -> None:
    from harness.analysis.calibration import calibrate_trials
    from mock_orders_api.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^run\.json mock\.delay: unknown delay distribution 'bogus'"):
        calibrate_trials(pd.DataFrame(), None, {"mock": {"delay": "bogus:1"}})


def test_power_of_counts_judged_bins_and_lists_the_weak_ones() -> None:
    from harness.analysis.calibration import power_of

    rates = pd.DataFrame({"offset_ms": [0.0, 100.0, 200.0, 300.0], "trials": [0, 1, 50, 40],
                          "model": [0.5, 0.1, 0.5, math.nan]})
    # Judged bins: 100 ms (1 trial: power 0.3, by hand in the detection_power test) and 200 ms;
    # the bin without trials and the one without a model value are not bins of the verdict.
    assert power_of(rates, "model") == {
        "deviation": 0.2, "power": DETECT_POWER, "bins": 2, "powered": 1,
        "underpowered": [{"offset_ms": 100.0, "trials": 1, "model": 0.1, "power": pytest.approx(0.3)}]}
    assert power_of(rates, "conditional") == {"deviation": 0.2, "power": DETECT_POWER, "bins": 0, "powered": 0,
                                              "underpowered": []}


def test_enough_powered_bins_is_inclusive_and_one_bin_can_pass() -> None:
    # Ten covered bins, nine of them big enough to notice a 0.2 deviation: 9 >= 0.9 x 10 passes.
    rows = [("none", 100.0 * i, 80, round(i / 10 * 80), i / 10) for i in range(9)] + [("none", 900.0, 2, 2, 0.9)]
    res = coverage(rates(rows))
    assert (res["gated_fraction"], res["gated_power"]["bins"], res["gated_power"]["powered"]) == (1.0, 10, 9)
    assert res["verdict"] == "pass"
    one_bin = coverage(rates([("none", 100.0, 80, 40, 0.5)]))
    assert (one_bin["gated_power"]["bins"], one_bin["verdict"]) == (1, "pass")


def test_a_deviation_no_rate_can_have_cannot_be_detected() -> None:
    # model 0.5 +- 0.6: neither side is a probability, so no bin has power (the docstring's "sides
    # that are probabilities"); one side in range keeps its own power.
    assert detection_power(50, 0.5, deviation=0.6) == 0.0
    assert 0.0 < detection_power(20, 0.6, deviation=0.45) < 1.0

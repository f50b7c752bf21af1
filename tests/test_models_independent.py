"""The race model, the delay draws, calibration coverage and the oracle checked against
independent sources: scipy.stats distributions (never the `sf` the model itself calls),
hand-derived tables, a goodness-of-fit test of the mock's draws, and synthetic data with
known answers. These are the tests that fail when a verdict-deciding formula is wrong
(survival function swapped for the CDF, a doubled sigma, a cross-check skipping a kind).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from harness.analysis.calibration import (
    conditional_probability,
    coverage,
    coverage_of,
    rate_table_with_models,
)
from harness.analysis.model import model_from_run, model_race_probability
from harness.analysis.sequential import wilson_interval
from harness.analysis.stats import RATE_COLUMNS, load_trials
from harness.core.oracle import Outcome, client_outcome, cross_check
from harness.core.scenario import parse_scenario
from harness.sim.run import run_simulated
from mock_orders_api.delays import DelayDistribution, Fixed, LogNormal, Normal, Uniform, parse_delay
from tests.test_oracle import INITIAL, audit, change_event, invoice_event
from tests.test_simulate import scenario_dict

SETTLE = 150.0
OFFSETS = [-1000.0, -0.5, 0.0, 1.0, 49.9, 120.0, 300.0, 512.5, 999.0, 1000.0, 4000.0]

# (our distribution, the same distribution built independently in scipy.stats)
SCIPY_TWINS: list[tuple[DelayDistribution, stats.rv_continuous]] = [
    (Uniform(50.0, 1000.0), stats.uniform(loc=50.0, scale=950.0)),
    (LogNormal(300.0, 0.6), stats.lognorm(s=0.6, scale=300.0)),
    (LogNormal(80.0, 1.5), stats.lognorm(s=1.5, scale=80.0)),
    (Normal(400.0, 120.0), stats.norm(loc=400.0, scale=120.0)),
]


def _scipy_sf(frozen: stats.rv_continuous, dist: DelayDistribution, ms: float) -> float:
    """P(D > ms) from scipy; Normal is clamped at 0 (the clamped mass sits at exactly 0 ms)."""
    if isinstance(dist, Normal) and ms < 0:
        return 1.0
    return float(frozen.sf(ms))


# --------------------------------------------------------------------------- the race model vs scipy


@pytest.mark.parametrize(("dist", "frozen"), SCIPY_TWINS, ids=lambda x: type(x).__name__)
def test_unguarded_model_is_scipys_survival_function(dist: DelayDistribution, frozen: stats.rv_continuous) -> None:
    for off in OFFSETS:
        expected = _scipy_sf(frozen, dist, off) if off >= 0 else (1.0 if -SETTLE < off < 0 else 0.0)
        got = model_race_probability(off, dist, SETTLE, "vulnerable", "none")
        assert got == pytest.approx(expected, abs=1e-12), (dist, off)


@pytest.mark.parametrize(("dist", "frozen"), SCIPY_TWINS, ids=lambda x: type(x).__name__)
def test_delay_sf_matches_scipy_and_is_not_the_cdf(dist: DelayDistribution, frozen: stats.rv_continuous) -> None:
    for off in OFFSETS:
        assert dist.sf(off) == pytest.approx(_scipy_sf(frozen, dist, off), abs=1e-12), (dist, off)
    # A point where sf and cdf differ clearly: sf swapped for cdf cannot pass.
    median = float(frozen.ppf(0.5))
    assert dist.sf(median * 0.5) > 0.5 > dist.sf(median * 1.5)


# Hand-derived values (no library): uniform is linear; lognormal/normal at z = 0, +-1 sd.
HAND_TABLE = [
    (Fixed(300.0), 0.0, 1.0), (Fixed(300.0), 299.9, 1.0), (Fixed(300.0), 300.0, 0.0), (Fixed(300.0), 301.0, 0.0),
    (Uniform(100.0, 500.0), 0.0, 1.0), (Uniform(100.0, 500.0), 100.0, 1.0), (Uniform(100.0, 500.0), 200.0, 0.75),
    (Uniform(100.0, 500.0), 400.0, 0.25), (Uniform(100.0, 500.0), 500.0, 0.0), (Uniform(100.0, 500.0), 900.0, 0.0),
    (LogNormal(200.0, 0.5), 200.0, 0.5), (LogNormal(200.0, 0.5), 200.0 * math.exp(0.5), 0.15865525393145707),
    (LogNormal(200.0, 0.5), 200.0 * math.exp(-0.5), 0.8413447460685429), (LogNormal(200.0, 0.0), 199.0, 1.0),
    (LogNormal(200.0, 0.0), 200.0, 0.0),
    (Normal(400.0, 100.0), 400.0, 0.5), (Normal(400.0, 100.0), 500.0, 0.15865525393145707),
    (Normal(400.0, 100.0), 300.0, 0.8413447460685429), (Normal(400.0, 100.0), 600.0, 0.022750131948179195),
    (Normal(400.0, 0.0), 399.0, 1.0), (Normal(400.0, 0.0), 400.0, 0.0),
]


@pytest.mark.parametrize(("dist", "offset", "expected"), HAND_TABLE)
def test_model_against_hand_derived_table(dist: DelayDistribution, offset: float, expected: float) -> None:
    assert model_race_probability(offset, dist, SETTLE, "vulnerable", "none") == pytest.approx(expected, abs=1e-12)


def test_model_per_guard_and_policy_hand_table() -> None:
    d = Normal(400.0, 100.0)
    m = model_race_probability
    # Invoice first inside the settle window races for none and finished-check; outside it never.
    for guard in ("none", "finished-check"):
        assert m(-SETTLE + 0.001, d, SETTLE, "vulnerable", guard) == 1.0
        assert m(-SETTLE, d, SETTLE, "vulnerable", guard) == 0.0
        assert m(-0.001, d, SETTLE, "vulnerable", guard) == 1.0
    assert m(-1.0, d, 0.0, "vulnerable", "none") == 0.0  # no settle window
    # Change first (offset 0 included): finished-check closes it, none races with P(D > offset).
    assert m(0.0, d, SETTLE, "vulnerable", "finished-check") == 0.0
    assert m(0.5, d, SETTLE, "vulnerable", "finished-check") == 0.0
    assert m(0.0, d, SETTLE, "vulnerable", "none") == pytest.approx(float(stats.norm(400, 100).sf(0.0)), abs=1e-15)
    assert m(500.0, d, SETTLE, "vulnerable", "finished-check") == 0.0
    for off in (-100.0, 0.0, 500.0):
        assert m(off, d, SETTLE, "vulnerable", "serialized") == 0.0
        assert m(off, d, SETTLE, "strict", "none") == 0.0
    assert math.isnan(m(100.0, d, SETTLE, "vulnerable", "nope"))
    assert math.isnan(m(100.0, d, SETTLE, "lenient", "none"))


def test_model_from_run_uses_the_recorded_normal_delay() -> None:
    model = model_from_run({"mock": {"delay": {"kind": "normal", "mean_ms": 400.0, "sd_ms": 100.0},
                                     "settle_ms": SETTLE, "policy": "vulnerable"}})
    assert model is not None
    assert model(500.0, "none") == pytest.approx(float(stats.norm(400, 100).sf(500)), abs=1e-12)
    assert model(-100.0, "none") == 1.0
    assert model(-100.0, "serialized") == 0.0
    no_settle = model_from_run({"mock": {"delay": "normal:400,100", "policy": "vulnerable"}})
    assert no_settle is not None and no_settle(-100.0, "none") == no_settle(-0.5, "none") == 0.0
    assert model_from_run({"mock": {"delay": "nonsense:1"}}) is None
    assert model_from_run({"mock": {"delay": "fixed:1", "settle_ms": "x"}}) is None
    assert model_from_run({"mock": "not a table"}) is None
    assert model_from_run({}) is None


# --------------------------------------------------------------------------- the mock's draws vs their distribution

N_DRAWS = 2000
KS_ALPHA = 1e-3  # seeded, so not flaky; doubled sigma / swapped functions give p-values far below it


def _draws(dist: DelayDistribution, seed: int = 20240611) -> list[float]:
    rng = random.Random(seed)
    return [dist.sample(rng) for _ in range(N_DRAWS)]


@pytest.mark.parametrize(("dist", "frozen"), SCIPY_TWINS, ids=lambda x: type(x).__name__)
def test_draws_follow_the_scipy_distribution(dist: DelayDistribution, frozen: stats.rv_continuous) -> None:
    draws = _draws(dist)
    # Normal is clamped at 0: at these parameters the clamped mass is < 0.1%, below the test's resolution.
    assert stats.kstest(draws, frozen.cdf).pvalue > KS_ALPHA


@pytest.mark.parametrize("dist", [d for d, _ in SCIPY_TWINS], ids=lambda x: type(x).__name__)
def test_draws_agree_with_the_models_own_sf(dist: DelayDistribution) -> None:
    """What the mock draws and what the model assumes are the same distribution."""
    draws = _draws(dist)
    assert stats.kstest(draws, lambda x: 1.0 - pd.Series(x).map(dist.sf).to_numpy()).pvalue > KS_ALPHA


def test_goodness_of_fit_has_the_power_to_see_a_doubled_sigma() -> None:
    wrong = _draws(LogNormal(300.0, 1.2))  # what "twice the sigma" would draw for LogNormal(300, 0.6)
    assert stats.kstest(wrong, stats.lognorm(s=0.6, scale=300.0).cdf).pvalue < 1e-6


def test_fixed_draws_are_the_value_and_normal_clamps_at_zero() -> None:
    assert set(_draws(Fixed(123.0))) == {123.0}
    draws = _draws(Normal(0.0, 50.0))
    zeros = sum(1 for d in draws if d == 0.0)
    assert min(draws) == 0.0
    assert stats.binomtest(zeros, N_DRAWS, 0.5).pvalue > KS_ALPHA  # half the mass is clamped to exactly 0
    positive = [d for d in draws if d > 0]
    assert stats.kstest(positive, stats.halfnorm(scale=50.0).cdf).pvalue > KS_ALPHA


def test_uniform_draws_stay_in_range() -> None:
    draws = _draws(Uniform(50.0, 60.0))
    assert 50.0 <= min(draws) and max(draws) <= 60.0


def test_parse_delay_round_trips_every_kind() -> None:
    for dist, _ in SCIPY_TWINS:
        assert parse_delay(dist.spec()) == dist
    assert parse_delay(Fixed(5.0).spec()) == Fixed(5.0)
    assert parse_delay("normal:400,120") == Normal(400.0, 120.0)


# --------------------------------------------------------------------------- calibration maths, known answers


def _rates(rows: list[tuple[float, int, int, float]]) -> pd.DataFrame:
    out = []
    for offset, n, k, model in rows:
        low, high = wilson_interval(k, n) if n else (math.nan, math.nan)
        out.append({"guard": "none", "offset_ms": offset, "trials": n, "races": k, "rate": k / n if n else math.nan,
                    "ci_low": low, "ci_high": high, "indeterminate": 0, "model": model, "conditional": model})
    return pd.DataFrame(out, columns=RATE_COLUMNS + ["model", "conditional"])


def test_coverage_counts_known_answer() -> None:
    # 10 trials each. Wilson(5/10) = [0.2366, 0.7634]; Wilson(0/10) = [0, 0.2775]; Wilson(10/10) = [0.7225, 1].
    table = _rates([(0.0, 10, 5, 0.5), (10.0, 10, 5, 0.2), (20.0, 10, 5, 0.8), (30.0, 10, 0, 0.0),
                    (40.0, 10, 10, 1.0), (50.0, 10, 0, 0.27), (60.0, 10, 0, 0.28), (70.0, 0, 0, 0.5),
                    (80.0, 10, 3, math.nan)])
    got = coverage_of(table, "model")
    # judged: 7 bins (no trials and NaN model excluded); uncovered: 0.2 and 0.8 at 5/10, 0.28 at 0/10
    assert (got["bins"], got["covered"]) == (7, 4)
    assert got["fraction"] == pytest.approx(4 / 7)
    assert [u["offset_ms"] for u in got["uncovered"]] == [10.0, 20.0, 60.0]


def test_coverage_threshold_boundary_is_inclusive() -> None:
    # 9 of 10 bins covered is exactly MIN_COVERAGE 0.9: passes; 8 of 10 fails.
    nine = _rates([(float(i), 10, 5, 0.5) for i in range(9)] + [(9.0, 10, 5, 0.05)])
    assert coverage(nine)["gated_fraction"] == pytest.approx(0.9)
    assert coverage(nine)["passed"] is True
    eight = _rates([(float(i), 10, 5, 0.5) for i in range(8)] + [(8.0, 10, 5, 0.05), (9.0, 10, 5, 0.05)])
    assert coverage(eight)["passed"] is False
    assert coverage(_rates([]))["passed"] is False  # nothing to judge never passes


def test_rate_table_with_models_averages_scipy_values_per_bin() -> None:
    dist = LogNormal(300.0, 0.6)
    df = pd.DataFrame({"trial_id": [1, 2, 3, 4], "guard": ["none"] * 4, "offset_ms": [100.0, 100.0, 500.0, 500.0],
                       "outcome": ["race", "clean", "race", "indeterminate"],
                       "change_delay_ms": [50.0, 150.0, 900.0, 10.0]})
    table = rate_table_with_models(df, dist, SETTLE, "vulnerable").set_index("offset_ms")
    sf = stats.lognorm(s=0.6, scale=300.0).sf
    assert table.loc[100.0, "model"] == pytest.approx(float(sf(100.0)), abs=1e-12)
    assert table.loc[500.0, "model"] == pytest.approx(float(sf(500.0)), abs=1e-12)
    assert table.loc[100.0, "conditional"] == pytest.approx(0.5)  # delays 50, 150 vs offset 100
    assert table.loc[500.0, "conditional"] == pytest.approx(1.0)  # 900 > 500; the indeterminate trial is out
    assert (table.loc[100.0, "trials"], table.loc[500.0, "trials"]) == (2, 1)


def test_conditional_probability_is_the_pinned_delay_indicator() -> None:
    assert conditional_probability(100.0, 100.1, SETTLE, "vulnerable", "none") == 1.0
    assert conditional_probability(100.0, 100.0, SETTLE, "vulnerable", "none") == 0.0
    assert math.isnan(conditional_probability(100.0, math.nan, SETTLE, "vulnerable", "none"))


# --------------------------------------------------------------------------- oracle: guard_timeout, indeterminate


class TestOracleGuardTimeoutAndIndeterminate:
    def test_guard_timeout_is_cross_checked_against_an_accepted_invoice(self) -> None:
        # The client gave up, but the audit shows an invoice accepted: that must be a disagreement.
        verdict, agree, why = cross_check(Outcome.GUARD_TIMEOUT, False, True, audit("clean"))
        assert (verdict, agree) == ("clean", False)
        assert "client invoice ok=False, audit has 1 accepted invoice(s)" in why

    def test_guard_timeout_vs_a_race_audit_is_a_disagreement(self) -> None:
        verdict, agree, why = cross_check(Outcome.GUARD_TIMEOUT, False, True, audit("race"))
        assert not agree
        assert "client says guard_timeout, audit verdict race" in why

    def test_guard_timeout_agrees_with_an_audit_without_invoice(self) -> None:
        assert cross_check(Outcome.GUARD_TIMEOUT, False, True, audit("clean", invoice_accepted=None)) == \
            ("clean", True, "")

    def test_indeterminate_skips_the_comparison_but_not_pending(self) -> None:
        assert cross_check(Outcome.INDETERMINATE, False, False, audit("race")) == ("race", True, "")
        verdict, agree, why = cross_check(Outcome.INDETERMINATE, False, False, audit("pending"))
        assert (verdict, agree) == ("pending", False)
        assert why == "audit still pending: a Change had not finished when the trial ended"

    def test_client_outcome_guard_timeout_keeps_the_guards_reason(self) -> None:
        assert client_outcome(change_event(), None, INITIAL, INITIAL, "timed out after 30 ms") == \
            (Outcome.GUARD_TIMEOUT, "timed out after 30 ms")
        assert client_outcome(change_event(), None, INITIAL, INITIAL, "") == \
            (Outcome.GUARD_TIMEOUT, "no invoice was sent")

    def test_indeterminate_reason_names_the_request(self) -> None:
        assert client_outcome(change_event(change_value=None), invoice_event(), INITIAL, INITIAL, "") == \
            (Outcome.INDETERMINATE, "change response has no totalChangeValue")
        outcome, why = client_outcome(change_event(), invoice_event(status=503), INITIAL, INITIAL, "")
        assert (outcome, why) == (Outcome.INDETERMINATE, "invoice: HTTP 503")
        outcome, why = client_outcome(change_event(responded=False, error="ReadTimeout"), invoice_event(),
                                      INITIAL, INITIAL, "")
        assert (outcome, why) == (Outcome.INDETERMINATE, "change: ReadTimeout")


def test_integration_outcome_reasons_are_exact() -> None:
    from harness.core.oracle import integration_outcome

    inv = [{"invoiceNumber": "NF-1", "accepted": True}]
    assert integration_outcome(change_event(status=503), None) == (Outcome.INDETERMINATE, "change: HTTP 503")
    assert integration_outcome(change_event(responded=False, error="ReadTimeout"), None) == \
        (Outcome.INDETERMINATE, "change: ReadTimeout")
    assert integration_outcome(change_event(), None) == (Outcome.INDETERMINATE, "no audit from the target")
    assert integration_outcome(change_event(), {"verdict": "clean", "invoices": []}) == \
        (Outcome.NO_INVOICE, "the service sent no invoice in time")
    assert integration_outcome(change_event(), {"verdict": "pending", "invoices": inv}) == \
        (Outcome.INDETERMINATE, "a Change had not finished when the trial ended")
    assert integration_outcome(change_event(), {"verdict": "race", "invoices": inv}) == (Outcome.RACE, "")
    assert integration_outcome(change_event(), {"verdict": "clean", "invoices": [{"accepted": False}]}) == \
        (Outcome.INVOICE_REFUSED, "")
    assert integration_outcome(change_event(), {"verdict": "clean", "invoices": inv}) == (Outcome.CLEAN, "")


# --------------------------------------------------------------------------- a guard timing out inside a run


def test_a_guard_timing_out_inside_a_simulated_run_is_a_guard_timeout_trial(tmp_path: Path) -> None:
    # finished-check polls the Change; a pinned 2 s delay against a 40 ms timeout times out every trial.
    data = scenario_dict(mock={"change_delay": "fixed:2000"},
                         sweep={"offsets_ms": [50, 100], "trials_per_offset": 2},
                         guards={"names": ["none", "finished-check"], "timeout_ms": 40})
    scenario = parse_scenario(data, "timeout.toml")
    run_dir, interrupted = run_simulated(scenario, tmp_path, workers=1)
    assert not interrupted
    df = load_trials(run_dir)
    fc = df[df["guard"] == "finished-check"]
    assert len(fc) == 4
    assert set(fc["outcome"]) == {Outcome.GUARD_TIMEOUT.value}
    assert all("40" in str(d) or "timeout" in str(d).lower() for d in fc["error"])
    # The unguarded trials in the same run are unaffected: Change first with D = 2 s > offset -> race.
    assert set(df[df["guard"] == "none"]["outcome"]) == {Outcome.RACE.value}


def test_coverage_rows_and_sentence_put_each_number_in_its_column() -> None:
    from harness.analysis.calibration import coverage_rows, verdict_sentence
    from tests.test_calibration import ON_MODEL, rates

    live = rates([("none", 100.0 * i, 20, k, i / 10) for i, k in enumerate(ON_MODEL)], conditional=[0.5] * 10)
    sim_races = ON_MODEL[:9] + [0]
    sim = rates([("none", 100.0 * i, 20, k, i / 10) for i, k in enumerate(sim_races)], conditional=[0.45] * 10)
    result = coverage(live, sim)
    result["trial_agreement"] = {"none": {"trials": 200, "same_outcome": 190, "fraction": 0.95}}
    (row,) = coverage_rows(result)
    assert row[:3] == ["none", "10/10 (100%)", "5/10 (50%)"]
    assert row[3:5] == ["9/10 (90%)", "4/10 (40%)"]
    assert row[5:] == ["0.090 / 0.900", "9/10", "190/200"]
    # 20 trials per bin cover the model but cannot notice a 0.2 deviation with 80% power in 9 of them.
    assert verdict_sentence(result) == ("INCONCLUSIVE: the live none curve's 95% intervals cover the model in 100% "
                                        "of its bins (needed 90%), but only 1 of 10 bins have enough trials to "
                                        "detect a deviation of 0.2 from the model with power 80%")
    alone = coverage(live, gate_on="conditional")
    assert coverage_rows(alone) == [["none", "10/10 (100%)", "5/10 (50%)", "–", "–", "–", "–", "–"]]
    assert verdict_sentence(alone) == ("FAILED: the live none curve's 95% intervals cover the conditional in 50% of "
                                       "its bins (needed 90%)")
    assert verdict_sentence(coverage(_rates([]))).endswith("cover the model in – of its bins (needed 90%)")


def test_uniform_with_no_spread_and_the_normal_spec() -> None:
    assert Uniform(100.0, 100.0).sf(100.0) == 0.0
    assert Uniform(100.0, 100.0).sf(99.9) == 1.0
    assert Uniform(100.0, 500.0).sf(100.0) == 1.0
    assert Normal(400.0, 120.0).spec() == {"kind": "normal", "mean_ms": 400.0, "sd_ms": 120.0}
    assert Fixed(5.0).spec() == {"kind": "fixed", "ms": 5.0}


def _spread_trials(seed: int) -> pd.DataFrame:
    """80 distinct offsets, one trial each (so rates are binned), races drawn from the model."""
    rng = random.Random(seed)
    dist = Uniform(0.0, 400.0)
    rows = []
    for i in range(80):
        off = -200.0 + 7.5 * i
        p = model_race_probability(off, dist, 100.0, "vulnerable", "none")
        rows.append((i + 1, "none", off, "race" if rng.random() < p else "clean", rng.uniform(0.0, 400.0)))
    return pd.DataFrame(rows, columns=["trial_id", "guard", "offset_ms", "outcome", "change_delay_ms"])


def test_calibrate_trials_is_coverage_of_both_binned_tables() -> None:
    from harness.analysis.calibration import calibrate_trials, compare_trials
    from harness.analysis.stats import choose_bin_ms, json_safe

    live, sim = _spread_trials(1), _spread_trials(2)
    meta = {"mock": {"policy": "vulnerable", "delay": "uniform:0,400", "settle_ms": 100.0}}
    bin_ms = choose_bin_ms(live)
    assert bin_ms is not None
    res, lt, st = calibrate_trials(live, sim, meta, min_coverage=0.5, gate_on="conditional")
    want_live = rate_table_with_models(live, Uniform(0.0, 400.0), 100.0, "vulnerable", bin_ms)
    want_sim = rate_table_with_models(sim, Uniform(0.0, 400.0), 100.0, "vulnerable", bin_ms)
    pd.testing.assert_frame_equal(lt, want_live)
    assert st is not None
    pd.testing.assert_frame_equal(st, want_sim)
    want = coverage(want_live, want_sim, min_coverage=0.5, gate_on="conditional")
    want["rate_bin_ms"] = bin_ms
    want["trial_agreement"] = compare_trials(live, sim)
    assert res == json_safe(want)
    assert res["min_coverage"] == 0.5 and res["gated_model"] == "conditional" and res["rate_bin_ms"] == bin_ms
    alone, _, none = calibrate_trials(live, None, meta)
    assert none is None and alone["trial_agreement"] == {} and alone["simulated"] is False


def test_compare_bins_and_trials_known_answers() -> None:
    from harness.analysis.calibration import compare_bins, compare_trials

    a = _rates([(0.0, 10, 5, 0.5), (10.0, 1, 1, 1.0), (20.0, 0, 0, 0.5), (30.0, 10, 0, 0.0)])
    b = _rates([(0.0, 10, 10, 0.5), (10.0, 1, 0, 1.0), (20.0, 4, 2, 0.5), (40.0, 10, 0, 0.0)])
    got = compare_bins(a, b)
    assert got["bins"] == 2  # 20 has no live trial, 30/40 are not shared
    assert [p["offset_ms"] for p in got["per_bin"]] == [0.0, 10.0]
    assert [p["diff"] for p in got["per_bin"]] == [-0.5, 1.0]
    # Wilson(5/10) = [0.237, 0.763] vs Wilson(10/10) = [0.722, 1]: overlap; 1/1 = [0.207, 1] vs 0/1 = [0, 0.793]
    assert [p["overlap"] for p in got["per_bin"]] == [True, True]
    assert (got["mean_abs_diff"], got["max_abs_diff"], got["intervals_overlap"]) == (0.75, 1.0, 2)
    far = compare_bins(_rates([(0.0, 30, 30, 1.0)]), _rates([(0.0, 30, 0, 0.0)]))
    assert far["per_bin"][0]["overlap"] is False and far["intervals_overlap"] == 0
    far_rev = compare_bins(_rates([(0.0, 30, 0, 0.0)]), _rates([(0.0, 30, 30, 1.0)]))
    assert far_rev["per_bin"][0]["overlap"] is False
    empty = compare_bins(_rates([(0.0, 0, 0, 0.5)]), _rates([(0.0, 3, 1, 0.5)]))
    assert (empty["bins"], empty["mean_abs_diff"], empty["max_abs_diff"]) == (0, None, None)
    t = pd.DataFrame({"trial_id": [1, 2, 3], "guard": ["none", "none", "serialized"],
                      "outcome": ["race", "clean", "clean"]})
    assert compare_trials(t, t.assign(outcome=["race", "race", "clean"])) == {
        "none": {"trials": 2, "same_outcome": 1, "fraction": 0.5},
        "serialized": {"trials": 1, "same_outcome": 1, "fraction": 1.0}}
    assert compare_trials(t.iloc[:0], t) == {} and compare_trials(t, t.iloc[:0]) == {}


def test_coverage_of_edges() -> None:
    assert coverage_of(_rates([]), "model") == {"bins": 0, "covered": 0, "fraction": None, "uncovered": []}
    assert coverage_of(_rates([(0.0, 1, 0, 0.0)]), "nope") == {"bins": 0, "covered": 0, "fraction": None,
                                                              "uncovered": []}
    one = coverage_of(_rates([(0.0, 1, 1, 0.0), (5.0, 1, 0, 0.0)]), "model")  # single-trial bins are judged
    assert (one["bins"], one["covered"]) == (2, 1)
    assert one["uncovered"] == [{"offset_ms": 0.0, "rate": 1.0, "ci_low": pytest.approx(wilson_interval(1, 1)[0]),
                                 "ci_high": 1.0, "model": 0.0, "trials": 1}]
    low, high = wilson_interval(3, 10)
    edges = _rates([(0.0, 10, 3, low), (1.0, 10, 3, high)])  # the model exactly on either bound is covered
    assert coverage_of(edges, "model")["covered"] == 2
    no_gated = coverage(_rates([(0.0, 10, 3, 0.3)]).assign(guard="serialized"))
    assert (no_gated["gated_fraction"], no_gated["passed"]) == (None, False)


def test_calibration_edge_inputs() -> None:
    from harness.analysis.calibration import calibrate_trials, compare_bins
    from mock_orders_api.errors import ConfigError

    empty = pd.DataFrame(columns=["trial_id", "guard", "offset_ms", "outcome", "change_delay_ms"])
    assert list(rate_table_with_models(empty, Fixed(1.0), 0.0, "vulnerable", 10.0).columns) == \
        RATE_COLUMNS + ["model", "conditional"]
    no_delay = pd.DataFrame({"trial_id": [1], "guard": ["none"], "offset_ms": [100.0], "outcome": ["race"]})
    t = rate_table_with_models(no_delay, Fixed(200.0), 0.0, "vulnerable")
    assert t.loc[0, "model"] == 1.0 and math.isnan(t.loc[0, "conditional"])
    binned = _spread_trials(3)
    table = rate_table_with_models(binned, Uniform(0.0, 400.0), 100.0, "vulnerable", 100.0)
    assert list(table["offset_ms"]) == [-150.0, -50.0, 50.0, 150.0, 250.0, 350.0]  # bin centres
    # The tolerance edges themselves are covered (computed exactly as coverage_of does).
    edge = _rates([(0.0, 10, 3, 0.0), (1.0, 10, 3, 0.0)])
    edge.loc[0, "model"] = edge.loc[0, "ci_low"] - 1e-9
    edge.loc[1, "model"] = edge.loc[1, "ci_high"] + 1e-9
    assert coverage_of(edge, "model")["covered"] == 2
    # Interval overlap at exactly the tolerance counts, both ways round.
    a, b = _rates([(0.0, 10, 3, 0.0)]), _rates([(0.0, 10, 3, 0.0)])
    b.loc[0, "ci_high"] = 0.25
    a.loc[0, "ci_low"] = 0.25 + 1e-9
    assert compare_bins(a, b)["per_bin"][0]["overlap"] is True
    assert compare_bins(b, a)["per_bin"][0]["overlap"] is True
    assert compare_bins(_rates([(0.0, 3, 1, 0.5)]), _rates([(0.0, 0, 0, 0.5)]))["bins"] == 0
    # A guard measured only in the simulated run still gets its entry.
    both = coverage(_rates([(0.0, 10, 3, 0.3)]), _rates([(0.0, 10, 3, 0.3)]).assign(guard="serialized"))
    assert list(both["guards"]) == ["none", "serialized"]
    with pytest.raises(ConfigError, match="run.json mock.delay"):
        calibrate_trials(binned, None, {"mock": {"delay": "bogus:1", "policy": "vulnerable"}})
    near = pd.DataFrame({"trial_id": [1], "guard": ["none"], "offset_ms": [-0.5], "outcome": ["clean"],
                         "change_delay_ms": [10.0]})
    res, live, _ = calibrate_trials(near, None, {"mock": {"delay": "fixed:10", "policy": "vulnerable"}})
    assert live.loc[0, "model"] == 0.0  # no settle_ms recorded: no settle window


def test_a_settle_window_shorter_than_a_millisecond_still_races() -> None:
    # The invoice-first window is (-settle, 0) for any settle > 0, in fractional milliseconds too.
    for guard in ("none", "finished-check"):
        assert model_race_probability(-0.5, Normal(400.0, 100.0), 1.0, "vulnerable", guard) == 1.0
        assert model_race_probability(-0.5, Normal(400.0, 100.0), 0.4, "vulnerable", guard) == 0.0

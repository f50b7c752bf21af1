"""harness.analysis.sequential against independent sources: closed forms derived by hand, published
values, scipy's binomial pmf/cdf (not the module's own log-likelihood formula), the project's
Wilson interval written out below from its formula, and a seeded Monte-Carlo run of the error rate at the limit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy import optimize
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from harness.analysis.sequential import (
    RACE_RATIO,
    SAFE_RATIO,
    Decision,
    clopper_pearson_interval,
    decide,
    decide_window,
    fixed_sample_size,
    newcombe_diff_interval,
    wilson_interval,
)

ALPHA = 0.05


def hand_wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval from its closed form (Wilson 1927), independent of statsmodels."""
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half) if k else 0.0, min(1.0, center + half) if k < n else 1.0)


def _lr(races: int, trials: int, alt: float, null: float) -> float:
    """Likelihood ratio straight from scipy's binomial pmf (the binomial coefficient cancels)."""
    return stats.binom.pmf(races, trials, alt) / stats.binom.pmf(races, trials, null)


# --------------------------------------------------------------------------- fixed-sample intervals


@pytest.mark.parametrize("n", [1, 5, 10, 37, 200])
def test_wilson_zero_races_is_z2_over_n_plus_z2(n: int) -> None:
    # Wilson's bounds solve (p - phat)^2 = z^2 p (1 - p) / n; at phat = 0 the roots are 0 and z^2 / (n + z^2).
    z = stats.norm.ppf(1 - ALPHA / 2)
    assert wilson_interval(0, n) == pytest.approx((0.0, z * z / (n + z * z)), abs=1e-12)


@pytest.mark.parametrize("races,trials", [(0, 10), (1, 10), (3, 60), (17, 40), (40, 40), (5, 1000)])
def test_wilson_matches_its_closed_form(races: int, trials: int) -> None:
    assert wilson_interval(races, trials) == pytest.approx(hand_wilson(races, trials), abs=1e-9)


def test_intervals_of_no_trials_are_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert clopper_pearson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("n", [1, 7, 20, 300])
def test_clopper_pearson_edges_are_closed_form(n: int) -> None:
    # 0 races: the upper bound u solves P(X <= 0 | u) = (1 - u)^n = alpha/2, so u = 1 - (alpha/2)^(1/n);
    # n races mirror it: the lower bound l solves l^n = alpha/2.
    assert clopper_pearson_interval(0, n) == pytest.approx((0.0, 1 - (ALPHA / 2) ** (1 / n)), abs=1e-12)
    assert clopper_pearson_interval(n, n) == pytest.approx(((ALPHA / 2) ** (1 / n), 1.0), abs=1e-12)


@pytest.mark.parametrize("races,trials", [(1, 10), (3, 60), (17, 40), (5, 1000)])
def test_clopper_pearson_inverts_the_binomial_tails(races: int, trials: int) -> None:
    low, high = clopper_pearson_interval(races, trials)
    # The defining property: each bound is where one binomial tail equals alpha/2.
    assert stats.binom.cdf(races, trials, high) == pytest.approx(ALPHA / 2, abs=1e-9)
    assert stats.binom.sf(races - 1, trials, low) == pytest.approx(ALPHA / 2, abs=1e-9)
    assert (low, high) == pytest.approx(proportion_confint(races, trials, alpha=ALPHA, method="beta"), abs=1e-9)


@pytest.mark.parametrize("a,m,b,n,expected", [
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10 (hybrid score, no CC).
    (56, 70, 48, 80, (0.0524, 0.3339)),
    (9, 10, 3, 10, (0.1705, 0.8090)),
    (6, 7, 2, 7, (0.0582, 0.8062)),
    (5, 56, 0, 29, (-0.0381, 0.1926)),
    (0, 10, 0, 20, (-0.1611, 0.2775)),
    (10, 10, 0, 20, (0.6791, 1.0000)),
])
def test_newcombe_matches_the_published_table(a: int, m: int, b: int, n: int,
                                              expected: tuple[float, float]) -> None:
    assert newcombe_diff_interval(a, m, b, n) == pytest.approx(expected, abs=6e-5)


def test_newcombe_needs_trials_in_both_samples() -> None:
    with pytest.raises(ValueError):
        newcombe_diff_interval(0, 0, 1, 10)


# --------------------------------------------------------------------------- fixed-size design


def test_fixed_design_with_a_perfect_guard_is_the_rule_of_three() -> None:
    # p1 = 0 passes whenever c >= 0, so n is the smallest with P(0 races | limit) = (1 - limit)^n <= alpha.
    n = math.ceil(math.log(ALPHA) / math.log(1 - 0.01))
    assert fixed_sample_size(0.01, ALPHA, 0.95, p1=0.0) == (n, 0)


def test_fixed_design_is_the_smallest_that_meets_both_errors() -> None:
    limit, p1, power = 0.1, 0.05, 0.9
    n, c = fixed_sample_size(limit, ALPHA, power, p1)
    assert stats.binom.cdf(c, n, limit) <= ALPHA
    assert stats.binom.cdf(c, n, p1) >= power
    for m in range(1, n):  # brute force: no smaller size has a cut-off that works
        ks = np.arange(m + 1)
        ok = ks[stats.binom.cdf(ks, m, limit) <= ALPHA]
        assert ok.size == 0 or stats.binom.cdf(ok.max(), m, p1) < power


# --------------------------------------------------------------------------- the sequential decision


@pytest.mark.parametrize("races", [0, 1])
def test_one_trial_against_a_tenth_of_a_percent_is_inconclusive(races: int) -> None:
    assert decide(races, 1, 0.001).verdict == "inconclusive"


def test_no_race_in_20_trials_against_one_percent_is_inconclusive() -> None:
    d = decide(0, 20, 0.01)
    assert d.verdict == "inconclusive"
    assert d.lower == 0.0 and d.upper > 0.01


def test_no_trials_is_inconclusive() -> None:
    assert decide(0, 0, 0.01) == Decision("inconclusive", 0.0, 1.0, 0, 0, 0.01, decide(0, 0, 0.01).reason)


def test_pass_boundary_with_no_race() -> None:
    limit = 0.01
    # Hand-derived: with no race the likelihood ratio of limit/2 against limit is
    # ((1 - limit/2) / (1 - limit))^n, so PASS needs n >= ln(1/alpha) / ln((1 - limit/2) / (1 - limit)).
    n = math.ceil(math.log(1 / ALPHA) / math.log((1 - limit / 2) / (1 - limit)))
    assert _lr(0, n, limit / 2, limit) >= 1 / ALPHA > _lr(0, n - 1, limit / 2, limit)
    assert decide(0, n - 1, limit).verdict == "inconclusive"
    d = decide(0, n, limit)
    assert d.verdict == "pass" and d.upper <= limit < decide(0, n - 1, limit).upper


def test_pass_boundary_with_races_flips_on_one_trial_and_on_one_race() -> None:
    limit = 0.02
    n = next(m for m in range(3, 10_000) if _lr(3, m, limit / 2, limit) >= 1 / ALPHA)
    assert decide(3, n - 1, limit).verdict == "inconclusive"
    assert decide(3, n, limit).verdict == "pass"
    assert decide(4, n, limit).verdict == "inconclusive"


def test_fail_boundary_flips_on_one_race_and_on_one_trial() -> None:
    limit, n = 0.01, 100
    x = next(k for k in range(n + 1) if _lr(k, n, 2 * limit, limit) >= 1 / ALPHA)
    assert decide(x - 1, n, limit).verdict == "inconclusive"
    d = decide(x, n, limit)
    assert d.verdict == "fail" and d.lower >= limit
    # The same races in more trials are weaker evidence: find the last size that still fails.
    last = max(m for m in range(x, 2000) if _lr(x, m, 2 * limit, limit) >= 1 / ALPHA)
    assert decide(x, last, limit).verdict == "fail"
    assert decide(x, last + 1, limit).verdict == "inconclusive"


def test_bounds_invert_the_likelihood_ratio() -> None:
    d = decide(30, 500, 0.01)
    assert 0 < d.lower < d.upper < 0.5
    # At the upper bound the test "rate >= upper" (alternative upper/2) is exactly at its boundary, ...
    assert _lr(30, 500, d.upper / 2, d.upper) == pytest.approx(1 / ALPHA, rel=1e-6)
    # ... and at the lower bound the test "rate <= lower" (alternative 2 * lower).
    assert _lr(30, 500, 2 * d.lower, d.lower) == pytest.approx(1 / ALPHA, rel=1e-6)


@pytest.mark.parametrize("limit", [0.001, 0.01, 0.05, 0.3])
def test_verdict_agrees_with_the_bounds(limit: float) -> None:
    for n in (1, 10, 50, 200, 1000, 5000):
        for races in sorted({min(k, n) for k in (0, 1, 2, n // 100, n // 20, n // 5, n)}):
            d = decide(races, n, limit)
            assert d.lower <= races / n <= d.upper
            assert (d.verdict == "pass") == (d.upper <= limit + 1e-9), d
            assert (d.verdict == "fail") == (d.lower >= limit - 1e-9), d


def test_degenerate_limits_are_decided_exactly() -> None:
    assert decide(0, 10_000, 0.0).verdict == "inconclusive"
    assert decide(1, 1, 0.0).verdict == "fail"
    assert decide(5, 5, 1.0).verdict == "pass"


@pytest.mark.parametrize("args", [(-1, 10, 0.1), (11, 10, 0.1), (1, 10, 1.5), (1, 10, -0.1)])
def test_bad_input_is_rejected(args: tuple[int, int, float]) -> None:
    with pytest.raises(ValueError):
        decide(*args)


def test_false_pass_and_false_fail_at_the_limit_stay_under_alpha_monte_carlo() -> None:
    # 4000 streams at rate == limit, looked at every 5 trials up to 800: both errors are
    # possible here and each is bounded by alpha for every look schedule (Ville).
    # Slack: 3 binomial standard errors of the estimate at alpha.
    rng = np.random.default_rng(11)
    limit, streams, batch, budget = 0.05, 4000, 5, 800
    races = rng.binomial(batch, limit, size=(streams, budget // batch)).cumsum(axis=1)
    first = np.full(streams, "inconclusive", dtype=object)
    memo: dict[tuple[int, int], str] = {}
    for j in range(races.shape[1]):
        n = (j + 1) * batch
        for i in np.flatnonzero(first == "inconclusive"):
            key = (int(races[i, j]), n)
            if key not in memo:
                memo[key] = decide(key[0], n, limit).verdict
            first[i] = memo[key]
    slack = 3 * math.sqrt(ALPHA * (1 - ALPHA) / streams)
    assert np.mean(first == "pass") <= ALPHA + slack
    assert np.mean(first == "fail") <= ALPHA + slack


# --------------------------------------------------------------------------- windows of bins


def test_window_passes_only_when_every_bin_passes() -> None:
    assert decide_window([(0, 700), (0, 800)], 0.01).verdict == "pass"
    w = decide_window([(0, 700), (0, 20)], 0.01)
    assert w.verdict == "inconclusive" and [d.verdict for d in w.bins] == ["pass", "inconclusive"]


def test_window_fails_when_any_bin_fails_at_the_bonferroni_level() -> None:
    limit, n = 0.01, 100
    # Races that fail one bin at alpha but not at alpha/3 (scipy pmf, not the module's formula).
    x = next(k for k in range(n + 1) if _lr(k, n, 2 * limit, limit) >= 1 / ALPHA)
    assert _lr(x, n, 2 * limit, limit) < 3 / ALPHA
    assert decide_window([(x, n)], limit).verdict == "fail"
    three = decide_window([(x, n), (0, 700), (0, 700)], limit)
    assert three.fail_alpha == pytest.approx(ALPHA / 3) and three.alpha == ALPHA
    assert three.verdict == "inconclusive"
    y = next(k for k in range(n + 1) if _lr(k, n, 2 * limit, limit) >= 3 / ALPHA)
    assert decide_window([(y, n), (0, 700), (0, 20)], limit).verdict == "fail"


def test_empty_window_is_inconclusive() -> None:
    assert decide_window([], 0.01).verdict == "inconclusive"


@pytest.mark.parametrize(("races", "trials"), [(0, 1), (1, 1), (0, 56), (3, 10), (30, 500), (999, 1000)])
def test_closed_form_intervals_equal_statsmodels(races: int, trials: int) -> None:
    # The module computes them itself so that a report does not import statsmodels (~0.6 s).
    low, high = proportion_confint(races, trials, alpha=ALPHA, method="wilson")
    assert wilson_interval(races, trials) == pytest.approx((0.0 if races == 0 else low, 1.0 if races == trials else high),
                                                           abs=1e-15)
    want = confint_proportions_2indep(races, trials, 7, 40, method="newcomb", compare="diff", alpha=ALPHA)
    assert newcombe_diff_interval(races, trials, 7, 40) == pytest.approx(want, abs=1e-15)


@pytest.mark.parametrize(("races", "trials", "limit"), [(0, 56, 0.1), (30, 500, 0.01), (3, 20, 0.3), (0, 3000, 0.001)])
def test_bound_search_equals_brentq(races: int, trials: int, limit: float) -> None:
    # The bisection replaced scipy's brentq (same tolerance): the bounds agree to it.
    def log_lr(alt: float, null: float) -> float:
        return races * math.log(alt / null) + (trials - races) * (math.log1p(-alt) - math.log1p(-null))

    eps, threshold = 1e-12, math.log(1 / ALPHA)
    upper = optimize.brentq(lambda q: log_lr(SAFE_RATIO * q, q) - threshold, eps, 1 - eps, xtol=1e-12)
    d = decide(races, trials, limit)
    assert d.upper == pytest.approx(upper, abs=3e-12)
    if 0 < d.lower < 1:  # else no sign change: the search is skipped
        lower = optimize.brentq(lambda q: log_lr(min(RACE_RATIO * q, (1 + q) / 2), q) - threshold, eps, 1 - eps,
                                xtol=1e-12)
        assert d.lower == pytest.approx(lower, abs=3e-12)

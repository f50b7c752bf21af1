"""The sequential gate's contract at its edges: exact verdict boundaries, the degenerate limits,
argument checks, the reason lines, the worst-bin choice, and the fixed-size design against a
brute-force search written independently here (scipy.stats.binom over every n).

Written so that a small deliberate bug in harness.analysis.sequential fails a test (see
docs/testing.md, mutation testing).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from harness.analysis.sequential import (
    SAFE_RATIO,
    Decision,
    WindowDecision,
    clopper_pearson_interval,
    decide,
    decide_window,
    fixed_sample_size,
    wilson_interval,
)


def _alpha_at(log_lr: float) -> float:
    """An alpha whose math.log(1 / alpha) equals log_lr exactly (float), found by stepping ulps."""
    a = math.exp(-log_lr)
    for _ in range(64):
        t = math.log(1 / a)
        if t == log_lr:
            return a
        a = math.nextafter(a, 0.0 if t < log_lr else 1.0)
    pytest.skip("no float alpha hits the boundary exactly")


def _log_lr(races: int, trials: int, alt: float, null: float) -> float:
    return races * math.log(alt / null) + (trials - races) * (math.log1p(-alt) - math.log1p(-null))


# --------------------------------------------------------------------------- boundaries


def test_pass_at_exactly_the_evidence_threshold() -> None:
    lr = _log_lr(0, 80, SAFE_RATIO * 0.05, 0.05)
    alpha = _alpha_at(lr)
    assert decide(0, 80, 0.05, alpha).verdict == "pass"
    assert decide(0, 79, 0.05, alpha).verdict == "inconclusive"


def test_fail_at_exactly_the_evidence_threshold() -> None:
    lr = _log_lr(3, 3, 0.1, 0.05)
    alpha = _alpha_at(lr)
    assert decide(3, 3, 0.05, 0.5, fail_alpha=alpha).verdict == "fail"


def test_degenerate_limits_are_whole_decisions() -> None:
    assert decide(3, 5, 1.0) == Decision("pass", 0.0, 1.0, 3, 5, 1.0, "every rate is <= 1 (3/5 races)")
    assert decide(1, 5, 0.0) == Decision("fail", 0.0, 1.0, 1, 5, 0.0, "a race proves the rate > 0 (1/5 races)")
    assert decide(0, 5, 0.0) == Decision("inconclusive", 0.0, 1.0, 0, 5, 0.0,
                                         "no finite run proves a rate of 0 (0/5 races)")


def test_reason_lines_name_the_bound_and_the_counts() -> None:
    d = decide(0, 200, 0.05)
    assert d.verdict == "pass"
    assert d.reason == f"anytime 95% upper bound {d.upper:.4g} <= limit 0.05 (0/200 races)"
    d = decide(5, 5, 0.05)
    assert (d.verdict, d.upper) == ("fail", 1.0)
    assert d.lower == pytest.approx(0.3786260439699077, rel=1e-9)
    assert d.reason == "anytime 95% lower bound 0.3786 > limit 0.05 (5/5 races)"
    d = decide(1, 20, 0.05)
    assert d.reason == "limit 0.05 inside anytime bounds [0, 0.3] (1/20 races)"
    assert decide(7, 7, 0.05, fail_alpha=0.01).reason.startswith("anytime 99% lower bound")
    assert decide(0, 200, 0.05, 0.1).reason.startswith("anytime 90% upper bound")
    assert decide(0, 0, 0.05) == Decision("inconclusive", 0.0, 1.0, 0, 0, 0.05,
                                          "limit 0.05 inside anytime bounds [0, 1] (0/0 races)")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alpha": 0.0}, r"^alpha must be in \(0, 1\); got 0.0$"),
    ({"fail_alpha": 1.0}, r"^fail_alpha must be in \(0, 1\); got 1.0$"),
    ({"safe_ratio": 0.0}, r"^safe_ratio must be in \(0, 1\); got 0.0$"),
    ({"safe_ratio": 1.0}, r"^safe_ratio must be in \(0, 1\); got 1.0$"),
    ({"safe_ratio": 1.5}, r"^safe_ratio must be in \(0, 1\); got 1.5$"),
    ({"race_ratio": 1.0}, r"^race_ratio must be > 1; got 1.0$"),
    ({"limit": 1.5}, r"^limit must be a probability in \[0, 1\]; got 1.5$"),
    ({"limit": -0.1}, r"^limit must be a probability in \[0, 1\]; got -0.1$"),
])
def test_decide_rejects_bad_arguments_by_name(kwargs: dict[str, float], message: str) -> None:
    args = {"races": 0, "trials": 10, "limit": 0.05} | kwargs
    with pytest.raises(ValueError, match=message):
        decide(**args)  # type: ignore[arg-type]


def test_other_functions_name_their_bad_argument() -> None:
    with pytest.raises(ValueError, match=r"^alpha must be in"):
        decide_window([(0, 1)], 0.05, alpha=1.0)
    with pytest.raises(ValueError, match=r"^alpha must be in"):
        wilson_interval(1, 2, alpha=0.0)
    with pytest.raises(ValueError, match=r"^alpha must be in"):
        clopper_pearson_interval(1, 2, alpha=1.0)
    with pytest.raises(ValueError, match=r"^alpha must be in"):
        fixed_sample_size(0.05, alpha=0.0)
    with pytest.raises(ValueError, match=r"^power must be in"):
        fixed_sample_size(0.05, power=1.0)
    for limit in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"^limit must be in \(0, 1\); got"):
            fixed_sample_size(limit)
    with pytest.raises(ValueError, match=r"^p1 must be in \[0, limit\); got 0.05"):
        fixed_sample_size(0.05, p1=0.05)
    with pytest.raises(ValueError, match=r"^no fixed design up to 5 trials for limit 0.05, p1 0.025$"):
        fixed_sample_size(0.05, max_trials=5)


# --------------------------------------------------------------------------- windows


def test_empty_window_decision_is_whole() -> None:
    assert decide_window([], 0.05, 0.1) == WindowDecision("inconclusive", (), 0.1, 0.1, "no bins in window")


def test_window_passes_alpha_and_race_ratio_to_each_bin() -> None:
    bins = [(0, 60)]
    assert decide_window(bins, 0.05, 0.05).verdict == "inconclusive"
    assert decide_window(bins, 0.05, 0.3).verdict == "pass"  # 0/60 proves <= 5% only at the looser level
    # 3/20: the lower bound depends on race_ratio (at 5/5 the (1 + q) / 2 cap hides it).
    w = decide_window([(3, 20)], 0.05, race_ratio=3.0)
    assert w.bins[0] == decide(3, 20, 0.05, 0.05, fail_alpha=0.05, race_ratio=3.0)
    assert w.bins[0].lower > decide(3, 20, 0.05, 0.05).lower
    assert decide_window([(0, 10)], 0.05, safe_ratio=0.1).bins[0] == decide(0, 10, 0.05, safe_ratio=0.1)


def test_window_reason_names_the_worst_bin() -> None:
    fail = decide_window([(10, 20), (12, 20), (0, 100)], 0.05)
    assert fail.reason == f"bin 1 fails: {fail.bins[1].reason}"
    fail_first = decide_window([(12, 20), (10, 20)], 0.05)
    assert fail_first.reason == f"bin 0 fails: {fail_first.bins[0].reason}"
    passed = decide_window([(0, 300), (0, 200), (0, 400)], 0.05)
    assert passed.verdict == "pass"
    assert passed.reason == f"all 3 bins pass; worst bin 1: {passed.bins[1].reason}"
    pending = decide_window([(0, 300), (2, 20), (1, 20)], 0.05)
    assert pending.reason == f"2/3 bins undecided; worst bin 1: {pending.bins[1].reason}"
    pending_last = decide_window([(1, 20), (0, 300), (2, 20)], 0.05)
    assert pending_last.reason == f"2/3 bins undecided; worst bin 2: {pending_last.bins[2].reason}"


# --------------------------------------------------------------------------- fixed-size helpers


@pytest.mark.parametrize("n", [1, 7, 50])
def test_wilson_edges_are_pinned_and_alpha_is_used(n: int) -> None:
    assert wilson_interval(0, n)[0] == 0.0
    assert wilson_interval(n, n)[1] == 1.0
    low, high = proportion_confint(3, 10, alpha=0.2, method="wilson")
    assert wilson_interval(3, 10, alpha=0.2) == (pytest.approx(low, abs=1e-15), pytest.approx(high, abs=1e-15))


def _brute_force_design(limit: float, alpha: float, power: float, p1: float, max_n: int) -> tuple[int, int]:
    """Every n from 1: the largest c with P(X <= c | limit) <= alpha, then the first n whose
    P(X <= c | p1) >= power."""
    n = np.arange(1, max_n + 1)
    best = (-1) * np.ones_like(n)
    for c in range(0, 200):
        ok = stats.binom.cdf(c, n, limit) <= alpha
        best = np.where(ok, c, best)
    good = (best >= 0) & (stats.binom.cdf(np.maximum(best, 0), n, p1) >= power)
    i = int(np.argmax(good))
    assert good[i]
    return int(n[i]), int(best[i])


@pytest.mark.parametrize(("limit", "p1", "max_n"), [(0.05, 0.025, 2000), (0.05, 0.001, 2000), (0.2, 0.05, 500),
                                                   (0.99, 0.01, 10), (0.003, 0.0015, 20000)])
def test_fixed_design_matches_a_brute_force_search(limit: float, p1: float, max_n: int) -> None:
    assert fixed_sample_size(limit, p1=p1) == _brute_force_design(limit, 0.05, 0.95, p1, max_n)


def test_fixed_design_defaults_and_the_search_edges() -> None:
    assert fixed_sample_size(0.05) == fixed_sample_size(0.05, 0.05, 0.95, p1=SAFE_RATIO * 0.05) == (624, 22)
    assert fixed_sample_size(0.99, p1=0.01, max_trials=1) == (1, 0)
    n, _ = fixed_sample_size(0.05)
    with pytest.raises(ValueError, match="no fixed design up to 623 trials"):
        fixed_sample_size(0.05, max_trials=n - 1)
    assert fixed_sample_size(0.05, max_trials=n) == (624, 22)


def test_counts_and_newcombe_arguments() -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep

    from harness.analysis.sequential import newcombe_diff_interval

    with pytest.raises(ValueError, match=r"^need 0 <= races <= trials; got 3/2$"):
        decide(3, 2, 0.05)
    with pytest.raises(ValueError, match=r"^alpha must be in \(0, 1\); got 0.0$"):
        newcombe_diff_interval(1, 2, 1, 2, alpha=0.0)
    with pytest.raises(ValueError, match=r"^newcombe_diff_interval: both samples need trials$"):
        newcombe_diff_interval(0, 0, 1, 2)
    low, high = confint_proportions_2indep(7, 20, 2, 25, method="newcomb", compare="diff", alpha=0.2)
    assert newcombe_diff_interval(7, 20, 2, 25, alpha=0.2) == (pytest.approx(low, abs=1e-12),
                                                              pytest.approx(high, abs=1e-12))

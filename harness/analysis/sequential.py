"""Sequential gate statistics: a three-verdict decision on "race rate <= limit" that stays valid
however often it is looked at, a worst-bin decision over a window of offset bins, and the
fixed-sample intervals and design a report compares them with.

Method (why not a mixture confidence sequence, why not a plain two-sided SPRT)
---------------------------------------------------------------------------------
Each verdict is a one-sided likelihood-ratio test with Wald's SPRT statistic and Ville's
boundary:

* PASS (proves rate <= limit): Lambda_pass = L(p_safe) / L(limit), p_safe = safe_ratio * limit.
  For every true rate p >= limit each trial multiplies Lambda_pass by a factor of expectation
  <= 1 (= 1 at p == limit), so Lambda_pass is a non-negative supermartingale under the whole
  composite "rate >= limit", and Ville's inequality gives P(Lambda_pass ever >= 1/alpha) <= alpha.
  PASS when Lambda_pass >= 1/alpha.
* FAIL (proves rate > limit): Lambda_fail = L(p_race) / L(limit), p_race = race_ratio * limit
  (capped at (1 + limit) / 2 so that it stays a probability). The mirror argument bounds
  P(FAIL ever | rate <= limit) <= fail_alpha.
* INCONCLUSIVE otherwise; the caller stops at its trial budget and reports it as such.

Properties this buys:

* Anytime valid, exactly: Ville's inequality bounds the supremum over *all* trial counts, so
  looking after every trial, every batch, or at irregular moments, and stopping at the first
  verdict, keeps both error bounds. No Wald approximation (its A ~ (1-beta)/alpha boundaries
  are only approximately valid and ignore overshoot); overshoot only makes this conservative.
* No state: the likelihood ratio of Bernoulli trials depends only on the cumulative
  (races, trials), so a look is a pure function of the counts, not of their order or of the
  look schedule.
* Efficiency: against a point alternative the SPRT minimises the expected sample size
  (Wald-Wolfowitz); with p_safe = limit/2 and p_race = 2*limit the expected trials to a verdict
  at those rates are ~log(1/alpha) / KL, well under the fixed-size design of equal power
  (benchmarks/gate_error_rates.py measures it). A beta-mixture (Robbins) confidence sequence
  is valid for every alternative at once but pays for it with a wider bound (a log n and prior
  term), which costs the savings the gate is after.
* PASS and FAIL never both hold: a race fraction closer (in KL) to p_safe than to limit is
  below limit, and then it is closer to limit than to p_race.
* The price: between p_safe and limit (and between limit and p_race) the test is slow and
  may end INCONCLUSIVE at the budget. That is the honest answer there, not a failure.

The reported bounds invert the same tests: `upper` is the smallest q whose test
"rate >= q" (alternative safe_ratio * q) rejects, `lower` the largest q whose test "rate <= q"
(alternative race_ratio * q, same cap) rejects. Both likelihood ratios are monotone in q, so the
rejected sets are intervals, PASS <=> upper <= limit and FAIL <=> lower >= limit, and
[lower, upper] is an anytime-valid confidence sequence of level 1 - alpha - fail_alpha.

Windows of offset bins (`decide_window`): the window PASSES only if every bin passes and
FAILS if any bin fails. "Every bin passes" is an intersection-union test (Berger 1982): a false
window PASS needs some bin whose rate is > limit to pass, which has probability <= alpha on its
own, so the PASS side needs no multiplicity correction. "Any bin fails" is a union: a false
window FAIL can come from any of the m bins, so each bin's FAIL test uses alpha / m (Bonferroni).
Holm would not help: the window fails as soon as one bin is rejected, and Holm's first step is
exactly Bonferroni's alpha / m.

Fixed-sample helpers (for the report): Wilson and Clopper-Pearson intervals, Newcombe's
hybrid-score interval for the difference of two independent proportions, and
`fixed_sample_size`, the exact one-sided binomial design the sequential test is compared with.
Wilson and Newcombe are closed forms (statsmodels' formulas, `proportion_confint(method="wilson")`
and `confint_proportions_2indep(method="newcomb")`, checked against it in the tests) and the
bound searches a bisection: every report needs them, and importing scipy/statsmodels for them
cost ~0.6 s of a sub-second simulated command. Clopper-Pearson and the fixed design use scipy,
imported when called.

Pure: stdlib, numpy and (on call) scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Literal, Sequence

Verdict = Literal["pass", "fail", "inconclusive"]

SAFE_RATIO = 0.5  # PASS alternative: a guard that races at half the limit is "fine"
RACE_RATIO = 2.0  # FAIL alternative: racing at twice the limit is "clearly over it"
_EPS = 1e-12  # bound searches stay strictly inside (0, 1), where every log is finite
_XTOL = 1e-12  # bound search tolerance (as scipy's brentq was called with)


@dataclass(frozen=True)
class Decision:
    """One look at cumulative counts: the verdict, the anytime-valid bounds, one line why."""

    verdict: Verdict
    lower: float  # anytime-valid lower bound on the rate (level 1 - fail_alpha)
    upper: float  # anytime-valid upper bound on the rate (level 1 - alpha)
    races: int
    trials: int
    limit: float
    reason: str


@dataclass(frozen=True)
class WindowDecision:
    """The worst-bin verdict over a window of offset bins, with each bin's own decision."""

    verdict: Verdict
    bins: tuple[Decision, ...]
    alpha: float  # per-bin PASS level (no correction needed, see module docstring)
    fail_alpha: float  # per-bin FAIL level: alpha / number of bins
    reason: str


def _check_ratios(safe_ratio: float, race_ratio: float) -> None:
    if not 0 < safe_ratio < 1:
        raise ValueError(f"safe_ratio must be in (0, 1); got {safe_ratio!r}")
    if not race_ratio > 1:
        raise ValueError(f"race_ratio must be > 1; got {race_ratio!r}")


def _check_counts(races: int, trials: int) -> None:
    if trials < 0 or races < 0 or races > trials:
        raise ValueError(f"need 0 <= races <= trials; got {races}/{trials}")


def _check_alpha(name: str, alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"{name} must be in (0, 1); got {alpha!r}")


def _race_alternative(q: float, race_ratio: float) -> float:
    # Capped halfway to 1 so that a limit >= 1/race_ratio still has a valid alternative;
    # the cap keeps the log likelihood ratio monotone in q (module docstring).
    return min(race_ratio * q, (1.0 + q) / 2.0)


def _log_lr(races: int, trials: int, alt: float, null: float) -> float:
    """log L(alt) / L(null) of `races` in `trials` Bernoulli trials (0 < alt, null < 1)."""
    return races * math.log(alt / null) + (trials - races) * (math.log1p(-alt) - math.log1p(-null))


def _upper(races: int, trials: int, alpha: float, safe_ratio: float) -> float:
    threshold = math.log(1 / alpha)

    def excess(q: float) -> float:  # increasing in q
        return _log_lr(races, trials, safe_ratio * q, q) - threshold

    if excess(1 - _EPS) < 0:
        return 1.0
    if excess(_EPS) >= 0:
        return 0.0
    return _bisect(excess, _EPS, 1 - _EPS)


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of a monotone `f` with a sign change on [lo, hi], to within _XTOL (bounded: ~40 halvings)."""
    f_lo = f(lo)
    while hi - lo > _XTOL:
        mid = (lo + hi) / 2
        f_mid = f(mid)
        if f_mid == 0:
            return mid
        if (f_mid < 0) == (f_lo < 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return (lo + hi) / 2


def _lower(races: int, trials: int, alpha: float, race_ratio: float) -> float:
    threshold = math.log(1 / alpha)

    def excess(q: float) -> float:  # decreasing in q
        return _log_lr(races, trials, _race_alternative(q, race_ratio), q) - threshold

    if excess(_EPS) < 0:
        return 0.0
    if excess(1 - _EPS) >= 0:
        return 1.0
    return _bisect(excess, _EPS, 1 - _EPS)


def decide(
    races: int,
    trials: int,
    limit: float,
    alpha: float = 0.05,
    *,
    fail_alpha: float | None = None,
    safe_ratio: float = SAFE_RATIO,
    race_ratio: float = RACE_RATIO,
) -> Decision:
    """PASS / FAIL / INCONCLUSIVE for "race rate <= limit" from cumulative counts.

    Valid at every look: P(ever PASS | rate >= limit) <= alpha and
    P(ever FAIL | rate <= limit) <= fail_alpha (default alpha), however many looks are taken,
    as long as the caller acts on the first non-inconclusive verdict (or latches it).
    limit 0 and 1 are decided exactly: one race proves a rate > 0; every rate is <= 1.
    """
    _check_counts(races, trials)
    _check_alpha("alpha", alpha)
    fail_alpha = alpha if fail_alpha is None else fail_alpha
    _check_alpha("fail_alpha", fail_alpha)
    _check_ratios(safe_ratio, race_ratio)
    if not 0 <= limit <= 1:
        raise ValueError(f"limit must be a probability in [0, 1]; got {limit!r}")
    counts = f"{races}/{trials} races"
    if limit == 1:
        return Decision("pass", 0.0, 1.0, races, trials, limit, f"every rate is <= 1 ({counts})")
    if limit == 0:
        if races:
            return Decision("fail", 0.0, 1.0, races, trials, limit, f"a race proves the rate > 0 ({counts})")
        return Decision("inconclusive", 0.0, 1.0, races, trials, limit,
                        f"no finite run proves a rate of 0 ({counts})")
    lower = _lower(races, trials, fail_alpha, race_ratio) if trials else 0.0
    upper = _upper(races, trials, alpha, safe_ratio) if trials else 1.0
    pass_lr = _log_lr(races, trials, safe_ratio * limit, limit)
    fail_lr = _log_lr(races, trials, _race_alternative(limit, race_ratio), limit)
    if pass_lr >= math.log(1 / alpha):
        verdict: Verdict = "pass"
        why = f"anytime {1 - alpha:.0%} upper bound {upper:.4g} <= limit {limit:g}"
    elif fail_lr >= math.log(1 / fail_alpha):
        verdict = "fail"
        why = f"anytime {1 - fail_alpha:.0%} lower bound {lower:.4g} > limit {limit:g}"
    else:
        verdict = "inconclusive"
        why = f"limit {limit:g} inside anytime bounds [{lower:.4g}, {upper:.4g}]"
    return Decision(verdict, lower, upper, races, trials, limit, f"{why} ({counts})")


def decide_window(
    bins: Sequence[tuple[int, int]],
    limit: float,
    alpha: float = 0.05,
    *,
    safe_ratio: float = SAFE_RATIO,
    race_ratio: float = RACE_RATIO,
) -> WindowDecision:
    """Worst-bin verdict over offset bins given as (races, trials) each.

    PASS only if every bin passes (each at alpha: intersection-union, no correction needed);
    FAIL if any bin fails (each at alpha / len(bins): Bonferroni); else INCONCLUSIVE.
    FAIL wins over a pending PASS: one bin proven over the limit decides the window.
    An empty window is INCONCLUSIVE (nothing was measured)."""
    _check_alpha("alpha", alpha)
    if not bins:
        return WindowDecision("inconclusive", (), alpha, alpha, "no bins in window")
    fail_alpha = alpha / len(bins)
    decisions = tuple(decide(r, n, limit, alpha, fail_alpha=fail_alpha, safe_ratio=safe_ratio,
                             race_ratio=race_ratio) for r, n in bins)
    verdicts = [d.verdict for d in decisions]
    if "fail" in verdicts:
        worst = max(range(len(decisions)), key=lambda i: decisions[i].lower if verdicts[i] == "fail" else -1.0)
        verdict: Verdict = "fail"
        why = f"bin {worst} fails: {decisions[worst].reason}"
    elif all(v == "pass" for v in verdicts):
        worst = max(range(len(decisions)), key=lambda i: decisions[i].upper)
        verdict = "pass"
        why = f"all {len(bins)} bins pass; worst bin {worst}: {decisions[worst].reason}"
    else:
        pending = [i for i, v in enumerate(verdicts) if v != "pass"]
        worst = max(pending, key=lambda i: decisions[i].upper)
        verdict = "inconclusive"
        why = f"{len(pending)}/{len(bins)} bins undecided; worst bin {worst}: {decisions[worst].reason}"
    return WindowDecision(verdict, decisions, alpha, fail_alpha, why)


# --------------------------------------------------------------------------- fixed-sample helpers


def wilson_interval(races: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided Wilson score interval (statsmodels' formula); (0, 1) for no trials."""
    _check_counts(races, trials)
    _check_alpha("alpha", alpha)
    if trials == 0:
        return (0.0, 1.0)
    low, high = _wilson(races, trials, alpha)
    # Pin the edges: float noise would otherwise make 0/n's lower bound 1e-17.
    return (0.0 if races == 0 else float(low), 1.0 if races == trials else float(high))


def _wilson(races: int, trials: int, alpha: float) -> tuple[float, float]:
    crit = NormalDist().inv_cdf(1 - alpha / 2)
    crit2 = crit**2
    q = races / trials
    denom = 1 + crit2 / trials
    center = (q + crit2 / (2 * trials)) / denom
    dist = crit * math.sqrt(q * (1.0 - q) / trials + crit2 / (4.0 * trials**2)) / denom
    return center - dist, center + dist


def clopper_pearson_interval(races: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson) interval from beta quantiles; (0, 1) for no trials."""
    from scipy import stats  # on call: ~0.5 s of import nothing on the run path needs

    _check_counts(races, trials)
    _check_alpha("alpha", alpha)
    low = 0.0 if races == 0 else float(stats.beta.ppf(alpha / 2, races, trials - races + 1))
    high = 1.0 if races == trials else float(stats.beta.ppf(1 - alpha / 2, races + 1, trials - races))
    return (low, high)


def newcombe_diff_interval(races_a: int, trials_a: int, races_b: int, trials_b: int,
                           alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe's hybrid-score interval for rate_a - rate_b of two independent samples
    (statsmodels' `confint_proportions_2indep` formula, method "newcomb", Newcombe 1998 method 10)."""
    _check_counts(races_a, trials_a)
    _check_counts(races_b, trials_b)
    _check_alpha("alpha", alpha)
    if trials_a == 0 or trials_b == 0:
        raise ValueError("newcombe_diff_interval: both samples need trials")
    p_a, p_b = races_a / trials_a, races_b / trials_b
    low_a, high_a = _wilson(races_a, trials_a, alpha)
    low_b, high_b = _wilson(races_b, trials_b, alpha)
    diff = p_a - p_b
    return (diff - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2),
            diff + math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2))


def fixed_sample_size(limit: float, alpha: float = 0.05, power: float = 0.95,
                      p1: float | None = None, max_trials: int = 10_000_000) -> tuple[int, int]:
    """The fixed-size design the sequential gate is compared with: (trials n, races allowed c).

    One-sided exact binomial test of "rate >= limit": PASS when races <= c in n trials, with
    P(PASS | limit) <= alpha and P(PASS | p1) >= power (p1 defaults to SAFE_RATIO * limit).
    n is the smallest such size (the exact power is saw-toothed in n; this is the first n that
    meets both). Raises ValueError when none is found up to max_trials."""
    import numpy as np
    from scipy import stats  # on call, as in clopper_pearson_interval

    _check_alpha("alpha", alpha)
    _check_alpha("power", power)
    if not 0 < limit < 1:
        raise ValueError(f"limit must be in (0, 1); got {limit!r}")
    p1 = SAFE_RATIO * limit if p1 is None else p1
    if not 0 <= p1 < limit:
        raise ValueError(f"p1 must be in [0, limit); got {p1!r}")
    start, chunk = 1, 4096
    while start <= max_trials:
        n = np.arange(start, min(start + chunk, max_trials + 1))
        # Largest c with P(X <= c | n, limit) <= alpha: ppf gives the smallest k with cdf >= alpha.
        k = stats.binom.ppf(alpha, n, limit)
        c = np.where(stats.binom.cdf(k, n, limit) <= alpha, k, k - 1)
        ok = (c >= 0) & (stats.binom.cdf(np.maximum(c, 0), n, p1) >= power)
        if ok.any():
            i = int(np.argmax(ok))
            return int(n[i]), int(c[i])
        start += chunk
        chunk *= 2
    raise ValueError(f"no fixed design up to {max_trials} trials for limit {limit:g}, p1 {p1:g}")

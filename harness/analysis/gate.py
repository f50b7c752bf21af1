"""CI gate: three verdicts (PASS / FAIL / INCONCLUSIVE) per threshold, and one for the run.

Contracts:
- Every trial is accounted by kind (`harness.core.names.outcome_kind`): rates use judged trials
  only (race + no_race). A guard with more "failed" trials (no_invoice, guard_timeout: the guard
  or integration failing its own job) than `GatePolicy.max_failed` makes the gate FAIL; a guard
  whose not-judged share (indeterminate, late) exceeds `max_not_judged_fraction` makes it
  INCONCLUSIVE. Both are reported in `GateReport.reasons`.
- A threshold holds for the worst offset bin of its window, not for the pool: each bin (a planned
  offset, or a `choose_bin_ms` bin when offsets were drawn continuously) is decided by
  `harness.analysis.sequential.decide_window` (anytime-valid, corrected for the number of bins).
  "max_upper" tests the race rate; "min_lower" tests the no-race rate against 1 - min_lower
  (the mirror), so both sides use the same test and bounds.
- A threshold with no bound never passes (FAIL: a scenario mistake); a window without a judged
  trial is INCONCLUSIVE (nothing was measured there).
- The run's verdict: FAIL if any threshold or accounting check fails, else INCONCLUSIVE if any
  is undecided, else PASS. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import pandas as pd

from harness.analysis.sequential import Verdict, WindowDecision, decide_window
from harness.analysis.stats import bin_offsets, choose_bin_ms, kinds, ordered_guards
from harness.core.names import OUTCOME_KINDS, OutcomeKind
from harness.core.thresholds import VERDICT_EXIT_CODES, GatePolicy, Threshold


@dataclass(frozen=True)
class BinVerdict:
    """One offset bin of a threshold's window: judged counts, its verdict and anytime bounds on the race rate."""

    offset_ms: float
    races: int
    trials: int
    verdict: Verdict
    lower: float
    upper: float


@dataclass(frozen=True)
class ThresholdVerdict:
    threshold: Threshold
    verdict: Verdict
    reason: str  # one line: verdict, worst bin, bound vs limit, pooled counts, window
    races: int  # pooled over the window (judged trials only)
    trials: int
    bins: tuple[BinVerdict, ...]

    def as_dict(self) -> dict[str, object]:
        t = self.threshold
        return {"threshold": t.describe(), "guard": t.guard, "max_upper": t.max_upper, "min_lower": t.min_lower,
                "verdict": self.verdict, "reason": self.reason, "races": self.races, "trials": self.trials,
                "bins": [{"offset_ms": b.offset_ms, "races": b.races, "trials": b.trials, "verdict": b.verdict,
                          "lower": b.lower, "upper": b.upper} for b in self.bins]}


Accounting = dict[str, dict[OutcomeKind, int]]


@dataclass(frozen=True)
class GateReport:
    verdict: Verdict
    thresholds: tuple[ThresholdVerdict, ...]
    accounting: Accounting  # guard -> trials per outcome kind
    reasons: tuple[str, ...]  # accounting checks that failed or made the run inconclusive
    policy: GatePolicy

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT_CODES[self.verdict]

    def lines(self) -> list[str]:
        """What `check` and `run` print: one line per threshold, then one per accounting reason."""
        return [t.reason for t in self.thresholds] + list(self.reasons)

    def undecided(self) -> list[tuple[str, float]]:
        """(guard, offset_ms) of the bins still INCONCLUSIVE inside an INCONCLUSIVE threshold's window:
        where further trials can still change the verdict."""
        out: list[tuple[str, float]] = []
        for t in self.thresholds:
            if t.verdict == "inconclusive":
                out += [(t.threshold.guard, b.offset_ms) for b in t.bins
                        if b.verdict == "inconclusive" and (t.threshold.guard, b.offset_ms) not in out]
        return out


def _window(df: pd.DataFrame, t: Threshold) -> pd.Series:
    off = df["offset_ms"]
    mask = (df["guard"] == t.guard) & (off.abs() >= t.min_abs_offset_ms)
    if t.offset_range_ms is not None:
        lo, hi = t.offset_range_ms
        mask &= (off >= lo) & (off <= hi)
    return mask


def _bins(df: pd.DataFrame, kind: pd.Series, t: Threshold, bin_ms: float | None) -> list[tuple[float, int, int]]:
    """(offset_ms, races, judged trials) per bin of the window, in offset order."""
    mask = _window(df, t) if not df.empty else pd.Series(dtype=bool)
    offsets = bin_offsets(df.loc[mask, "offset_ms"], bin_ms).to_numpy()
    k = kind[mask].to_numpy()
    race, no_race = k == "race", k == "no_race"
    out = []
    for offset, idx in sorted(pd.Series(offsets).groupby(offsets).indices.items()):  # positions, per bin
        races = int(race[idx].sum())
        out.append((float(offset), races, races + int(no_race[idx].sum())))
    return out


Side = Literal["max_upper", "min_lower"]


def _combine(verdicts: Iterable[Verdict]) -> Verdict:
    """All must pass to pass; one proven failure fails; anything else is undecided."""
    seen = list(verdicts)
    return "fail" if "fail" in seen else "pass" if all(v == "pass" for v in seen) else "inconclusive"


def _side(bins: list[tuple[float, int, int]], side: Side, limit: float, alpha: float) -> WindowDecision:
    if side == "max_upper":
        return decide_window([(r, n) for _, r, n in bins], limit, alpha)
    # "race rate >= min_lower" is "no-race rate <= 1 - min_lower": the same test on the mirror.
    return decide_window([(n - r, n) for _, r, n in bins], 1.0 - limit, alpha)


def _bin_verdicts(bins: list[tuple[float, int, int]], decisions: list[tuple[Side, WindowDecision]]) -> tuple[BinVerdict, ...]:
    out = []
    for i, (offset, races, trials) in enumerate(bins):
        verdict = _combine(w.bins[i].verdict for _, w in decisions)
        lower, upper = 0.0, 1.0
        for side, w in decisions:  # both sides bound the same race rate: intersect them
            d = w.bins[i]
            lo, hi = (d.lower, d.upper) if side == "max_upper" else (1.0 - d.upper, 1.0 - d.lower)
            lower, upper = max(lower, lo), min(upper, hi)
        out.append(BinVerdict(offset, races, trials, verdict, lower, upper))
    return tuple(out)


def _evaluate_one(df: pd.DataFrame, kind: pd.Series, t: Threshold, alpha: float,
                  bin_ms: float | None) -> ThresholdVerdict:
    bins = _bins(df, kind, t, bin_ms)
    races, trials = sum(r for _, r, _ in bins), sum(n for _, _, n in bins)
    pooled = f"{races}/{trials} races pooled over {len(bins)} bin(s), {t.window()}"
    sides: list[tuple[Side, float]] = [(s, v) for s, v in (("min_lower", t.min_lower), ("max_upper", t.max_upper))
                                       if v is not None]
    if not sides:
        # Fail rather than pass vacuously: a bound-less threshold is a scenario mistake.
        return ThresholdVerdict(t, "fail", f"FAIL {t.guard}: threshold sets neither max_upper nor min_lower "
                                           f"({pooled})", races, trials, ())
    if trials == 0:
        return ThresholdVerdict(t, "inconclusive", f"INCONCLUSIVE {t.guard}: no judged trials in window ({pooled})",
                                races, trials, tuple(BinVerdict(o, r, n, "inconclusive", 0.0, 1.0) for o, r, n in bins))
    decisions = [(side, _side(bins, side, limit, alpha)) for side, limit in sides]
    bin_verdicts = _bin_verdicts(bins, decisions)
    verdict = _combine(w.verdict for _, w in decisions)
    parts = [_side_reason(side, limit, w, bins) for (side, w), (_, limit) in zip(decisions, sides)
             if verdict != "fail" or w.verdict == "fail"]  # on FAIL name only what failed
    return ThresholdVerdict(t, verdict, f"{verdict.upper()} {t.guard}: {'; '.join(parts)} ({pooled})",
                            races, trials, bin_verdicts)


def _side_reason(side: Side, limit: float, w: WindowDecision, bins: list[tuple[float, int, int]]) -> str:
    """The worst bin for this side's verdict, with its numbers in race-rate terms."""
    level = 1 - (w.fail_alpha if w.verdict == "fail" else w.alpha)  # a FAIL bound is at the corrected level
    # Worst bin: the one proven furthest over on FAIL, else the one furthest from passing
    # (on the mirror for min_lower, where the decisions bound the no-race rate).
    key = (lambda j: w.bins[j].lower) if w.verdict == "fail" else (lambda j: w.bins[j].upper)
    i = max(range(len(bins)), key=key)
    d = w.bins[i]
    if limit in (0.0, 1.0):  # decided exactly, without bounds (sequential.decide)
        bound = _exact_reason(side, limit, w.verdict)
    elif side == "max_upper":
        bound = (f"lower bound {d.lower:.4g} > max {limit:g}" if w.verdict == "fail"
                 else f"upper bound {d.upper:.4g} {'<=' if w.verdict == 'pass' else '>'} max {limit:g}")
    else:
        bound = (f"upper bound {1 - d.lower:.4g} < min {limit:g}" if w.verdict == "fail"
                 else f"lower bound {1 - d.upper:.4g} {'>=' if w.verdict == 'pass' else '<'} min {limit:g}")
    offset, races, trials = bins[i]
    if limit in (0.0, 1.0):
        return f"worst bin {offset:g} ms {races}/{trials} races, {bound}"
    return f"worst bin {offset:g} ms {races}/{trials} races, anytime {100 * level:g}% {bound}"


def _exact_reason(side: Side, limit: float, verdict: Verdict) -> str:
    rate, word = (f"max {limit:g}", "race") if side == "max_upper" else (f"min {limit:g}", "trial without a race")
    if verdict == "pass":
        return f"every rate meets {rate}"
    if verdict == "fail":
        return f"a {word} proves the rate {'>' if side == 'max_upper' else '<'} {rate}"
    return f"no finite run proves a rate of exactly {limit:g}"


def _accounting(df: pd.DataFrame) -> Accounting:
    """Trials per guard by outcome kind (race / no_race / not_judged / failed)."""
    kind = kinds(df)
    out: Accounting = {}
    for guard in ordered_guards(df["guard"]) if not df.empty else []:
        counts = kind[df["guard"] == guard].value_counts()
        out[guard] = {k: int(counts.get(k, 0)) for k in OUTCOME_KINDS}
    return out


def _accounting_reasons(acc: Accounting, policy: GatePolicy) -> tuple[list[str], list[str]]:
    """(fail reasons, inconclusive reasons) from the per-guard accounting."""
    fails, inconclusive = [], []
    for guard, c in acc.items():
        total = sum(c.values())
        if c["failed"] > policy.max_failed:
            fails.append(f"FAIL {guard}: {c['failed']} of {total} trials failed their own job (no_invoice, hook_failed, "
                         f"extra_invoice, wrong_value, guard_timeout) > max_failed {policy.max_failed}")
        if total and c["not_judged"] / total > policy.max_not_judged_fraction:
            inconclusive.append(f"INCONCLUSIVE {guard}: {c['not_judged']} of {total} trials not judged "
                                f"(indeterminate or late, {c['not_judged'] / total:.1%}) > max_not_judged_fraction "
                                f"{policy.max_not_judged_fraction:g}")
    return fails, inconclusive


def evaluate(df: pd.DataFrame, thresholds: Iterable[Threshold], policy: GatePolicy | None = None) -> GateReport:
    """The gate's verdict over a run's trials: one ThresholdVerdict per threshold (given order),
    the per-guard accounting and the accounting reasons (module docstring)."""
    policy = policy or GatePolicy()
    kind = kinds(df)
    bin_ms = choose_bin_ms(df)
    verdicts = tuple(_evaluate_one(df, kind, t, policy.alpha, bin_ms) for t in thresholds)
    acc = _accounting(df)
    fails, inconclusive = _accounting_reasons(acc, policy)
    verdict = _combine([v.verdict for v in verdicts] + ["fail"] * len(fails) + ["inconclusive"] * len(inconclusive))
    return GateReport(verdict, verdicts, acc, tuple(fails + inconclusive), policy)


__all__ = ["Accounting", "BinVerdict", "GatePolicy", "GateReport", "ThresholdVerdict", "evaluate"]

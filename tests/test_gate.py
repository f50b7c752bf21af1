"""Tests for harness.analysis.gate: three verdicts per threshold on hand-built trial sets, each at its
boundary (one trial or race more or less flips it), worst-bin semantics, and the outcome accounting.

Boundaries are derived here from the definition of the test (docs/model.md): PASS when
log L(limit/2) / L(limit) >= log(1/alpha); FAIL when log L(2 limit) / L(limit) >= log(m/alpha)
over a window of m bins; min_lower on the mirror (no-race rate <= 1 - min_lower)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from harness.analysis.gate import GateReport, evaluate
from harness.core.names import outcome_kind
from harness.core.results import TrialResult
from harness.core.thresholds import GatePolicy, Threshold, ThresholdError


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


def frame(spec: dict[tuple[str, float], dict[str, int]]) -> pd.DataFrame:
    """spec: (guard, offset) -> {outcome: count}."""
    trials: list[TrialResult] = []
    for (guard, offset), counts in spec.items():
        for outcome, n in counts.items():
            trials += [trial(len(trials), guard, offset, outcome) for _ in range(n)]
    return pd.DataFrame([t.row() for t in trials], columns=TrialResult.columns())


def bins(guard: str, *counts: tuple[int, int], start: float = 100.0) -> dict[tuple[str, float], dict[str, int]]:
    """(races, trials) per bin at offsets start, start+100, ..."""
    return {(guard, start + 100.0 * i): {"race": r, "clean": n - r} for i, (r, n) in enumerate(counts)}


def llr(races: int, trials: int, alt: float, null: float) -> float:
    return races * math.log(alt / null) + (trials - races) * math.log((1 - alt) / (1 - null))


def one(df: pd.DataFrame, t: Threshold, policy: GatePolicy | None = None) -> GateReport:
    return evaluate(df, [t], policy or GatePolicy())


MAX = Threshold("finished-check", max_upper=0.1)


# --------------------------------------------------------------------------- max_upper boundaries


def test_pass_boundary_one_trial_or_one_race_flips_it() -> None:
    # Derived preconditions: 56 race-free trials prove <= 10%, 55 do not, nor 1 race in 60.
    assert llr(0, 56, 0.05, 0.1) >= math.log(20) > llr(0, 55, 0.05, 0.1)
    assert llr(1, 60, 0.05, 0.1) < math.log(20) <= llr(0, 60, 0.05, 0.1)
    assert one(frame(bins("finished-check", (0, 56))), MAX).verdict == "pass"
    assert one(frame(bins("finished-check", (0, 55))), MAX).verdict == "inconclusive"
    assert one(frame(bins("finished-check", (0, 60))), MAX).verdict == "pass"
    assert one(frame(bins("finished-check", (1, 60))), MAX).verdict == "inconclusive"


def test_fail_boundary_and_bonferroni_over_bins() -> None:
    # One bin: 7/20 proves > 10%, 6/20 does not. Two bins: FAIL needs log(40), so 7/20 no longer does.
    assert llr(7, 20, 0.2, 0.1) >= math.log(20) > llr(6, 20, 0.2, 0.1)
    assert llr(8, 20, 0.2, 0.1) >= math.log(40) > llr(7, 20, 0.2, 0.1)
    assert one(frame(bins("finished-check", (7, 20))), MAX).verdict == "fail"
    assert one(frame(bins("finished-check", (6, 20))), MAX).verdict == "inconclusive"
    assert one(frame(bins("finished-check", (7, 20), (0, 60))), MAX).verdict == "inconclusive"
    assert one(frame(bins("finished-check", (8, 20), (0, 60))), MAX).verdict == "fail"


def test_worst_bin_decides_not_the_pool() -> None:
    # Pooled 7/187 would pass (<= 10% shown on the pool) but the narrow bin at 200 ms fails (at alpha/4).
    df = frame(bins("finished-check", (0, 60), (7, 7), (0, 60), (0, 60)))
    assert llr(7, 187, 0.05, 0.1) >= math.log(20)
    assert llr(7, 7, 0.2, 0.1) >= math.log(4 / 0.05)
    report = one(df, MAX)
    assert report.verdict == "fail"
    [t] = report.thresholds
    assert (t.races, t.trials) == (7, 187)
    assert [b.verdict for b in t.bins] == ["pass", "fail", "pass", "pass"]
    assert t.reason.startswith("FAIL finished-check: worst bin 200 ms 7/7 races, anytime 98.75% lower bound ")
    assert "> max 0.1" in t.reason and "(7/187 races pooled over 4 bin(s), all offsets)" in t.reason
    assert report.exit_code == 1


def test_bounds_are_reported_per_bin_and_bracket_the_limit() -> None:
    [t] = one(frame(bins("finished-check", (0, 60), (1, 60))), MAX).thresholds
    assert t.verdict == "inconclusive"
    first, second = t.bins
    assert first.verdict == "pass" and first.upper <= 0.1 and first.lower == 0.0
    assert second.verdict == "inconclusive" and second.lower < 0.1 < second.upper
    assert (second.offset_ms, second.races, second.trials) == (200.0, 1, 60)


def test_zero_races_in_20_trials_against_1_percent_is_inconclusive() -> None:
    report = one(frame(bins("serialized", (0, 20))), Threshold("serialized", max_upper=0.01))
    assert report.verdict == "inconclusive" and report.exit_code == 3
    assert report.thresholds[0].reason.startswith("INCONCLUSIVE serialized: worst bin 100 ms 0/20 races")


def test_threshold_without_bound_cannot_pass() -> None:
    report = one(frame(bins("none", (0, 500))), Threshold("none"))
    assert report.verdict == "fail"
    assert "threshold sets neither max_upper nor min_lower" in report.thresholds[0].reason


def test_window_selects_bins() -> None:
    df = frame({**bins("finished-check", (5, 5), start=-20.0), **bins("finished-check", (0, 60), (0, 60), start=100.0)})
    t = Threshold("finished-check", max_upper=0.1, min_abs_offset_ms=50)
    [tv] = one(df, t).thresholds
    assert tv.verdict == "pass" and [b.offset_ms for b in tv.bins] == [100.0, 200.0]
    ranged = Threshold("finished-check", max_upper=0.1, offset_range_ms=(-50.0, 0.0))
    assert one(df, ranged).verdict == "fail"


def test_empty_window_is_inconclusive() -> None:
    df = frame(bins("none", (0, 60)))
    report = evaluate(df, [Threshold("serialized", max_upper=0.05),
                           Threshold("none", max_upper=0.5, offset_range_ms=(1000.0, 2000.0))])
    assert [t.verdict for t in report.thresholds] == ["inconclusive", "inconclusive"]
    assert report.thresholds[0].reason == ("INCONCLUSIVE serialized: no judged trials in window "
                                           "(0/0 races pooled over 0 bin(s), all offsets)")
    assert evaluate(pd.DataFrame(columns=TrialResult.columns()), [Threshold("none", max_upper=1.0)]).verdict \
        == "inconclusive"


# --------------------------------------------------------------------------- min_lower (mirror)


def test_min_lower_boundaries() -> None:
    low = Threshold("none", min_lower=0.5)
    # No-race rate <= 0.5 against 0.25: 8 races in 8 prove it, 7 in 7 or 7 in 8 do not.
    assert llr(0, 8, 0.25, 0.5) >= math.log(20) > max(llr(0, 7, 0.25, 0.5), llr(1, 8, 0.25, 0.5))
    assert one(frame(bins("none", (8, 8))), low).verdict == "pass"
    assert one(frame(bins("none", (7, 7))), low).verdict == "inconclusive"
    assert one(frame(bins("none", (7, 8))), low).verdict == "inconclusive"
    # FAIL: 0 races in 8 prove the race rate < 0.5 (no-race alternative 0.75), 0 in 7 do not.
    assert llr(8, 8, 0.75, 0.5) >= math.log(20) > llr(7, 7, 0.75, 0.5)
    assert one(frame(bins("none", (0, 8))), low).verdict == "fail"
    assert one(frame(bins("none", (0, 7))), low).verdict == "inconclusive"
    [t] = one(frame(bins("none", (8, 8), (20, 20))), low).thresholds
    assert t.reason.startswith("PASS none: worst bin 100 ms 8/8 races, anytime 95% lower bound ")
    assert all(b.lower >= 0.5 for b in t.bins)


def test_both_bounds_name_only_the_failing_one() -> None:
    report = one(frame(bins("none", (20, 20))), Threshold("none", max_upper=0.1, min_lower=0.5))
    assert report.verdict == "fail"
    reason = report.thresholds[0].reason
    assert "> max 0.1" in reason and "min 0.5" not in reason


# --------------------------------------------------------------------------- accounting


def test_outcome_kinds() -> None:
    assert outcome_kind("race") == "race"
    assert {outcome_kind(o) for o in ("clean", "invoice_refused", "change_refused")} == {"no_race"}
    assert outcome_kind("indeterminate") == "not_judged"
    assert outcome_kind("clean", late=True) == outcome_kind("race", late=True) == "not_judged"
    assert outcome_kind("no_invoice") == outcome_kind("guard_timeout") == "failed"
    assert outcome_kind("some_future_outcome") == "failed"


def test_failed_trials_fail_by_default_and_pass_only_when_allowed() -> None:
    t = Threshold("integration", max_upper=0.1)
    df = frame({("integration", 100.0): {"clean": 60, "no_invoice": 1}})
    report = one(df, t)
    assert report.thresholds[0].verdict == "pass"  # the failed trial is not counted as "no race" either
    assert (report.thresholds[0].races, report.thresholds[0].trials) == (0, 60)
    assert report.verdict == "fail"
    assert report.reasons == ("FAIL integration: 1 of 61 trials failed their own job (no_invoice, hook_failed, "
                              "extra_invoice, wrong_value, guard_timeout) > max_failed 0",)
    assert report.accounting == {"integration": {"race": 0, "no_race": 60, "not_judged": 0, "failed": 1}}
    assert one(df, t, GatePolicy(max_failed=1)).verdict == "pass"
    two = frame({("integration", 100.0): {"clean": 60, "no_invoice": 1, "guard_timeout": 1}})
    assert one(two, t, GatePolicy(max_failed=1)).verdict == "fail"


def test_only_failed_trials_never_pass() -> None:
    report = one(frame({("integration", 100.0): {"no_invoice": 42}}), Threshold("integration", max_upper=0.05))
    assert report.verdict == "fail" and report.thresholds[0].verdict == "inconclusive"


def test_not_judged_above_fraction_is_inconclusive() -> None:
    t = Threshold("serialized", max_upper=0.1)
    at = frame({("serialized", 100.0): {"clean": 95, "indeterminate": 5}})  # 5.0%: allowed
    over = frame({("serialized", 100.0): {"clean": 94, "indeterminate": 6}})  # 6.0%
    assert one(at, t).verdict == "pass"
    report = one(over, t)
    assert report.thresholds[0].verdict == "pass"
    assert report.verdict == "inconclusive"
    assert report.reasons == ("INCONCLUSIVE serialized: 6 of 100 trials not judged (indeterminate or late, 6.0%) "
                              "> max_not_judged_fraction 0.05",)
    assert one(over, t, GatePolicy(max_not_judged_fraction=0.1)).verdict == "pass"


def test_late_trials_are_not_judged() -> None:
    df = frame({("serialized", 100.0): {"clean": 60, "race": 6}})
    df["late"] = [False] * 60 + [True] * 6  # the races ran late: not judged, not counted as races
    report = one(df, Threshold("serialized", max_upper=0.1), GatePolicy(max_not_judged_fraction=0.1))
    assert report.verdict == "pass"
    assert report.accounting["serialized"] == {"race": 0, "no_race": 60, "not_judged": 6, "failed": 0}


def test_fail_beats_inconclusive() -> None:
    df = frame({("serialized", 100.0): {"clean": 10, "indeterminate": 10, "guard_timeout": 1}})
    assert one(df, Threshold("serialized", max_upper=0.1)).verdict == "fail"


def test_undecided_lists_open_bins_of_open_thresholds() -> None:
    df = frame({**bins("finished-check", (0, 60), (0, 20), (1, 30)), **bins("none", (0, 4))})
    report = evaluate(df, [MAX, Threshold("none", max_upper=0.5)])
    assert report.undecided() == [("finished-check", 200.0), ("finished-check", 300.0), ("none", 100.0)]
    assert evaluate(frame(bins("finished-check", (0, 60))), [MAX]).undecided() == []


def test_no_threshold_passes_on_clean_accounting() -> None:
    assert evaluate(frame(bins("none", (3, 10))), []).verdict == "pass"


# --------------------------------------------------------------------------- records


def test_threshold_describe_and_from_dict() -> None:
    t = Threshold.from_dict({"guard": "finished-check", "max_upper": 0.05, "min_abs_offset_ms": 50,
                             "offset_range_ms": [-100, 1000]})
    assert t == Threshold("finished-check", 0.05, None, 50.0, (-100.0, 1000.0))
    assert t.describe() == ("finished-check: race rate <= 0.05 in every offset bin of offset in [-100, 1000] ms, "
                            "|offset| >= 50 ms")
    assert Threshold("none", min_lower=0.5).describe() == "none: race rate >= 0.5 in every offset bin of all offsets"
    for bad in ({"max_upper": 0.1}, {"guard": "none", "max_upper": 2}, {"guard": "none", "offset_range_ms": [5, 1]},
                {"guard": "none", "bogus": 1}, {"guard": "none", "min_abs_offset_ms": -1}):
        with pytest.raises(ValueError):
            Threshold.from_dict(bad)


def test_gate_policy_from_dict() -> None:
    assert GatePolicy.from_dict({}) == GatePolicy(0.05, 0, 0.05, None)
    assert GatePolicy.from_dict({"alpha": 0.01, "max_failed": 3, "max_not_judged_fraction": 0.1,
                                 "max_trials": 5000}) == GatePolicy(0.01, 3, 0.1, 5000)
    for field, bad in (("alpha", 0), ("alpha", 1.0), ("max_failed", -1), ("max_failed", 1.5), ("max_failed", True),
                       ("max_not_judged_fraction", 1.5), ("max_trials", 0), ("bogus", 1)):
        with pytest.raises(ThresholdError) as err:
            GatePolicy.from_dict({field: bad})
        assert err.value.field == ("" if field == "bogus" else field)


def test_alpha_changes_the_boundary() -> None:
    # log(1/0.01) needs 86 race-free trials at 10%; 60 pass at 0.05 but not at 0.01.
    assert llr(0, 86, 0.05, 0.1) >= math.log(100) > llr(0, 85, 0.05, 0.1)
    df = frame(bins("finished-check", (0, 60)))
    assert one(df, MAX, GatePolicy(alpha=0.01)).verdict == "inconclusive"
    assert one(frame(bins("finished-check", (0, 86))), MAX, GatePolicy(alpha=0.01)).verdict == "pass"


# --------------------------------------------------------------------------- limits decided without bounds


@pytest.mark.parametrize("threshold, counts, verdict, words", [
    (Threshold("x", max_upper=0.0), (0, 10), "inconclusive", "0/10 races, no finite run proves a rate of exactly 0"),
    (Threshold("x", max_upper=0.0), (1, 10), "fail", "1/10 races, a race proves the rate > max 0"),
    (Threshold("x", max_upper=1.0), (3, 10), "pass", "3/10 races, every rate meets max 1"),
    (Threshold("x", min_lower=0.0), (3, 10), "pass", "3/10 races, every rate meets min 0"),
    (Threshold("x", min_lower=1.0), (10, 10), "inconclusive", "10/10 races, no finite run proves a rate of exactly 1"),
    (Threshold("x", min_lower=1.0), (9, 10), "fail",
     "9/10 races, a trial without a race proves the rate < min 1"),
])
def test_limits_of_zero_and_one_are_decided_exactly_with_their_reason(
        threshold: Threshold, counts: tuple[int, int], verdict: str, words: str) -> None:
    [t] = one(frame(bins("x", counts)), threshold).thresholds
    assert t.verdict == verdict
    assert t.reason == (f"{verdict.upper()} x: worst bin 100 ms {words} "
                        f"({counts[0]}/{counts[1]} races pooled over 1 bin(s), all offsets)")


def test_threshold_detail_for_summary_json() -> None:
    [t] = one(frame(bins("x", (0, 60), (1, 60))), Threshold("x", max_upper=0.1)).thresholds
    first, second = t.bins
    assert t.as_dict() == {
        "threshold": "x: race rate <= 0.1 in every offset bin of all offsets", "guard": "x",
        "max_upper": 0.1, "min_lower": None, "verdict": "inconclusive", "reason": t.reason,
        "races": 1, "trials": 120,
        "bins": [{"offset_ms": 100.0, "races": 0, "trials": 60, "verdict": "pass", "lower": 0.0,
                  "upper": first.upper},
                 {"offset_ms": 200.0, "races": 1, "trials": 60, "verdict": "inconclusive", "lower": 0.0,
                  "upper": second.upper}]}
    assert first.upper < 0.1 < second.upper
    assert t.reason.startswith("INCONCLUSIVE x: worst bin 200 ms 1/60 races, anytime 95% upper bound ")


# --------------------------------------------------------------------------- reason lines (what `check` prints)


@pytest.mark.parametrize("threshold, counts, verdict, worst, template", [
    (MAX, [(0, 60)], "pass", 0, "anytime 95% upper bound {upper} <= max 0.1"),
    (MAX, [(1, 60)], "inconclusive", 0, "anytime 95% upper bound {upper} > max 0.1"),
    # FAIL names the bin proven furthest over (200 ms), not the 1/2 bin whose upper bound is higher;
    # a FAIL bound is at the Bonferroni-corrected level (2 bins: 97.5%).
    (MAX, [(1, 2), (15, 30)], "fail", 1, "anytime 97.5% lower bound {lower} > max 0.1"),
    (Threshold("x", min_lower=0.5), [(8, 8)], "pass", 0, "anytime 95% lower bound {lower} >= min 0.5"),
    (Threshold("x", min_lower=0.5), [(15, 20)], "inconclusive", 0, "anytime 95% lower bound {lower} < min 0.5"),
    (Threshold("x", min_lower=0.5), [(1, 2), (0, 30)], "fail", 1, "anytime 97.5% upper bound {upper} < min 0.5"),
])
def test_reason_line_names_the_worst_bin_and_its_bound(threshold: Threshold, counts: list[tuple[int, int]],
                                                       verdict: str, worst: int, template: str) -> None:
    t = Threshold("x", threshold.max_upper, threshold.min_lower)
    [tv] = one(frame(bins("x", *counts)), t).thresholds
    assert tv.verdict == verdict
    b = tv.bins[worst]
    assert b.verdict == verdict  # the worst bin decides
    races, trials = sum(r for r, _ in counts), sum(n for _, n in counts)
    bound = template.format(lower=f"{b.lower:.4g}", upper=f"{b.upper:.4g}")
    assert tv.reason == (f"{verdict.upper()} x: worst bin {b.offset_ms:g} ms {b.races}/{b.trials} races, {bound} "
                         f"({races}/{trials} races pooled over {len(counts)} bin(s), all offsets)")


def test_min_lower_bin_bounds_are_race_rate_bounds_around_the_observed_rate() -> None:
    # 15/20 races: the race rate's anytime bounds straddle 0.75 strictly inside (0, 1) (the
    # decision bounds the no-race rate; the bins report it back in race-rate terms).
    [tv] = one(frame(bins("x", (15, 20))), Threshold("x", min_lower=0.5)).thresholds
    [b] = tv.bins
    assert 0.0 < b.lower < 0.5
    assert 0.75 < b.upper < 1.0


def test_alpha_changes_the_min_lower_boundary() -> None:
    # 8 races in 8 prove the race rate >= 0.5 at alpha 0.05 (LLR 3.24 >= log 20) but not at 0.01 (log 100).
    assert math.log(20) <= llr(0, 8, 0.25, 0.5) < math.log(100)
    low = Threshold("none", min_lower=0.5)
    assert one(frame(bins("none", (8, 8))), low, GatePolicy(alpha=0.01)).verdict == "inconclusive"


# --------------------------------------------------------------------------- windows and bins


def _bin_offsets(spec: dict[tuple[str, float], dict[str, int]], t: Threshold) -> list[float]:
    return [b.offset_ms for b in one(frame(spec), t).thresholds[0].bins]


def test_window_edges_are_inclusive_and_both_conditions_apply() -> None:
    cells = {("x", o): {"clean": 1} for o in (-60.0, -50.0, -49.0, 45.0, 49.0, 50.0, 200.0, 201.0)}
    cells[("other", 100.0)] = {"race": 1}  # another guard's trials are never in the window
    assert _bin_offsets(cells, Threshold("x", max_upper=0.5, min_abs_offset_ms=50)) == [-60.0, -50.0, 50.0, 200.0, 201.0]
    assert _bin_offsets(cells, Threshold("x", max_upper=0.5, offset_range_ms=(-50.0, 200.0))) == \
        [-50.0, -49.0, 45.0, 49.0, 50.0, 200.0]
    assert _bin_offsets(cells, Threshold("x", max_upper=0.5, min_abs_offset_ms=50, offset_range_ms=(45.0, 200.0))) == \
        [50.0, 200.0]


def test_bins_are_in_offset_order_whatever_the_trial_order() -> None:
    spec = {("x", 300.0): {"clean": 5}, ("x", 100.0): {"race": 1, "clean": 4}, ("x", 200.0): {"clean": 5}}
    [tv] = one(frame(spec), Threshold("x", max_upper=0.1)).thresholds
    assert [(b.offset_ms, b.races) for b in tv.bins] == [(100.0, 1), (200.0, 0), (300.0, 0)]


def test_continuously_drawn_offsets_are_decided_per_bin_not_per_trial() -> None:
    # 400 distinct offsets with one trial each: bins of 10 ms (10 trials), so each bin can be decided.
    spec = {("x", o + 0.5): {"clean": 1} for o in range(400)}
    [tv] = one(frame(spec), Threshold("x", max_upper=0.1)).thresholds
    assert len(tv.bins) == 40
    assert [(b.offset_ms, b.trials) for b in tv.bins[:2]] == [(5.0, 10), (15.0, 10)]
    assert all(b.trials == 10 for b in tv.bins)


def test_threshold_without_bound_reports_its_counts() -> None:
    t = Threshold("none")
    [tv] = one(frame(bins("none", (3, 10))), t).thresholds
    assert (tv.threshold, tv.verdict, tv.races, tv.trials, tv.bins) == (t, "fail", 3, 10, ())
    assert tv.reason == ("FAIL none: threshold sets neither max_upper nor min_lower "
                         "(3/10 races pooled over 1 bin(s), all offsets)")


def test_a_window_with_only_unjudged_trials_is_inconclusive_with_its_open_bin() -> None:
    t = Threshold("x", max_upper=0.1)
    report = one(frame({("x", 100.0): {"indeterminate": 2, "no_invoice": 1}}), t)
    [tv] = report.thresholds
    assert (tv.threshold, tv.verdict, tv.races, tv.trials) == (t, "inconclusive", 0, 0)
    assert [(b.offset_ms, b.races, b.trials, b.verdict, b.lower, b.upper) for b in tv.bins] == \
        [(100.0, 0, 0, "inconclusive", 0.0, 1.0)]
    assert report.undecided() == [("x", 100.0)]  # further rounds go there


def test_both_sides_undecided_name_both_bounds() -> None:
    [tv] = one(frame(bins("x", (10, 40))), Threshold("x", max_upper=0.5, min_lower=0.1)).thresholds
    assert tv.verdict == "inconclusive"
    assert tv.reason == ("INCONCLUSIVE x: worst bin 100 ms 10/40 races, anytime 95% lower bound 0.04857 < min 0.1; "
                         "worst bin 100 ms 10/40 races, anytime 95% upper bound 0.4396 <= max 0.5 "
                         "(10/40 races pooled over 1 bin(s), all offsets)")

"""Calibration: does the measured race-rate curve match the analytic race model? (pure; no I/O)

Inputs are trials (a run's `trials.csv` as loaded by `harness.analysis.stats.load_trials`) or rate
tables derived from them; the output is a JSON-safe coverage dict. `harness.calibrate` runs
the scenario live (and simulated), plots and writes the files; this module only computes.

Two models are compared with each offset bin's 95% Wilson interval:

* `model`: the distribution-level model (docs/model.md), P(race | offset) with the Change delay
  D drawn from the configured distribution (`harness.analysis.stats.model_race_probability`).
  The plan draws each trial's D independently from that distribution, so a bin's race
  count is binomial with that probability and its Wilson interval covers it ~95% of the
  time whatever the number of trials.
* `conditional`: the same model given each trial's pinned delay (the `change_delay_ms`
  column), averaged over the bin's trials: for the unguarded curve, the fraction of the
  bin's trials whose D exceeds the offset. It removes the delay-sampling noise, so it
  says whether the harness measured what those very trials should have shown (timing,
  oracle); with few trials per offset it is the sharper check.

Both are evaluated per trial at its actual offset (`harness.analysis.stats.actual_offsets`: invoice
acted − Change acted, from the audit), then averaged over the bin: at the model's jumps (offset
0 and -settle, both on the grid) the sign of a few-microsecond error decides the outcome.

A bin is covered when `ci_low <= model <= ci_high` (1e-9 tolerance: the model sits exactly on
0 or 1 where the interval is pinned).

Coverage alone cannot pass a run whose bins are too small to see anything: 2 trials give an
interval that covers almost any model. So each gated bin also gets its *power*: the probability
(scipy.stats.binom, at the bin's n) that its interval excludes the model when the true rate is
`DETECT_DEVIATION` away from the model rate (the worse of the two sides that are probabilities).
`verdict` is "fail" when coverage fails (an interval excluding the model is evidence at any n),
"inconclusive" when coverage holds but fewer than `min_coverage` of the gated bins reach
`DETECT_POWER`, else "pass". `passed` keeps its meaning: the coverage threshold is met. Live and simulated runs of the same scenario and seed
play the same plan (same trials, same pinned delays), so they are also compared bin by bin
and trial by trial.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from harness.analysis.model import model_race_probability
from harness.analysis.rounds import cell_counts

from harness.analysis.stats import actual_offsets, choose_bin_ms, json_safe, ordered_guards, rate_table, wilson_interval
from mock_orders_api.delays import DelayDistribution, Fixed

MIN_COVERAGE = 0.90  # the unguarded curve's bins whose interval covers the model, below which calibration fails
GATED_GUARD = "none"
_TOL = 1e-9
MODELS = ("model", "conditional")
DETECT_DEVIATION = 0.2  # the deviation from the model a calibration bin must be able to notice
DETECT_POWER = 0.8  # ... with this probability


# --------------------------------------------------------------------------- rate tables


def conditional_probability(offset_ms: float, delay_ms: float, settle_ms: float, policy: str, guard: str) -> float:
    """The race probability of one trial given its pinned Change delay (0 or 1 for the known guards)."""
    if delay_ms is None or (isinstance(delay_ms, float) and math.isnan(delay_ms)):
        return math.nan
    return model_race_probability(offset_ms, Fixed(float(delay_ms)), settle_ms, policy, guard)


def rate_table_with_models(df: pd.DataFrame, delay: DelayDistribution, settle_ms: float, policy: str,
                           bin_ms: float | None = None) -> pd.DataFrame:
    """Race rate per guard x offset bin (`harness.analysis.stats.rate_table` columns) plus `model`
    (distribution-level) and `conditional` (given each trial's `change_delay_ms`), each the
    mean over the bin's determinate trials at their actual offsets.

    `bin_ms`: None keeps the planned offsets (a grid plan); else bins [k*w, (k+1)*w) at their centres.
    """
    if df.empty:
        return rate_table(df, bin_ms, per_trial={m: [] for m in MODELS})
    actual = actual_offsets(df).to_numpy()
    guards = df["guard"].astype(str).to_numpy()
    delays = df["change_delay_ms"].astype("float64").to_numpy() if "change_delay_ms" in df else np.full(len(df), np.nan)
    model = [model_race_probability(float(o), delay, settle_ms, policy, g) for o, g in zip(actual, guards)]
    # NaN when the trials carry no delay (an audit without it): not evaluated
    cond = [conditional_probability(float(o), float(d), settle_ms, policy, g) for o, d, g in zip(actual, delays, guards)]
    return rate_table(df, bin_ms, per_trial={"model": model, "conditional": cond})


# --------------------------------------------------------------------------- coverage


def coverage_of(rates: pd.DataFrame, model_col: str) -> dict[str, Any]:
    """How many bins (with determinate trials and a model value) have a Wilson interval covering
    `model_col`. Returns bins, covered, fraction (None without bins) and the uncovered bins."""
    if rates.empty or model_col not in rates:
        return {"bins": 0, "covered": 0, "fraction": None, "uncovered": []}
    t = rates[(rates["trials"] > 0) & rates[model_col].notna()]
    ok = (t["ci_low"] - _TOL <= t[model_col]) & (t[model_col] <= t["ci_high"] + _TOL)
    uncovered = [{"offset_ms": float(r.offset_ms), "rate": float(r.rate), "ci_low": float(r.ci_low),
                  "ci_high": float(r.ci_high), "model": float(getattr(r, model_col)), "trials": int(r.trials)}
                 for r in t[~ok].itertuples()]
    n = len(t)
    return {"bins": n, "covered": int(ok.sum()), "fraction": float(ok.sum()) / n if n else None,
            "uncovered": uncovered}


def detection_power(n: int, model: float, deviation: float = DETECT_DEVIATION) -> float:
    """P(the bin's 95% Wilson interval excludes `model`) when the true rate is `model` +- `deviation`,
    with `n` trials: the smaller over the sides that are probabilities (0 with no trial)."""
    from scipy import stats as sps  # on call: a report that shows a calibration imports it, no other

    if n <= 0:
        return 0.0
    ks = np.arange(n + 1)
    excluded = np.array([not (lo - _TOL <= model <= hi + _TOL) for lo, hi in (wilson_interval(int(k), n) for k in ks)])
    powers = [float(sps.binom.pmf(ks[excluded], n, q).sum()) for q in (model - deviation, model + deviation)
              if 0.0 <= q <= 1.0]
    return min(powers) if powers else 0.0


def power_of(rates: pd.DataFrame, model_col: str) -> dict[str, Any]:
    """How many judged bins (as in `coverage_of`) reach DETECT_POWER; the others are listed."""
    t = rates[(rates["trials"] > 0) & rates[model_col].notna()] if model_col in rates else rates.iloc[:0]
    weak = [{"offset_ms": float(r.offset_ms), "trials": int(r.trials), "model": float(getattr(r, model_col)),
             "power": power} for r in t.itertuples()
            if (power := detection_power(int(r.trials), float(getattr(r, model_col)))) < DETECT_POWER]
    return {"deviation": DETECT_DEVIATION, "power": DETECT_POWER, "bins": len(t), "powered": len(t) - len(weak),
            "underpowered": weak}


def power_decide(delay: DelayDistribution, settle_ms: float, policy: str,
                 gated_guard: str = GATED_GUARD) -> Callable[[pd.DataFrame], tuple[bool, list[tuple[str, float]]]]:
    """The round loop's decision callback for calibrate (`harness.analysis.rounds.Decide`): the gated
    guard's planned offsets whose bins cannot yet detect DETECT_DEVIATION are undecided; stop when none is."""
    def _decide(df: pd.DataFrame) -> tuple[bool, list[tuple[str, float]]]:
        weak = [(g, o) for (g, o), (_, n) in sorted(cell_counts(df).items()) if g == gated_guard
                and detection_power(n, model_race_probability(o, delay, settle_ms, policy, g)) < DETECT_POWER]
        return not weak, weak

    return _decide


def compare_bins(live: pd.DataFrame, simulated: pd.DataFrame) -> dict[str, Any]:
    """Live vs simulated, bin by bin (one guard's rows): rate difference and whether the two
    Wilson intervals overlap."""
    a = live[live["trials"] > 0].set_index("offset_ms")
    b = simulated[simulated["trials"] > 0].set_index("offset_ms")
    common = sorted(set(a.index) & set(b.index))
    per_bin = []
    for off in common:
        ra, rb = a.loc[off], b.loc[off]
        per_bin.append({"offset_ms": float(off), "live": float(ra["rate"]), "simulated": float(rb["rate"]),
                        "diff": float(ra["rate"] - rb["rate"]),
                        "overlap": bool(ra["ci_low"] <= rb["ci_high"] + _TOL and rb["ci_low"] <= ra["ci_high"] + _TOL)})
    diffs = np.array([abs(p["diff"]) for p in per_bin])
    return {"bins": len(per_bin),
            "mean_abs_diff": float(diffs.mean()) if diffs.size else None,
            "max_abs_diff": float(diffs.max()) if diffs.size else None,
            "intervals_overlap": sum(p["overlap"] for p in per_bin),
            "per_bin": per_bin}


def compare_trials(live: pd.DataFrame, simulated: pd.DataFrame) -> dict[str, Any]:
    """Same plan, same trial ids: how many trials got the same outcome live and simulated (per guard)."""
    if live.empty or simulated.empty:
        return {}
    m = live[["trial_id", "guard", "outcome"]].merge(simulated[["trial_id", "outcome"]], on="trial_id",
                                                      suffixes=("_live", "_sim"))
    out: dict[str, Any] = {}
    for guard in ordered_guards(m["guard"]):
        g = m[m["guard"] == guard]
        same = int((g["outcome_live"] == g["outcome_sim"]).sum())
        out[guard] = {"trials": len(g), "same_outcome": same, "fraction": same / len(g) if len(g) else None}
    return out


def coverage(live: pd.DataFrame, simulated: pd.DataFrame | None = None, *,
             min_coverage: float = MIN_COVERAGE, gated_guard: str = GATED_GUARD,
             gate_on: str = "model") -> dict[str, Any]:
    """The calibration verdict from rate tables (`rate_table_with_models`): per guard, the
    coverage of both models by the live (and simulated) bins, and live vs simulated per bin.

    `passed` is False when the live `gated_guard` curve covers `gate_on` ("model" or
    "conditional") in fewer than `min_coverage` of its bins, or has no bin to judge.
    """
    if gate_on not in MODELS:
        raise ValueError(f"gate_on: expected one of {MODELS}; got {gate_on!r}")
    guards = ordered_guards(list(live["guard"]) + (list(simulated["guard"]) if simulated is not None else []))
    per: dict[str, Any] = {}
    for guard in guards:
        lv = live[live["guard"] == guard]
        entry: dict[str, Any] = {"live": {m: coverage_of(lv, m) for m in MODELS}}
        if simulated is not None:
            sv = simulated[simulated["guard"] == guard]
            entry["simulated"] = {m: coverage_of(sv, m) for m in MODELS}
            entry["live_vs_simulated"] = compare_bins(lv, sv)
        per[guard] = entry
    gated = per.get(gated_guard, {}).get("live", {}).get(gate_on, {"fraction": None})
    frac = gated.get("fraction")
    passed = frac is not None and frac >= min_coverage
    power = power_of(live[live["guard"] == gated_guard], gate_on)
    powered = power["powered"] >= min_coverage * power["bins"] and power["bins"] > 0
    return json_safe({
        "min_coverage": min_coverage,
        "gated_guard": gated_guard,
        "gated_model": gate_on,
        "gated_fraction": frac,
        "passed": passed,
        "verdict": "fail" if not passed else "pass" if powered else "inconclusive",
        "gated_power": power,
        "simulated": simulated is not None,
        "guards": per,
    })


COVERAGE_HEADERS = ("guard", "live: model", "live: conditional", "simulated: model", "simulated: conditional",
                    "|live − simulated| mean / max", "intervals overlap", "same outcome per trial")


def coverage_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """The coverage dict as table rows (`COVERAGE_HEADERS`), for calibration.html and the run report."""
    rows = []
    for guard, g in result["guards"].items():
        sim = g.get("simulated") or {}
        lvs = g.get("live_vs_simulated") or {}
        agree = (result.get("trial_agreement") or {}).get(guard) or {}
        rows.append([
            guard, _cov(g["live"]["model"]), _cov(g["live"]["conditional"]), _cov(sim.get("model")),
            _cov(sim.get("conditional")),
            "–" if lvs.get("mean_abs_diff") is None else f"{lvs['mean_abs_diff']:.3f} / {lvs['max_abs_diff']:.3f}",
            "–" if not lvs.get("bins") else f"{lvs['intervals_overlap']}/{lvs['bins']}",
            "–" if not agree else f"{agree['same_outcome']}/{agree['trials']}",
        ])
    return rows


def verdict_sentence(result: Mapping[str, Any]) -> str:
    """One line: passed/FAILED/INCONCLUSIVE, which curve against which model, coverage vs the
    threshold, and (inconclusive) how many bins could have noticed a deviation."""
    frac = result.get("gated_fraction")
    verdict = result.get("verdict", "pass" if result["passed"] else "fail")
    line = (f"{ {'pass': 'passed', 'fail': 'FAILED'}.get(verdict, 'INCONCLUSIVE')}: the live {result['gated_guard']} "
            f"curve's 95% intervals cover the {result['gated_model']} in {_pct(frac)} of its bins "
            f"(needed {_pct(result['min_coverage'])})")
    power = result.get("gated_power")
    if verdict == "inconclusive" and power:
        line += (f", but only {power['powered']} of {power['bins']} bins have enough trials to detect a deviation "
                 f"of {power['deviation']:g} from the model with power {power['power']:.0%}")
    return line


def _pct(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.0f}%"


def _cov(c: Mapping[str, Any] | None) -> str:
    return "–" if not c or not c.get("bins") else f"{c['covered']}/{c['bins']} ({_pct(c['fraction'])})"


def calibrate_trials(live_df: pd.DataFrame, sim_df: pd.DataFrame | None, run_meta: Mapping[str, Any], *,
                     min_coverage: float = MIN_COVERAGE, gate_on: str = "model") -> tuple[dict[str, Any],
                                                                                         pd.DataFrame,
                                                                                         pd.DataFrame | None]:
    """Rate tables of both runs (binned alike, by the live run's offsets) and the coverage dict.

    `run_meta` is the live run's run.json (its `mock` section gives the delay, settle and policy).
    """
    from mock_orders_api.delays import parse_delay

    mock = run_meta.get("mock") or {}
    delay = parse_delay(mock.get("delay"), "run.json mock.delay")
    settle = float(mock.get("settle_ms") or 0.0)
    policy = str(mock.get("policy", ""))
    bin_ms = choose_bin_ms(live_df)
    live = rate_table_with_models(live_df, delay, settle, policy, bin_ms)
    sim = rate_table_with_models(sim_df, delay, settle, policy, bin_ms) if sim_df is not None else None
    result = coverage(live, sim, min_coverage=min_coverage, gate_on=gate_on)
    result["rate_bin_ms"] = bin_ms
    result["trial_agreement"] = compare_trials(live_df, sim_df) if sim_df is not None else {}
    return json_safe(result), live, sim

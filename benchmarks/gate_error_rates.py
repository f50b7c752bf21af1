"""Error rates and trial counts of the sequential gate (a benchmark script, not a test).

Pure statistics, seconds: synthetic Bernoulli streams at true race rates 1/4, 1/2, 1, 2 and
4 x the limit, `--streams` per rate, each decided by `harness.analysis.sequential.decide` on its
cumulative counts after every batch of `--batch` trials until a verdict or the `--budget`
(then INCONCLUSIVE). Reports:

* false_pass_rate: the largest share of PASS among true rates >= the limit (target <= alpha);
* false_fail_rate: the largest share of FAIL among true rates <= limit / 2;
* inconclusive_rate and mean_trials per true rate;
* the fixed-size design of equal power: the exact one-sided binomial test
  (`harness.analysis.sequential.fixed_sample_size`) with the same alpha and the power the sequential
  gate *measured* at limit / 2 (its PASS share there), and the saving in trials per true rate.
  Targets (issue): >= 30% fewer trials when the guard is fine (rate <= limit / 2), >= 55% fewer
  when it races (rate >= 2 x limit).

Prints one JSON line, then a readable table.

    python benchmarks/gate_error_rates.py [--limit 0.01] [--batch 50] [--budget 60/limit] [--streams 4000]
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from _common import CpuMeter, emit, machine

import numpy as np  # noqa: E402

from harness.analysis.sequential import RACE_RATIO, SAFE_RATIO, decide, fixed_sample_size  # noqa: E402

MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)
TARGET_SAVING_FINE = 0.30  # rate <= limit / 2
TARGET_SAVING_RACING = 0.55  # rate >= 2 x limit


def _simulate(rate: float, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    """Verdict counts and mean trials of `args.streams` streams at one true rate."""
    looks = np.arange(args.batch, args.budget + args.batch, args.batch).clip(max=args.budget)
    sizes = np.diff(looks, prepend=0)
    races = rng.binomial(sizes, rate, size=(args.streams, sizes.size)).cumsum(axis=1)
    verdict = np.full(args.streams, "inconclusive", dtype=object)
    used = np.full(args.streams, args.budget)
    active = np.ones(args.streams, dtype=bool)
    memo: dict[tuple[int, int], str] = {}  # a look is a pure function of the counts
    for j, n in enumerate(looks):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        for i in idx:
            key = (int(races[i, j]), int(n))
            if key not in memo:
                memo[key] = decide(key[0], key[1], args.limit, args.alpha,
                                   safe_ratio=args.safe_ratio, race_ratio=args.race_ratio).verdict
            if memo[key] != "inconclusive":
                verdict[i], used[i], active[i] = memo[key], n, False
    share = {v: float(np.mean(verdict == v)) for v in ("pass", "fail", "inconclusive")}
    return {"rate": rate, **share, "mean_trials": float(used.mean()), "decisions": args.streams}


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    with CpuMeter() as cpu:
        rows = {f"{m:g}x": _simulate(m * args.limit, args, rng) for m in MULTIPLES}
    power = rows["0.5x"]["pass"]
    fixed_n, fixed_c = fixed_sample_size(args.limit, args.alpha, power, SAFE_RATIO * args.limit)
    for key, row in rows.items():
        row["saving_vs_fixed"] = 1.0 - row["mean_trials"] / fixed_n
    fine = [k for k in rows if float(k[:-1]) <= 0.5]
    racing = [k for k in rows if float(k[:-1]) >= 2.0]
    false_pass = max(rows[k]["pass"] for k in rows if float(k[:-1]) >= 1.0)
    # Binomial standard error of the worst share, so a reader can tell a miss from MC noise.
    se = math.sqrt(max(false_pass, 1e-9) * (1 - false_pass) / args.streams)
    saving_fine = min(rows[k]["saving_vs_fixed"] for k in fine)
    saving_racing = min(rows[k]["saving_vs_fixed"] for k in racing)
    return {
        "benchmark": "gate_error_rates",
        "method": "one-sided SPRTs with Ville's boundary (harness.analysis.sequential.decide)",
        "limit": args.limit, "alpha": args.alpha, "batch": args.batch, "budget": args.budget,
        "safe_ratio": args.safe_ratio, "race_ratio": args.race_ratio, "seed": args.seed,
        "decisions": sum(r["decisions"] for r in rows.values()),
        "false_pass_rate": false_pass, "false_pass_rate_se": se,
        "false_fail_rate": max(rows[k]["fail"] for k in fine),
        "inconclusive_rate": {k: r["inconclusive"] for k, r in rows.items()},
        "mean_trials": {k: r["mean_trials"] for k, r in rows.items()},
        "rates": rows,
        "fixed_design": {"trials": fixed_n, "max_races": fixed_c, "alpha": args.alpha, "power": power,
                         "power_at": SAFE_RATIO * args.limit},
        "saving_fine": saving_fine, "saving_racing": saving_racing,
        "targets": {"false_pass_rate<=alpha": false_pass <= args.alpha,
                    f"saving_fine>={TARGET_SAVING_FINE:.0%}": saving_fine >= TARGET_SAVING_FINE,
                    f"saving_racing>={TARGET_SAVING_RACING:.0%}": saving_racing >= TARGET_SAVING_RACING},
        "wall_s": cpu.result["wall_s"], "cpu": cpu.result, "machine": machine(),
    }


def table(r: dict[str, Any]) -> str:
    fd = r["fixed_design"]
    lines = [
        f"sequential gate, limit {r['limit']:g}, alpha {r['alpha']:g}, look every {r['batch']} trials, "
        f"budget {r['budget']}, {r['decisions']} decisions in {r['wall_s']:.1f} s",
        f"fixed design of equal power: {fd['trials']} trials, PASS if <= {fd['max_races']} races "
        f"(power {fd['power']:.3f} at {fd['power_at']:g})",
        f"{'true rate':>10} {'pass':>7} {'fail':>7} {'incon.':>7} {'mean n':>8} {'saving':>7}",
    ]
    for key, row in r["rates"].items():
        lines.append(f"{key + ' limit':>10} {row['pass']:>7.3f} {row['fail']:>7.3f} {row['inconclusive']:>7.3f} "
                     f"{row['mean_trials']:>8.0f} {row['saving_vs_fixed']:>7.1%}")
    lines.append(f"false pass {r['false_pass_rate']:.4f} (se {r['false_pass_rate_se']:.4f}, target <= "
                 f"{r['alpha']:g}); false fail {r['false_fail_rate']:.4f}; saving fine {r['saving_fine']:.1%} "
                 f"(target {TARGET_SAVING_FINE:.0%}), racing {r['saving_racing']:.1%} (target "
                 f"{TARGET_SAVING_RACING:.0%})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=float, default=0.01, help="race-rate threshold (default 0.01)")
    p.add_argument("--alpha", type=float, default=0.05, help="false-pass level (default 0.05)")
    p.add_argument("--batch", type=int, default=50, help="trials between looks (default 50)")
    p.add_argument("--budget", type=int, default=None,
                   help="trials before INCONCLUSIVE (default 60 / limit: ~1.5x the fixed design, so the "
                        "PASS share at limit / 2 is ~0.98)")
    p.add_argument("--streams", type=int, default=4000, help="streams per true rate (default 4000)")
    p.add_argument("--safe-ratio", type=float, default=SAFE_RATIO, help="PASS alternative / limit")
    p.add_argument("--race-ratio", type=float, default=RACE_RATIO, help="FAIL alternative / limit")
    p.add_argument("--seed", type=int, default=20261126)
    args = p.parse_args(argv)
    if args.budget is None and 0 < args.limit < 1:
        args.budget = math.ceil(60 / args.limit)
    if args.batch < 1 or args.budget < args.batch or args.streams < 1 or not 0 < args.limit < 1:
        p.error("need batch >= 1, budget >= batch, streams >= 1 and 0 < limit < 1")
    return emit(run(args), table)


if __name__ == "__main__":
    sys.exit(main())

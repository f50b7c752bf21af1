"""summary.json: the whole document, built here in one place (SUMMARY_SCHEMA_VERSION; fields in docs/outputs.md).

`summarize` turns the trials into rates, timing, model agreement and paired guard comparisons;
`build_summary` adds what the report gathered beside them (gate results, the
evidence trial, warnings, hook delivery and Change delay statistics, the
calibration verdict) and, last, `findings`: 3-5 plain sentences computed from
all of that, which the report, report.md and `run`'s console open with. Everything returned is JSON-safe: "no data" values are
None. No file I/O here: `harness.report` reads the run folder and writes the file.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from harness.analysis.compare import Window, compare_guards, windows_from_run
from harness.analysis.gate import GateReport
from harness.analysis.model import model_from_run
from harness.analysis.rounds import rounds_summary
from harness.analysis.stats import (
    choose_bin_ms,
    guard_cost,
    json_safe,
    kinds,
    offset_error_stats,
    ordered_guards,
    quantiles,
    rate_table,
    window_rate,
)
from harness.core.oracle import Outcome
from harness.core.results import TRIALS_SCHEMA_VERSION
from harness.core.timing import scenario_tolerance_ms

SUMMARY_SCHEMA_VERSION = 2  # 2: three-verdict gate with per-bin detail and outcome accounting
# |offset| below this is dominated by timing error (docs/performance.md: ms-level p99), so
# the summary also reports each guard's rate outside it.
WINDOW_MIN_ABS_OFFSET_MS = 50.0
MAX_DISAGREEMENT_EXAMPLES = 20
_CALIBRATION_KEYS = ("passed", "verdict", "gated_power", "gated_guard", "gated_model", "gated_fraction", "min_coverage")


def _model_agreement(df: pd.DataFrame, run_meta: Mapping[str, Any], bin_ms: float | None) -> dict[str, Any]:
    model = model_from_run(run_meta)
    mock = run_meta.get("mock") if isinstance(run_meta.get("mock"), Mapping) else {}
    result: dict[str, Any] = {"guard": "none", "policy": mock.get("policy")}  # type: ignore[union-attr]
    none_df = df[df["guard"] == "none"] if not df.empty else df
    if model is None:
        bins = rate_table(none_df, bin_ms)
        n_bins = int((bins["trials"] > 0).sum())
        return result | {"covered": None, "bins": n_bins, "fraction": None, "uncovered_offsets_ms": [],
                         "note": "run.json has no usable mock delay/policy: model not evaluated"}
    table = rate_table(none_df, bin_ms, model)
    table = table[table["trials"] > 0]
    # Tolerance: the model sits exactly on 0/1 where the interval is pinned.
    covered = (table["ci_low"] - 1e-9 <= table["model"]) & (table["model"] <= table["ci_high"] + 1e-9)
    n_bins = len(table)
    return result | {
        "covered": int(covered.sum()),
        "bins": n_bins,
        "fraction": float(covered.sum()) / n_bins if n_bins else None,
        "uncovered_offsets_ms": [float(o) for o in table.loc[~covered, "offset_ms"]],
    }


def timing_warning(late: int, trials: int, p99_ms: float | None, tolerance_ms: float) -> str:
    """The one-line warning a run with late trials prints (console, summary.json, report)."""
    p99 = "" if p99_ms is None else (f", server-side p99 {p99_ms:.0f} ms "
                                     f"{'>' if p99_ms > tolerance_ms else '<='} {tolerance_ms:g} ms tolerance")
    return f"timing degraded: {late} of {trials} trials late{p99 or f' (tolerance {tolerance_ms:g} ms)'}"


def _timing(df: pd.DataFrame, run_meta: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json `timing`: late trials against the run's tolerance, the server-side |offset
    error| p99, the concurrency the run settled at (run.json `timing`), and the warning line."""
    recorded = run_meta.get("timing") if isinstance(run_meta.get("timing"), Mapping) else {}
    scenario = run_meta.get("scenario") if isinstance(run_meta.get("scenario"), Mapping) else {}
    tolerance = recorded.get("tolerance_ms")  # type: ignore[union-attr]
    if tolerance is None:  # a run from before the timing block: what its scenario implies
        tolerance = scenario_tolerance_ms(scenario)  # type: ignore[arg-type]
    late = int(df["late"].sum()) if not df.empty else 0
    errors = df["server_offset_error_ms"].abs().dropna() if not df.empty else pd.Series(dtype=float)
    p99 = float(errors.quantile(0.99)) if len(errors) else None
    return {
        "tolerance_ms": float(tolerance),
        "trials": len(df),
        "late": late,
        "server_abs_error_p99_ms": p99,
        "concurrency": recorded.get("concurrency"),  # type: ignore[union-attr]
        "warning": timing_warning(late, len(df), p99, float(tolerance)) if late else None,
    }


def summarize(df: pd.DataFrame, run_meta: Mapping[str, Any]) -> dict[str, Any]:
    """The summary.json payload (SUMMARY_SCHEMA_VERSION; fields in docs/outputs.md).

    Everything is JSON-safe: "no data" values are None.
    """
    scenario = run_meta.get("scenario") if isinstance(run_meta.get("scenario"), Mapping) else {}
    n_total = len(df)
    wall = run_meta.get("wall_s")
    bin_ms = choose_bin_ms(df)

    guards: dict[str, Any] = {}
    costs = guard_cost(df).set_index("guard") if not df.empty else None
    for guard in ordered_guards(df["guard"]) if not df.empty else []:
        sub = df[df["guard"] == guard]
        overall = window_rate(df, guard)
        outcomes = {o.value: 0 for o in Outcome}
        for name, count in sub["outcome"].value_counts().items():
            outcomes[str(name)] = int(count)
        window = window_rate(df, guard, min_abs_offset_ms=WINDOW_MIN_ABS_OFFSET_MS)
        guards[guard] = {
            **overall,
            "outcomes": outcomes,
            "guard_cost_ms": {"p50": costs.loc[guard, "p50"], "p99": costs.loc[guard, "p99"]},  # type: ignore[union-attr]
            "window": {"min_abs_offset_ms": WINDOW_MIN_ABS_OFFSET_MS, **window},
        }

    if df.empty:
        disagree = df
    else:
        disagree = df[~df["agree"].astype(bool)].sort_values("trial_id")
    examples = [
        {"trial_id": int(r.trial_id), "disagreement": str(r.disagreement)}
        for r in disagree.head(MAX_DISAGREEMENT_EXAMPLES).itertuples()
    ]

    summary: dict[str, Any] = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "trials_schema_version": TRIALS_SCHEMA_VERSION,
        "run_schema_version": run_meta.get("schema_version"),
        "scenario": scenario.get("name"),  # type: ignore[union-attr]
        "seed": run_meta.get("seed"),
        "run": {
            "started_at": run_meta.get("started_at"),
            "finished_at": run_meta.get("finished_at"),
            "wall_s": wall,
            "planned_trials": run_meta.get("planned_trials"),
            "trials": n_total,
            "trials_per_s": n_total / wall if isinstance(wall, (int, float)) and wall > 0 else None,
            # a killed run never finished run.json: interrupted too (as the report says)
            "interrupted": bool(run_meta.get("interrupted", False)) or run_meta.get("finished_at") is None,
            "concurrency": run_meta.get("concurrency"),
            "skipped_trial_lines": int(df.attrs.get("skipped_lines", 0)),
        },
        "target": run_meta.get("target"),
        "mock": run_meta.get("mock"),
        "rate_bin_ms": bin_ms,
        "guards": guards,
        "offset_error_ms": offset_error_stats(df),
        "timing": _timing(df, run_meta),
        "disagreements": {"count": len(disagree), "examples": examples},
        "model_agreement": _model_agreement(df, run_meta, bin_ms),
        "comparisons": compare_guards(df, windows_from_run(run_meta, Window(WINDOW_MIN_ABS_OFFSET_MS))),
    }
    return json_safe(summary)


def change_delay_stats(points: Sequence[tuple[float, float, float]]) -> dict[str, Any]:
    """Quantiles of (s since the first Change, processing ms, queue wait ms) points."""
    return {
        "changes": len(points),
        "processing_ms": quantiles(pd.Series([p[1] for p in points], dtype=float)),
        "queue_wait_ms": quantiles(pd.Series([p[2] for p in points], dtype=float)),
        "effective_ms": quantiles(pd.Series([p[1] + p[2] for p in points], dtype=float)),
    }


def hook_stats(audits: Iterable[Mapping[str, Any]],
               service_of: Mapping[int, str] | None = None) -> dict[str, Any]:
    """Integration mode: how the mock delivered order hooks, and what each service did with them.

    `audits`: audits.jsonl records ({trial_id, audit}); `service_of`: trial_id -> service name.
    `lateness_ms` = sent - scheduled (the mock's own delivery delay beyond the pinned one);
    `round_trip_ms` = the receiving service's answer time. `services` holds, per service:
    `deliveries` (attempts sent), `delivered` (attempts answered 200), `failed_attempts`,
    `duplicates` (extra copies the delivery plan sent), `retries`, `reorders` (pairs of a trial's
    notifications that reached the service in the opposite order of their status changes), and
    `extra_invoices` (invoice requests beyond a trial's first, by HTTP status: accepted or refused).
    Feed delivery (the audit's `feed` records) adds `feed`: `events` enqueued, `duplicates` (second
    copies of the plan), `reads` (items handed to the service), `redeliveries` (reads after a
    visibility timeout: an item it did not commit in time), `committed`, `dropped`.
    """
    late: list[float] = []
    rtt: list[float] = []
    failed = 0
    services: dict[str, dict[str, Any]] = {}
    for record in audits:
        audit = record.get("audit") if isinstance(record.get("audit"), Mapping) else record
        name = (service_of or {}).get(int(record.get("trial_id", -1)), "integration")
        svc = services.setdefault(name, {"deliveries": 0, "delivered": 0, "failed_attempts": 0, "duplicates": 0,
                                         "retries": 0, "reorders": 0, "extra_invoices": {}})
        for d in audit.get("hooks") or []:
            if d.get("sentNs") is not None:
                svc["deliveries"] += 1
                if d.get("scheduledNs") is not None:
                    late.append((d["sentNs"] - d["scheduledNs"]) / 1e6)
            if d.get("outcome") == "delivered":
                svc["delivered"] += 1
                if d.get("latencyMs") is not None:
                    rtt.append(float(d["latencyMs"]))
            else:
                failed += 1
                svc["failed_attempts"] += 1
            svc["duplicates"] += int(bool(d.get("copy")))
            svc["retries"] += int((d.get("attempt") or 0) > 1)
        svc["reorders"] += _reorders(audit.get("hooks") or [])
        if audit.get("feed"):
            _count_feed(svc.setdefault("feed", dict.fromkeys(_FEED_COUNTS, 0)), audit["feed"])
        for inv in (audit.get("invoices") or [])[1:]:
            key = str(inv.get("status"))
            svc["extra_invoices"][key] = svc["extra_invoices"].get(key, 0) + 1
    return {"deliveries": len(late), "failed_attempts": failed,
            "lateness_ms": quantiles(pd.Series(late, dtype=float)),
            "round_trip_ms": quantiles(pd.Series(rtt, dtype=float)),
            "services": services}


def _reorders(deliveries: Iterable[Mapping[str, Any]]) -> int:
    """Inversions between arrival order and status-change order, over each notification's first
    answered delivery (a reordered pair is what a connector's state tracking must survive)."""
    first: dict[tuple[Any, Any], tuple[int, int]] = {}
    for d in deliveries:
        if d.get("outcome") != "delivered" or d.get("sentNs") is None or d.get("changeNs") is None:
            continue
        key = (d.get("state"), d.get("changeNs"))
        if key not in first or d["sentNs"] < first[key][0]:
            first[key] = (int(d["sentNs"]), int(d["changeNs"]))
    changes = [change for _, change in sorted(first.values())]
    return sum(1 for i, a in enumerate(changes) for b in changes[i + 1:] if b < a)


_FEED_COUNTS = ("events", "duplicates", "reads", "redeliveries", "committed", "dropped")


def _count_feed(counts: dict[str, int], records: Iterable[Mapping[str, Any]]) -> None:
    for f in records:
        event = f.get("event")
        if event == "enqueued":
            counts["events"] += 1
            counts["duplicates"] += int(bool(f.get("copy")))
        elif event == "read":
            counts["reads"] += 1
            counts["redeliveries"] += int((f.get("receive") or 1) > 1)
        elif event in ("committed", "dropped"):
            counts[str(event)] += 1


def build_summary(df: pd.DataFrame, run_meta: Mapping[str, Any], *, gate: GateReport,
                  evidence: Mapping[str, Any] | None, warnings: list[str], hooks: Mapping[str, Any] | None,
                  change_delay: Mapping[str, Any], calibration: Mapping[str, Any] | None) -> dict[str, Any]:
    """The whole summary.json: `summarize` plus the gate, evidence, warnings, hooks (integration
    mode only), Change delay and calibration (calibrated runs only) keys, in that order."""
    summary = summarize(df, run_meta)
    summary["gate"] = json_safe({
        "verdict": gate.verdict,
        "passed": gate.verdict == "pass",
        "results": gate.lines(),
        "reasons": list(gate.reasons),
        "policy": gate.policy.as_dict(),
        "thresholds": [t.as_dict() for t in gate.thresholds],
        "outcomes": gate.accounting,
    })
    summary["evidence"] = None
    if evidence is not None:
        summary["evidence"] = {k: v for k, v in evidence.items() if k != "accepted_invoices"}
        summary["evidence"]["accepted_invoice_values"] = [inv["invoiceValue"] for inv in evidence["accepted_invoices"]]
    timing = summary["timing"]["warning"]
    summary["warnings"] = [*warnings, *([timing] if timing else [])]
    if hooks is not None:
        summary["hooks"] = json_safe(hooks)
    summary["change_delay"] = json_safe(change_delay)
    summary["rounds"] = json_safe(rounds_summary(df, run_meta))
    if calibration is not None:
        summary["calibration"] = {k: calibration.get(k) for k in _CALIBRATION_KEYS}
    summary["findings"] = findings(summary, worst_over_cents=_worst_over(df))
    return summary


def _worst_over(df: pd.DataFrame) -> int | None:
    """The largest amount (cents) a raced trial's accepted invoices exceeded its order's final value by."""
    if df.empty:
        return None
    raced = df[kinds(df) == "race"]  # judged races only: a late trial ran at another offset
    over = (pd.to_numeric(raced["invoiced_total"], errors="coerce")
            - pd.to_numeric(raced["final_value"], errors="coerce")).dropna()
    return int(over.max()) if len(over) and over.max() > 0 else None


def _cents(cents: int) -> str:
    return f"{cents / 100:,.2f} ({cents} cents)"


def _window(edges: Mapping[str, Any] | None) -> str:
    if not edges:
        return ""
    edge = f", edges ±{edges['edge_ms']:g} ms" if edges.get("edge_ms") is not None else ""
    return f" at offsets {edges['low']:g} … {edges['high']:g} ms{edge}"


_VERDICT_WORDS = {
    "pass": "every threshold of the scenario holds",
    "fail": "a threshold is violated",
    "inconclusive": "not enough evidence yet to decide every threshold: more trials would settle it",
}


def findings(summary: Mapping[str, Any], *, worst_over_cents: int | None) -> list[str]:
    """3-5 plain sentences from a built summary: reproduced or not (races, worst over-invoice),
    per guard where it closes the race or leaves a window (the measured `rounds.window_edges`),
    the gate verdict in words with its reasons, and warnings (timing, trials not judged or
    failed, an interrupted run). Pure: the same summary gives the same sentences."""
    guards: Mapping[str, Any] = summary.get("guards") or {}
    edges: Mapping[str, Any] = (summary.get("rounds") or {}).get("window_edges") or {}
    out: list[str] = []
    # The unguarded integration is the reproduction; a scenario without one (integration mode:
    # the team's own service) reproduces if any of its guards raced.
    subject = ["none"] if "none" in guards else list(guards)
    races = sum(int(guards[g]["races"] or 0) for g in subject)
    judged = sum(int(guards[g]["trials"] or 0) for g in subject)
    who = "unguarded (none)" if subject == ["none"] else " / ".join(subject)
    if races:
        worst = f"; the worst accepted invoice exceeded the final total by {_cents(worst_over_cents)}" \
            if worst_over_cents else ""
        where = _window(edges.get("none")) if subject == ["none"] else ""
        out.append(f"Ticket reproduced: {races} of {judged} judged {who} invoices were accepted above the order's "
                   f"final total{where}{worst}.")
    elif judged:
        out.append(f"Not reproduced: none of {judged} judged {who} invoices was accepted above the order's final "
                   "total.")
    else:
        out.append("Nothing to judge: no trial of this run could be judged.")
    parts = []
    for guard, g in guards.items():
        if guard in subject or not g["trials"]:
            continue
        if g["races"]:
            parts.append(f"{guard} leaves a window: {g['races']} of {g['trials']} raced{_window(edges.get(guard))}")
        else:
            parts.append(f"{guard} closes the race (0 of {g['trials']} raced, 95% upper bound "
                         f"{g['ci_high']:.3f})")
    if parts:
        out.append("; ".join(parts) + ".")
    gate = summary.get("gate") or {}
    verdict = str(gate.get("verdict", "inconclusive"))
    if not gate.get("thresholds") and not gate.get("reasons"):
        out.append(f"Gate {verdict.upper()}: the scenario sets no thresholds.")
    else:
        by_verdict: dict[str, list[str]] = {}
        for t in gate.get("thresholds") or []:
            by_verdict.setdefault(str(t.get("verdict")), []).append(str(t.get("guard")))
        # The first threshold with the run's verdict, without its verdict word or pooled counts.
        why = [str(t["reason"]).removeprefix(f"{verdict.upper()} ").split(" (")[0]
               for t in gate.get("thresholds") or [] if t.get("verdict") == verdict and verdict != "pass"]
        why += list(gate.get("reasons") or [])
        parts = [f"{', '.join(gs)} {v.upper()}" for v, gs in by_verdict.items()]
        detail = f" ({why[0]})" if why else ""
        out.append(f"Gate {verdict.upper()}, {_VERDICT_WORDS.get(verdict, verdict)}{detail}"
                   + (f"; per threshold: {'; '.join(parts)}" if parts else "") + ".")
    warnings = []
    timing = (summary.get("timing") or {}).get("warning")
    if timing:
        warnings.append(timing)
    outcomes: Mapping[str, Mapping[str, int]] = gate.get("outcomes") or {}
    not_judged = sum(int(c.get("not_judged", 0)) for c in outcomes.values())
    failed = sum(int(c.get("failed", 0)) for c in outcomes.values())
    if not_judged or failed:
        warnings.append(f"{not_judged} trial(s) not judged and {failed} failed, left out of the rates")
    run = summary.get("run") or {}
    if run.get("interrupted") or run.get("finished_at") is None:
        warnings.append(f"the run was interrupted after {run.get('trials')} of {run.get('planned_trials')} "
                        "planned trials")
    if warnings:
        out.append("Warning: " + "; ".join(warnings) + ".")
    return out


__all__ = [
    "MAX_DISAGREEMENT_EXAMPLES",
    "SUMMARY_SCHEMA_VERSION",
    "WINDOW_MIN_ABS_OFFSET_MS",
    "build_summary",
    "change_delay_stats",
    "findings",
    "hook_stats",
    "summarize",
    "timing_warning",
]

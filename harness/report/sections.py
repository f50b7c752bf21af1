"""The report as data: the sections of report.html and report.md, built once.

`build_document` turns the summary, gate results, evidence and plots into a
`Document`: a title, a few run-level notes and a list of `Section`s made of
typed blocks (`Text`, `Table`, `Image`, ...). The renderers
(`harness.report.html`, `harness.report.markdown`) only decide how each block
type looks; what the report says is decided here, so the two files cannot
disagree. All values are formatted to strings here; renderers escape them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from harness.analysis.calibration import COVERAGE_HEADERS, coverage_rows, verdict_sentence
from harness.analysis.gate import GateReport
from harness.analysis.summary import WINDOW_MIN_ABS_OFFSET_MS
from harness.core.adaptive import describe_edges
from harness.report.evidence import FAULT_KINDS

HISTORY_COLUMNS = ["kind", "method", "path", "planned_ms", "sent_ms", "response_ms", "status", "error"]
RATES_NOTE = ("Rates count judged trials only: not-judged trials (a timeout or 5xx, or a late trial) and failed "
              "ones (no invoice, hook not accepted, extra invoice, wrong value, guard timeout) are left out and counted apart. "
              "Intervals are 95% Wilson score intervals.")
GATE_NOTE = ("Each threshold holds for the worst offset bin of its window, decided by an anytime-valid sequential "
             "test (docs/model.md). Every trial is accounted: failed trials fail the gate beyond the scenario's "
             "max_failed; not-judged trials above its max_not_judged_fraction make it inconclusive.")
COMPARISONS_NOTE = ("Race rate of none minus the guard's, over the planned offsets both were tried at, with "
                    "Newcombe's 95% interval; judged trials only (no indeterminate, late or failed trials).")


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Code:
    """Inline code inside a `Text`."""

    text: str


@dataclass(frozen=True)
class Text:
    """A paragraph: plain strings and inline `Code`. `markdown=False`: HTML only (a note about inlined data)."""

    parts: tuple[str | Code, ...]
    markdown: bool = True

    @classmethod
    def of(cls, *parts: str | Code, markdown: bool = True) -> Text:
        return cls(tuple(parts), markdown)


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Image:
    """A plot of the run folder. HTML inlines it (and skips an `optional` one that is missing);
    Markdown links it by file name."""

    path: Path
    alt: str
    optional: bool = False


@dataclass(frozen=True)
class Json:
    """A JSON document shown verbatim (an accepted invoice's body)."""

    text: str


@dataclass(frozen=True)
class Verdicts:
    """The gate's lines: (verdict "pass"|"fail"|"inconclusive", reason), one per threshold then one per
    accounting reason; empty when nothing is gated."""

    items: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class RateDetail:
    """rates.csv: HTML folds the table in; Markdown links the file."""

    table: Table
    file_name: str


@dataclass(frozen=True)
class CalibrationNote:
    """The calibration verdict sentence; both renderers point to calibration.html for per-bin detail."""

    verdict: str


Block = Text | Heading | Table | Image | Json | Verdicts | RateDetail | CalibrationNote


@dataclass(frozen=True)
class Section:
    """A titled part of the report. `verdict`: "pass"/"fail"/"inconclusive" shown in the title; `boxed`: set
    apart (evidence)."""

    title: str
    blocks: tuple[Block, ...]
    verdict: str | None = None
    boxed: bool = False


@dataclass(frozen=True)
class Interrupted:
    """The run stopped early: the figures cover `trials` of `planned` (formatted)."""

    trials: int
    planned: str


@dataclass(frozen=True)
class Document:
    """`findings`: summary.json's plain sentences, which both renderers put first."""

    title: str
    findings: tuple[str, ...]
    description: str | None
    interrupted: Interrupted | None
    warnings: tuple[str, ...]
    facts: Table
    sections: tuple[Section, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- formatting


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


def _money(cents: Any) -> str:
    if isinstance(cents, bool) or not isinstance(cents, int):
        return fmt(cents)
    return f"{cents / 100:,.2f} ({cents} cents)"


def _ci(d: Mapping[str, Any]) -> str:
    return f"[{fmt(d.get('ci_low'))}, {fmt(d.get('ci_high'))}]"


def _guard_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    w = f"|offset| ≥ {WINDOW_MIN_ABS_OFFSET_MS:g} ms"
    headers = ["guard", "judged", "races", "rate", "95% CI", "not judged", "failed", f"rate {w}", f"95% CI {w}",
               "guard cost p50 (ms)", "guard cost p99 (ms)", "outcomes"]
    rows = []
    for guard, g in summary["guards"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in g["outcomes"].items() if v)
        rows.append([guard, fmt(g["trials"]), fmt(g["races"]), fmt(g["rate"]), _ci(g), fmt(g["not_judged"]), fmt(g["failed"]),
                     f"{fmt(g['window']['rate'])} ({g['window']['races']}/{g['window']['trials']})", _ci(g["window"]),
                     fmt(g["guard_cost_ms"]["p50"], 1), fmt(g["guard_cost_ms"]["p99"], 1), outcomes])
    return headers, rows


def _offset_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["measure", "p50 (ms)", "p99 (ms)", "max (ms)", "n"]
    measures = [(f"offset error, {side}", st) for side, st in summary["offset_error_ms"].items()]
    hooks = summary.get("hooks")
    if hooks:  # integration mode
        measures += [("hook delivery lateness (sent - scheduled)", hooks["lateness_ms"]),
                     ("hook round trip (service answer)", hooks["round_trip_ms"])]
    delay = summary.get("change_delay")
    if delay and delay["changes"]:
        measures += [("Change processing delay (drawn)", delay["processing_ms"]),
                     ("Change queue wait (bounded workers)", delay["queue_wait_ms"]),
                     ("effective Change delay", delay["effective_ms"])]
    rows = [[name, fmt(st["p50"], 2), fmt(st["p99"], 2), fmt(st["max"], 2), fmt(st["n"])]
            for name, st in measures]
    return headers, rows


def _timing_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """Late trials against the tolerance and the concurrency the run settled at (summary.json `timing`)."""
    t = summary.get("timing") or {}
    tolerance = t.get("tolerance_ms")
    rows = [["timing tolerance", "–" if tolerance is None else f"{tolerance:g} ms"],
            ["late trials (not judged)", f"{fmt(t.get('late'))} of {fmt(t.get('trials'))}"],
            ["server-side |offset error| p99", f"{fmt(t.get('server_abs_error_p99_ms'), 2)} ms"]]
    c = t.get("concurrency")
    if c:
        rows.append(["trials in flight", f"settled at {c['settled']} of {c['max']} (lowest {c['lowest']})"])
    return rows


def _history_rows(history: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    def key(ev: Mapping[str, Any]) -> float:
        s = ev.get("sent_ms")
        return float(s) if isinstance(s, (int, float)) else math.inf

    rows = []
    for ev in sorted(history, key=key):  # sorted() is stable: ties keep file order
        rows.append([fmt(ev.get(c), 2) if c.endswith("_ms") else fmt(ev.get(c) if ev.get(c) != "" else None)
                     for c in HISTORY_COLUMNS])
    return rows


def _rate_rows(rates: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = list(rates.columns)
    rows = []
    for rec in rates.to_dict("records"):
        rows.append([fmt(v.item() if hasattr(v, "item") else v, 1 if c == "offset_ms" else 3) for c, v in rec.items()])
    return headers, rows


def _model_sentence(summary: Mapping[str, Any]) -> str:
    m = summary["model_agreement"]
    mock = summary.get("mock") or {}
    if m.get("covered") is None:
        return f"Race model not evaluated: {m.get('note', 'no mock settings')}."
    if not m["bins"]:
        return "Race model: no unguarded trials to compare with."
    text = (f"Race model (guard none, policy {mock.get('policy')}, delay {json.dumps(mock.get('delay'), sort_keys=True)}, "
            f"settle {mock.get('settle_ms')} ms): {m['covered']}/{m['bins']} offset bins have a 95% interval "
            f"covering the model probability.")
    if m["uncovered_offsets_ms"]:
        text += " Not covered at offset(s) " + ", ".join(f"{o:g}" for o in m["uncovered_offsets_ms"]) + " ms."
    return text


def _integration_facts(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Integration mode: the services under test, how each is reached, and the hook delivery plan."""
    integ = ((meta.get("scenario") or {}).get("target") or {}).get("integration")
    if not integ:
        return []
    feed = integ.get("delivery") == "feed"
    facts = [(f"service {sv.get('name')}", ("reads Feed v3" if feed else f"hook {sv.get('hook_url')}")
              + (f" (started by the harness: {' '.join(sv['command'])})" if sv.get("command") else ""))
             for sv in integ.get("services") or []]
    facts.append(("feed delivery plan" if feed else "hook delivery plan",
                  f"pinned delay {fmt(integ.get('hook_delay_ms'))} ms; duplicate rate {fmt(integ.get('duplicate_rate', 0))}, "
                  f"extra delay up to {fmt(integ.get('extra_delay_ms', 0))} ms (seeded by the run's seed); "
                  + ("offset = t_change − t_visible (the handling event visible in the feed)" if feed
                     else "offset = t_change − t_hook")))
    return facts


def _run_facts(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    run = summary["run"]
    target = summary.get("target") or {}
    mock = summary.get("mock") or {}
    host = meta.get("host") or {}
    rounds = summary.get("rounds") or {}
    played = []
    if rounds.get("rounds"):
        played.append(("rounds", f"{rounds['rounds']} ({' + '.join(map(str, rounds['trials_per_round']))} trials; "
                                 f"budget {fmt(rounds.get('budget'))}"
                                 + (f"; stopped early: {rounds['stop_reason']}" if rounds.get("stopped_early") else "")
                                 + ")"))
    played += [("race window", describe_edges(guard, edges)) for guard, edges in
               (rounds.get("window_edges") or {}).items() if edges is not None]
    return [
        ("scenario", fmt(summary.get("scenario"))),
        ("seed", fmt(summary.get("seed"))),
        ("target", f"{target.get('kind')} {target.get('url', '')}".strip()),
        ("mock", f"policy {mock.get('policy')}, delay {json.dumps(mock.get('delay'), sort_keys=True)}, "
                 f"settle {mock.get('settle_ms')} ms"),
        ("started / finished", f"{fmt(run['started_at'])} / {fmt(run['finished_at'])}"),
        ("trials", f"{run['trials']} of {fmt(run['planned_trials'])} planned, concurrency {fmt(run.get('concurrency'))}"),
        ("wall time", f"{fmt(run['wall_s'], 1)} s ({fmt(run['trials_per_s'], 1)} trials/s)"),
        *_integration_facts(meta),
        *played,
        ("host", f"python {host.get('python', '?')}, {host.get('platform', '?')}, {host.get('cpus', '?')} CPUs"),
    ]


def _pretty(body: Any) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False)


def _evidence_facts(ev: Mapping[str, Any]) -> list[tuple[str, str]]:
    facts = [
        ("order value at creation", _money(ev["initial_value"])),
        ("final order value (after the Change)", _money(ev["final_value"])),
        ("accepted invoice total", _money(ev["invoiced_total"])),
        ("accepted above the final value by", _money(ev["over_by"])),
    ]
    for inv in ev["accepted_invoices"]:
        if inv.get("validatedAgainst") is not None:
            facts.append((f"invoice {inv.get('invoiceNumber')} validated against", _money(inv["validatedAgainst"])))
    if not ev["agree"]:
        facts.append(("note", "client outcome and mock audit disagree on this trial"))
    return facts


def _server_times(row: pd.Series) -> list[tuple[str, float]]:
    names = [
        ("Change acted on by the mock", "change_acted_ms"),
        ("Change finished (value reduced)", "change_finished_ms"),
        ("Invoice acted on by the mock", "invoice_acted_ms"),
    ]
    return [(label, float(row[col])) for label, col in names]



# --------------------------------------------------------------------------- the sections


def _without_verdict(line: str) -> str:
    word, _, rest = line.partition(" ")
    return rest if word in ("PASS", "FAIL", "INCONCLUSIVE") else line


def _gate(gate: GateReport) -> Section:
    # The console's lines start with the verdict word; here a coloured verdict badge says it.
    items = [(t.verdict, _without_verdict(t.reason)) for t in gate.thresholds]
    items += [("fail" if r.startswith("FAIL") else "inconclusive", _without_verdict(r)) for r in gate.reasons]
    headers = ["guard", "trials", "race", "no race", "not judged", "failed"]
    rows = [[guard, fmt(sum(c.values())), fmt(c["race"]), fmt(c["no_race"]), fmt(c["not_judged"]), fmt(c["failed"])]
            for guard, c in gate.accounting.items()]
    return Section("Gate", (Verdicts(items), Text.of(GATE_NOTE), Table(headers, rows)), verdict=gate.verdict)


def _rates(summary: Mapping[str, Any], rates: pd.DataFrame, rates_name: str, pngs: Mapping[str, Path],
           pending: bool) -> Section:
    return Section("Race rate per guard", (
        Table(*_guard_rows(summary)),
        Text.of(RATES_NOTE),
        Image(pngs["race_rate"], "race rate vs offset", optional=pending),
        Text.of(_model_sentence(summary)),
        RateDetail(Table(*_rate_rows(rates)), rates_name),
    ))


def _comparisons(summary: Mapping[str, Any]) -> Section:
    rows = [[c["guard"], c["window"]["text"], str(c["offsets"]), f"{c['baseline_races']}/{c['baseline_trials']}",
             f"{c['guard_races']}/{c['guard_trials']}", f"{fmt(c['difference'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"]
            for c in summary["comparisons"]]
    return Section("Guards compared with the unguarded baseline", (
        Text.of(COMPARISONS_NOTE),
        Table(["guard", "window", "shared offsets", "races (none)", "races (guard)", "difference [95% CI]"], rows),
        *(Text.of(c["sentence"]) for c in summary["comparisons"]),
    ))


def _evidence(ev: Mapping[str, Any] | None, row: pd.Series | None, history: Sequence[Mapping[str, Any]],
              pngs: Mapping[str, Path], pending: bool) -> Section:
    blocks: list[Block] = []
    if ev is None or row is None:
        blocks.append(Text.of("No race observed in this run: no accepted invoice exceeded its order's final value."))
    else:
        blocks += [Text.of(f"Trial {ev['trial_id']} (order ", Code(str(ev["order_id"])), f", guard {ev['guard']}, "
                           f"planned offset {fmt(ev['offset_ms'], 1)} ms)."),
                   Table(["", ""], _evidence_facts(ev))]
        for inv in ev["accepted_invoices"]:
            blocks += [Text.of(f"Accepted invoice JSON (as sent; source: {ev['invoice_source']}):"),
                       Json(_pretty(inv["body"]))]
        if not ev["accepted_invoices"]:
            blocks.append(Text.of("The accepted invoice's body is not in audits.jsonl or history.jsonl.",
                                  markdown=False))
        blocks += [Heading("Requests of this trial (client history, ms since t0)"),
                   Table(HISTORY_COLUMNS, _history_rows(history)) if history
                   else Text.of("No history events recorded for this trial."),
                   Heading("Server-side instants (mock, ms since t0)"),
                   Table(["event", "ms"], [[k, fmt(v, 2)] for k, v in _server_times(row)])]
    blocks.append(Image(pngs["timeline"], "timeline of the raced trial", optional=pending))
    return Section("Evidence of a race", tuple(blocks), boxed=True)


def _calibration(cal: Mapping[str, Any], run_dir: Path) -> Section:
    return Section("Calibration against the race model", (
        CalibrationNote(verdict_sentence(cal)),
        Table(COVERAGE_HEADERS, coverage_rows(cal)),
        Image(run_dir / "calibration.png", "measured race rate vs the model", optional=True),
    ))


def _disagreements(summary: Mapping[str, Any]) -> Section:
    d = summary["disagreements"]
    rows = [[str(e["trial_id"]), e["disagreement"]] for e in d["examples"]]
    return Section(f"Client/audit disagreements: {d['count']}",
                   (Table(["trial_id", "disagreement"], rows),) if rows else ())


def _faults(counts: Mapping[str, Mapping[str, int]]) -> Section:
    """Faults and 429s the mock injected, per route (its seeded schedule and rate limits)."""
    kinds = [k for k in FAULT_KINDS if any(k in c for c in counts.values())]
    rows = [[route, *(str(c.get(k, 0)) for k in kinds)] for route, c in sorted(counts.items())]
    total = sum(sum(c.values()) for c in counts.values())
    return Section(f"Faults injected by the mock: {total}", (
        Text.of("From the trials' order audits: the mock's seeded fault schedule (`fault-500`, `fault-503`, "
                "`slow`, `response-lost`: applied, answer lost) and its rate limits (`429`)."),
        Table(["route", *kinds], rows)))


def build_document(*, summary: Mapping[str, Any], meta: Mapping[str, Any], run_dir: Path, pngs: Mapping[str, Path],
                   rates: pd.DataFrame, rates_name: str, gate: GateReport,
                   evidence: Mapping[str, Any] | None, evidence_row: pd.Series | None,
                   history: Sequence[Mapping[str, Any]], calibration: Mapping[str, Any] | None,
                   faults: Mapping[str, Mapping[str, int]] | None = None,
                   figures_pending: bool = False) -> Document:
    """Every section of the report, in order, as data (`faults`: see evidence.AuditScan).
    `figures_pending`: the figures are being rendered (the HTML leaves out those not written yet and is
    rewritten once they are)."""
    interrupted = bool(meta.get("interrupted")) or meta.get("finished_at") is None
    sections = [
        _gate(gate),
        _rates(summary, rates, rates_name, pngs, figures_pending),
        _evidence(evidence, evidence_row, history, pngs, figures_pending),
        Section("Timing precision", (Table(["", ""], _timing_rows(summary)), Table(*_offset_rows(summary)),
                                     Image(pngs["offset_error"], "offset error histogram", optional=figures_pending),
                                     *([Image(pngs["change_delay"], "effective Change delay over the run",
                                              optional=figures_pending)]
                                       if "change_delay" in pngs else []))),
        Section("Guard cost", (Image(pngs["guard_cost"], "guard cost per guard", optional=figures_pending),)),
    ]
    if summary.get("comparisons"):
        sections.append(_comparisons(summary))
    if calibration is not None:
        sections.append(_calibration(calibration, run_dir))
    if faults:
        sections.append(_faults(faults))
    sections.append(_disagreements(summary))
    return Document(
        title=f"Race report: {summary.get('scenario') or run_dir.name}",
        findings=tuple(summary.get("findings") or ()),
        description=(meta.get("scenario") or {}).get("description") or None,
        interrupted=Interrupted(summary["run"]["trials"], fmt(summary["run"]["planned_trials"])) if interrupted else None,
        warnings=tuple(summary["warnings"]),
        facts=Table(["", ""], _run_facts(summary, meta)),
        sections=tuple(sections),
    )


__all__ = [
    "Block", "CalibrationNote", "Code", "Document", "Heading", "Image", "Interrupted", "Json", "RateDetail",
    "Section", "Table", "Text", "Verdicts", "build_document", "fmt",
]

"""Build a run folder's report: summary.json, rates.csv, plots, report.html,
report.md and junit.xml, from run.json + trials.csv + history.jsonl + audits.jsonl.

Output is deterministic for the same inputs (no clock reads, no PNG software
stamp, stable ordering), works on an interrupted run (partial trials.csv,
`finished_at` null) and on a run without races (the evidence section then says
none was observed). The HTML is self-contained (images inlined as base64) and
escapes every value taken from the run folder.
"""

from __future__ import annotations

import base64
import html
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd

from harness.report import plots
from harness.analysis.stats import (
    WINDOW_MIN_ABS_OFFSET_MS,
    json_safe,
    load_trials,
    model_from_run,
    quantiles,
    rate_table,
    summarize,
)
from harness.analysis.calibration import COVERAGE_HEADERS, coverage_rows, verdict_sentence
from harness.errors import ReportError
from harness.analysis.gate import GateResult, evaluate
from harness.core.thresholds import Threshold
from harness.core.oracle import Outcome
from harness.core.results import TRIALS_SCHEMA_VERSION

SUPPORTED_RUN_SCHEMA = 1
_HISTORY_COLUMNS = ["kind", "method", "path", "planned_ms", "sent_ms", "response_ms", "status", "error"]


@dataclass(frozen=True)
class ReportPaths:
    """Files written by `build_report` (all inside `run_dir`), and the gate verdict
    so a CLI can set its exit code without re-reading summary.json."""

    run_dir: Path
    summary: Path
    rates: Path
    race_rate_png: Path
    timeline_png: Path
    offset_error_png: Path
    guard_cost_png: Path
    change_delay_png: Path
    html: Path
    markdown: Path
    junit: Path
    gate_passed: bool


# --------------------------------------------------------------------------- reading


def read_run_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (is {run_dir} a run folder?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read as JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: expected a JSON object; got {type(meta).__name__}")
    version = meta.get("schema_version")
    if version != SUPPORTED_RUN_SCHEMA:
        raise ReportError(f"{path}: schema_version {version!r} not supported (this report reads {SUPPORTED_RUN_SCHEMA})")
    trials_version = meta.get("trials_schema_version", TRIALS_SCHEMA_VERSION)
    if trials_version != TRIALS_SCHEMA_VERSION:
        raise ReportError(f"{path}: trials_schema_version {trials_version!r} not supported "
                          f"(this report reads trials.csv version {TRIALS_SCHEMA_VERSION})")
    return meta


def _thresholds(meta: Mapping[str, Any], run_dir: Path) -> list[Threshold]:
    scenario = meta.get("scenario") or {}
    raw = (scenario.get("thresholds") or []) if isinstance(scenario, Mapping) else []
    if not isinstance(raw, list):
        raise ReportError(f"{run_dir / 'run.json'}: scenario.thresholds: expected a list; got {type(raw).__name__}")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(Threshold.from_dict(item))
        except ValueError as exc:
            raise ReportError(f"{run_dir / 'run.json'}: scenario.thresholds[{i}]: {exc}") from None
    return out


@dataclass
class _Jsonl:
    exists: bool = False
    lines: int = 0
    bad: int = 0


def _scan_jsonl(path: Path, trial_id: int | None, stats: _Jsonl) -> Iterator[dict[str, Any]]:
    """Yield the objects of `path` that belong to `trial_id`, counting lines and
    unparsable ones. Streams: history.jsonl of a long run can be large."""
    if not path.exists():
        return
    stats.exists = True
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            stats.lines += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                stats.bad += 1  # a crash can cut the last line
                continue
            if isinstance(obj, dict) and trial_id is not None and obj.get("trial_id") == trial_id:
                yield obj


def _audits(path: Path) -> Iterator[dict[str, Any]]:
    """Every trial's audit in audits.jsonl (streamed; unparsable or empty ones skipped)."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                audit = (json.loads(line) or {}).get("audit")
            except json.JSONDecodeError:
                continue
            if isinstance(audit, dict):
                yield audit


def _change_delays(path: Path) -> list[tuple[float, float, float]]:
    """(s since the first Change, processing ms, queue wait ms) of every accepted Change in the audits."""
    raw: list[tuple[int, float, float]] = []
    for audit in _audits(path):
        for c in audit.get("changes") or []:
            if c.get("accepted") and c.get("actedNs") is not None and c.get("delayMs") is not None:
                raw.append((c["actedNs"], float(c["delayMs"]), float(c.get("queueWaitMs") or 0.0)))
    if not raw:
        return []
    t0 = min(r[0] for r in raw)
    return sorted(((ns - t0) / 1e9, d, w) for ns, d, w in raw)


def _delay_summary(points: list[tuple[float, float, float]]) -> dict[str, Any]:
    return {
        "changes": len(points),
        "processing_ms": quantiles(pd.Series([p[1] for p in points], dtype=float)),
        "queue_wait_ms": quantiles(pd.Series([p[2] for p in points], dtype=float)),
        "effective_ms": quantiles(pd.Series([p[1] + p[2] for p in points], dtype=float)),
    }


def _hook_stats(path: Path) -> dict[str, Any]:
    """Integration mode: how promptly and how fast the mock delivered order hooks.

    `lateness_ms` = sent - scheduled (the mock's own delivery delay beyond the
    pinned one); `round_trip_ms` = the receiving service's answer time.
    """
    late: list[float] = []
    rtt: list[float] = []
    failed = 0
    for audit in _audits(path):
        for d in audit.get("hooks") or []:
            if d.get("sentNs") is not None and d.get("scheduledNs") is not None:
                late.append((d["sentNs"] - d["scheduledNs"]) / 1e6)
            if d.get("status") and 200 <= d["status"] < 300 and d.get("latencyMs") is not None:
                rtt.append(float(d["latencyMs"]))
            elif d.get("outcome") != "delivered":
                failed += 1
    return {"deliveries": len(late), "failed_attempts": failed,
            "lateness_ms": quantiles(pd.Series(late, dtype=float)),
            "round_trip_ms": quantiles(pd.Series(rtt, dtype=float))}


# --------------------------------------------------------------------------- evidence


def _pick_evidence(df: pd.DataFrame) -> pd.Series | None:
    """The raced trial to show, deterministically: unguarded first (the ticket's
    case), then one whose client view and audit agree, then Change-first
    (offset > 0), then the offset nearest the median raced offset (a typical
    race, not a borderline one), then the lowest trial_id."""
    if df.empty:
        return None
    races = df[df["outcome"] == Outcome.RACE.value]
    if races.empty:
        return None
    keyed = races.assign(_g=races["guard"] != "none", _a=~races["agree"].astype(bool), _p=races["offset_ms"] <= 0)
    best = keyed.sort_values(["_g", "_a", "_p"], kind="stable")
    first = best.iloc[0]
    peers = best[(best["_g"] == first["_g"]) & (best["_a"] == first["_a"]) & (best["_p"] == first["_p"])]
    median = float(peers["offset_ms"].median())
    peers = peers.assign(_d=(peers["offset_ms"] - median).abs())
    return peers.sort_values(["_d", "trial_id"], kind="stable").iloc[0].drop(["_g", "_a", "_p", "_d"])


def _evidence(row: pd.Series, audit: Mapping[str, Any] | None, history: list[dict[str, Any]]) -> dict[str, Any]:
    invoices: list[dict[str, Any]] = []
    source = "none"
    if audit:
        for inv in audit.get("invoices") or []:
            if isinstance(inv, Mapping) and inv.get("accepted"):
                invoices.append(
                    {
                        "invoiceNumber": inv.get("invoiceNumber"),
                        "invoiceValue": inv.get("invoiceValue"),
                        "validatedAgainst": inv.get("validatedAgainst"),
                        "status": inv.get("status"),
                        "body": inv.get("body"),
                    }
                )
        source = "audit" if invoices else source
    if not invoices:
        # No audit for this trial: fall back to what the client sent and saw accepted.
        for ev in history:
            status = ev.get("status")
            if ev.get("kind") == "invoice" and isinstance(status, int) and 200 <= status < 300:
                body = ev.get("request_body")
                value = body.get("invoiceValue") if isinstance(body, Mapping) else None
                invoices.append({"invoiceNumber": None, "invoiceValue": value, "validatedAgainst": None,
                                 "status": status, "body": body})
        source = "history" if invoices else "none"
    audit = audit or {}

    def cents(audit_key: str, column: str) -> int:
        # The audit is the mock's own record, so it wins; trials.csv carries the same numbers otherwise.
        v = audit.get(audit_key)
        return v if isinstance(v, int) and not isinstance(v, bool) else int(row[column])

    final = cents("finalValue", "final_value")
    total = cents("invoicedTotal", "invoiced_total")
    initial = cents("initialValue", "initial_value")
    return {
        "trial_id": int(row["trial_id"]),
        "order_id": str(row["order_id"]),
        "guard": str(row["guard"]),
        "offset_ms": float(row["offset_ms"]),
        "initial_value": initial,
        "final_value": final,
        "invoiced_total": total,
        "over_by": total - final,
        "agree": bool(row["agree"]),
        "invoice_source": source,
        "accepted_invoices": invoices,
    }


def _server_times(row: pd.Series) -> list[tuple[str, float]]:
    names = [
        ("Change acted on by the mock", "change_acted_ms"),
        ("Change finished (value reduced)", "change_finished_ms"),
        ("Invoice acted on by the mock", "invoice_acted_ms"),
    ]
    return [(label, float(row[col])) for label, col in names]


# --------------------------------------------------------------------------- formatting


def _fmt(value: Any, digits: int = 3) -> str:
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
        return _fmt(cents)
    return f"{cents / 100:,.2f} ({cents} cents)"


def _ci(d: Mapping[str, Any]) -> str:
    return f"[{_fmt(d.get('ci_low'))}, {_fmt(d.get('ci_high'))}]"


def _guard_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    w = f"|offset| ≥ {WINDOW_MIN_ABS_OFFSET_MS:g} ms"
    headers = ["guard", "trials", "races", "rate", "95% CI", "indeterminate", f"rate {w}", f"95% CI {w}",
               "guard cost p50 (ms)", "guard cost p99 (ms)", "outcomes"]
    rows = []
    for guard, g in summary["guards"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in g["outcomes"].items() if v)
        rows.append([guard, _fmt(g["trials"]), _fmt(g["races"]), _fmt(g["rate"]), _ci(g), _fmt(g["indeterminate"]),
                     f"{_fmt(g['window']['rate'])} ({g['window']['races']}/{g['window']['trials']})", _ci(g["window"]),
                     _fmt(g["guard_cost_ms"]["p50"], 1), _fmt(g["guard_cost_ms"]["p99"], 1), outcomes])
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
    rows = [[name, _fmt(st["p50"], 2), _fmt(st["p99"], 2), _fmt(st["max"], 2), _fmt(st["n"])]
            for name, st in measures]
    return headers, rows


def _history_rows(history: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    def key(ev: Mapping[str, Any]) -> float:
        s = ev.get("sent_ms")
        return float(s) if isinstance(s, (int, float)) else math.inf

    rows = []
    for ev in sorted(history, key=key):  # sorted() is stable: ties keep file order
        rows.append([_fmt(ev.get(c), 2) if c.endswith("_ms") else _fmt(ev.get(c) if ev.get(c) != "" else None)
                     for c in _HISTORY_COLUMNS])
    return rows


def _rate_rows(rates: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = list(rates.columns)
    rows = []
    for rec in rates.to_dict("records"):
        rows.append([_fmt(v.item() if hasattr(v, "item") else v, 1 if c == "offset_ms" else 3) for c, v in rec.items()])
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


def _run_facts(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    run = summary["run"]
    target = summary.get("target") or {}
    mock = summary.get("mock") or {}
    host = meta.get("host") or {}
    return [
        ("scenario", _fmt(summary.get("scenario"))),
        ("seed", _fmt(summary.get("seed"))),
        ("target", f"{target.get('kind')} {target.get('url', '')}".strip()),
        ("mock", f"policy {mock.get('policy')}, delay {json.dumps(mock.get('delay'), sort_keys=True)}, "
                 f"settle {mock.get('settle_ms')} ms"),
        ("started / finished", f"{_fmt(run['started_at'])} / {_fmt(run['finished_at'])}"),
        ("trials", f"{run['trials']} of {_fmt(run['planned_trials'])} planned, concurrency {_fmt(run.get('concurrency'))}"),
        ("wall time", f"{_fmt(run['wall_s'], 1)} s ({_fmt(run['trials_per_s'], 1)} trials/s)"),
        ("host", f"python {host.get('python', '?')}, {host.get('platform', '?')}, {host.get('cpus', '?')} CPUs"),
    ]


def _fence(text: str) -> str:
    # A fence longer than any backtick run inside, so the JSON cannot close it.
    n = 3
    while "`" * n in text:
        n += 1
    return "`" * n


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;font-size:.9rem;text-align:left}
th{background:#f3f3f3}pre{background:#f7f7f7;border:1px solid #ddd;padding:.75rem;overflow:auto}
.pass{color:#11772d;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5rem 1rem}.evidence{border-left:4px solid #b00020;padding-left:1rem}
img{max-width:100%;border:1px solid #eee}
"""


def _h(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in headers)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_h(alt)}">'


def _render_html(ctx: dict[str, Any]) -> str:
    s, meta, paths = ctx["summary"], ctx["meta"], ctx["pngs"]
    title = f"Race report: {s.get('scenario') or ctx['run_dir'].name}"
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_h(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{_h(title)}</h1>"]
    desc = (meta.get("scenario") or {}).get("description")
    if desc:
        out.append(f"<p>{_h(desc)}</p>")
    if ctx["interrupted"]:
        out.append('<p class="banner">This run was interrupted: the figures cover the trials that finished '
                   f"({s['run']['trials']} of {_h(_fmt(s['run']['planned_trials']))} planned).</p>")
    for w in s["warnings"]:
        out.append(f'<p class="banner">{_h(w)}</p>')
    out.append(_html_table(["", ""], _run_facts(s, meta)))

    gate = s["gate"]
    verdict = "PASS" if gate["passed"] else "FAIL"
    out.append(f'<h2>Gate: <span class="{verdict.lower()}">{verdict}</span></h2>')
    if ctx["gate"]:
        out.append("<ul>" + "".join(
            f'<li><span class="{"pass" if r.passed else "fail"}">{"PASS" if r.passed else "FAIL"}</span> '
            f"{_h(r.reason)}</li>" for r in ctx["gate"]) + "</ul>")
    else:
        out.append("<p>No thresholds configured in the scenario.</p>")

    out.append("<h2>Race rate per guard</h2>")
    out.append(_html_table(*_guard_rows(s)))
    out.append("<p>Rates exclude indeterminate trials (a timeout or 5xx: the trial may or may not have raced). "
               "Intervals are 95% Wilson score intervals.</p>")
    out.append(_img(paths["race_rate"], "race rate vs offset"))
    out.append(f"<p>{_h(_model_sentence(s))}</p>")
    out.append("<details><summary>Rate per offset (rates.csv)</summary>" + _html_table(*_rate_rows(ctx["rates"]))
               + "</details>")

    out.append('<h2>Evidence of a race</h2><div class="evidence">')
    ev = ctx["evidence"]
    if ev is None:
        out.append("<p>No race observed in this run: no accepted invoice exceeded its order's final value.</p>")
    else:
        out.append(f"<p>Trial {ev['trial_id']} (order <code>{_h(ev['order_id'])}</code>, guard {_h(ev['guard'])}, "
                   f"planned offset {_h(_fmt(ev['offset_ms'], 1))} ms).</p>")
        out.append(_html_table(["", ""], _evidence_facts(ev)))
        if ev["accepted_invoices"]:
            for inv in ev["accepted_invoices"]:
                out.append(f"<p>Accepted invoice JSON (as sent; source: {_h(ev['invoice_source'])}):</p>")
                out.append(f"<pre>{_h(_pretty(inv['body']))}</pre>")
        else:
            out.append("<p>The accepted invoice's body is not in audits.jsonl or history.jsonl.</p>")
        out.append("<h3>Requests of this trial (client history, ms since t0)</h3>")
        out.append(_html_table(_HISTORY_COLUMNS, _history_rows(ctx["history"])) if ctx["history"]
                   else "<p>No history events recorded for this trial.</p>")
        out.append("<h3>Server-side instants (mock, ms since t0)</h3>")
        out.append(_html_table(["event", "ms"], [[k, _fmt(v, 2)] for k, v in _server_times(ctx["evidence_row"])]))
    out.append(_img(paths["timeline"], "timeline of the raced trial"))
    out.append("</div>")

    out.append("<h2>Timing precision</h2>")
    out.append(_html_table(*_offset_rows(s)))
    out.append(_img(paths["offset_error"], "offset error histogram"))
    out.append(_img(paths["change_delay"], "effective Change delay over the run"))
    out.append("<h2>Guard cost</h2>")
    out.append(_img(paths["guard_cost"], "guard cost per guard"))

    cal = ctx["calibration"]
    if cal is not None:
        out.append("<h2>Calibration against the race model</h2>")
        out.append(f"<p>{_h(verdict_sentence(cal))} (<code>race-harness calibrate</code>; per-bin detail in "
                   '<a href="calibration.html">calibration.html</a>).</p>')
        out.append(_html_table(COVERAGE_HEADERS, coverage_rows(cal)))
        if (ctx["run_dir"] / "calibration.png").exists():
            out.append(_img(ctx["run_dir"] / "calibration.png", "measured race rate vs the model"))

    d = s["disagreements"]
    out.append(f"<h2>Client/audit disagreements: {d['count']}</h2>")
    if d["examples"]:
        out.append(_html_table(["trial_id", "disagreement"], [[str(e["trial_id"]), e["disagreement"]]
                                                              for e in d["examples"]]))
    out.append("</body></html>\n")
    return "\n".join(out)


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


# --------------------------------------------------------------------------- Markdown


def _md_text(value: Any) -> str:
    # Markdown passes raw HTML through to renderers: neutralise it like the HTML report does.
    return html.escape(str(value), quote=False)


def _md_cell(value: str) -> str:
    return _md_text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _render_md(ctx: dict[str, Any]) -> str:
    s, meta, paths = ctx["summary"], ctx["meta"], ctx["pngs"]
    out = [f"# Race report: {_md_text(s.get('scenario') or ctx['run_dir'].name)}", ""]
    desc = (meta.get("scenario") or {}).get("description")
    if desc:
        out += [_md_text(desc), ""]
    if ctx["interrupted"]:
        out += [f"> **Interrupted run**: figures cover the {s['run']['trials']} trials that finished "
                f"(of {_fmt(s['run']['planned_trials'])} planned).", ""]
    out += [f"> {_md_text(w)}" for w in s["warnings"]] + ([""] if s["warnings"] else [])
    out += [_md_table(["", ""], _run_facts(s, meta)), ""]
    gate = s["gate"]
    out += [f"## Gate: {'PASS' if gate['passed'] else 'FAIL'}", ""]
    out += [f"- {'PASS' if r.passed else 'FAIL'} {_md_text(r.reason)}" for r in ctx["gate"]] or ["No thresholds configured."]
    out += ["", "## Race rate per guard", "", _md_table(*_guard_rows(s)), "",
            "Rates exclude indeterminate trials (a timeout or 5xx: the trial may or may not have raced). "
            "Intervals are 95% Wilson score intervals.", "",
            f"![race rate vs offset]({paths['race_rate'].name})", "", _model_sentence(s), "",
            f"Rate per offset: [{ctx['rates_name']}]({ctx['rates_name']}).", "", "## Evidence of a race", ""]
    ev = ctx["evidence"]
    if ev is None:
        out += ["No race observed in this run: no accepted invoice exceeded its order's final value.", ""]
    else:
        out += [f"Trial {ev['trial_id']} (order {_md_text(ev['order_id'])}, guard {_md_text(ev['guard'])}, "
                f"planned offset {_fmt(ev['offset_ms'], 1)} ms).", "", _md_table(["", ""], _evidence_facts(ev)), ""]
        for inv in ev["accepted_invoices"]:
            text = _pretty(inv["body"])
            fence = _fence(text)
            out += [f"Accepted invoice JSON (as sent; source: {ev['invoice_source']}):", "", f"{fence}json", text,
                    fence, ""]
        out += ["### Requests of this trial (client history, ms since t0)", ""]
        out += [_md_table(_HISTORY_COLUMNS, _history_rows(ctx["history"])) if ctx["history"]
                else "No history events recorded for this trial.", ""]
        out += ["### Server-side instants (mock, ms since t0)", "",
                _md_table(["event", "ms"], [[k, _fmt(v, 2)] for k, v in _server_times(ctx["evidence_row"])]), ""]
    out += [f"![timeline of the raced trial]({paths['timeline'].name})", "", "## Timing precision", "",
            _md_table(*_offset_rows(s)), "", f"![offset error histogram]({paths['offset_error'].name})", "",
            f"![effective Change delay over the run]({paths['change_delay'].name})", "",
            "## Guard cost", "", f"![guard cost per guard]({paths['guard_cost'].name})", ""]
    cal = ctx["calibration"]
    if cal is not None:
        out += ["## Calibration against the race model", "",
                f"{_md_text(verdict_sentence(cal))} (per-bin detail in calibration.html).", "",
                _md_table(COVERAGE_HEADERS, coverage_rows(cal)), "",
                "![measured race rate vs the model](calibration.png)", ""]
    d = s["disagreements"]
    out += [f"## Client/audit disagreements: {d['count']}", ""]
    if d["examples"]:
        out += [_md_table(["trial_id", "disagreement"], [[str(e["trial_id"]), e["disagreement"]] for e in d["examples"]]), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- JUnit


def _junit(results: Sequence[GateResult], summary: Mapping[str, Any]) -> bytes:
    name = f"race-gate.{summary.get('scenario') or 'run'}"
    failures = sum(not r.passed for r in results)
    suites = ET.Element("testsuites", name="race-harness", tests=str(len(results)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(results)), failures=str(failures),
                          errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for key in ("scenario", "seed"):
        ET.SubElement(props, "property", name=key, value=str(summary.get(key)))
    for i, r in enumerate(results):
        case = ET.SubElement(suite, "testcase", classname=name, name=f"[{i}] {r.threshold.describe()}")
        if not r.passed:
            fail = ET.SubElement(case, "failure", message=r.reason, type="ThresholdFailed")
            fail.text = json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                    for k, v in r.measured.items()}, sort_keys=True)
        else:
            ET.SubElement(case, "system-out").text = r.reason
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


# --------------------------------------------------------------------------- entry point


def _warnings(df: pd.DataFrame, history: _Jsonl, audits: _Jsonl) -> list[str]:
    out = []
    skipped = int(df.attrs.get("skipped_lines", 0))
    if skipped:
        out.append(f"trials.csv: skipped {skipped} unparsable trailing line(s) (run interrupted?)")
    for name, st in (("history.jsonl", history), ("audits.jsonl", audits)):
        if not st.exists:
            out.append(f"{name}: missing (evidence falls back to trials.csv)")
        elif st.bad:
            out.append(f"{name}: skipped {st.bad} unparsable line(s) of {st.lines}")
    return out


def _read_calibration(run_dir: Path) -> dict[str, Any] | None:
    """calibration.json as `race-harness calibrate` wrote it, or None when the run was not calibrated."""
    path = run_dir / "calibration.json"
    if not path.exists():
        return None
    try:
        cal = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read as JSON: {exc}") from None
    if not isinstance(cal, dict) or not isinstance(cal.get("guards"), dict) or "passed" not in cal:
        raise ReportError(f"{path}: expected the object `race-harness calibrate` writes (guards, passed, ...)")
    return cal


def build_report(run_dir: Path | str) -> ReportPaths:
    """Read a run folder and write every report file into it; returns their paths.

    Raises ReportError (naming the file) when run.json or trials.csv is missing
    or malformed; history.jsonl / audits.jsonl are optional and tolerated when
    cut short (noted in summary.json `warnings`).
    """
    run_dir = Path(run_dir)
    meta = read_run_json(run_dir)
    df = load_trials(run_dir)
    thresholds = _thresholds(meta, run_dir)

    summary = summarize(df, meta)
    results = evaluate(df, thresholds)
    rates = rate_table(df, summary["rate_bin_ms"], model_from_run(meta))

    row = _pick_evidence(df)
    tid = int(row["trial_id"]) if row is not None else None
    hist_stats, audit_stats = _Jsonl(), _Jsonl()
    history = list(_scan_jsonl(run_dir / "history.jsonl", tid, hist_stats))
    audit_objs = list(_scan_jsonl(run_dir / "audits.jsonl", tid, audit_stats))
    audit = audit_objs[0].get("audit") if audit_objs and isinstance(audit_objs[0].get("audit"), dict) else None
    evidence = _evidence(row, audit, history) if row is not None else None

    passed = all(r.passed for r in results)
    summary["gate"] = {
        "passed": passed,
        "results": [r.reason for r in results],
        "checks": [
            {"threshold": r.threshold.describe(), "passed": r.passed,
             **{k: r.measured[k] for k in ("trials", "races", "ci_low", "ci_high")}}
            for r in results
        ],
    }
    summary["evidence"] = None
    if evidence is not None:
        summary["evidence"] = {k: v for k, v in evidence.items() if k != "accepted_invoices"}
        summary["evidence"]["accepted_invoice_values"] = [inv["invoiceValue"] for inv in evidence["accepted_invoices"]]
    summary["warnings"] = _warnings(df, hist_stats, audit_stats)
    if (meta.get("scenario") or {}).get("target", {}).get("integration"):
        summary["hooks"] = json_safe(_hook_stats(run_dir / "audits.jsonl"))
    delays = _change_delays(run_dir / "audits.jsonl")
    summary["change_delay"] = json_safe(_delay_summary(delays))
    calibration = _read_calibration(run_dir)
    if calibration is not None:
        summary["calibration"] = {k: calibration.get(k) for k in
                                  ("passed", "gated_guard", "gated_model", "gated_fraction", "min_coverage")}

    pngs = {
        "race_rate": plots.plot_race_rate(rates, _race_model_for_plot(rates, meta, summary["rate_bin_ms"]),
                                          run_dir / "race_rate.png"),
        "timeline": plots.plot_timeline(row.to_dict() if row is not None else None, history, audit,
                                        run_dir / "timeline.png"),
        "offset_error": plots.plot_offset_error(df, run_dir / "offset_error.png"),
        "guard_cost": plots.plot_guard_cost(df, run_dir / "guard_cost.png"),
        "change_delay": plots.plot_change_delay(delays, run_dir / "change_delay.png"),
    }

    summary_path = run_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    rates_path = run_dir / "rates.csv"
    rates.to_csv(rates_path, index=False, lineterminator="\n")

    ctx = {
        "summary": summary, "meta": meta, "run_dir": run_dir, "pngs": pngs, "rates": rates,
        "rates_name": rates_path.name, "gate": results, "evidence": evidence, "evidence_row": row,
        "history": history, "interrupted": bool(meta.get("interrupted")) or meta.get("finished_at") is None,
        "calibration": calibration,
    }
    html_path = run_dir / "report.html"
    html_path.write_text(_render_html(ctx), encoding="utf-8")
    md_path = run_dir / "report.md"
    md_path.write_text(_render_md(ctx), encoding="utf-8")
    junit_path = run_dir / "junit.xml"
    junit_path.write_bytes(_junit(results, summary))

    return ReportPaths(
        run_dir=run_dir, summary=summary_path, rates=rates_path, race_rate_png=pngs["race_rate"],
        timeline_png=pngs["timeline"], offset_error_png=pngs["offset_error"], guard_cost_png=pngs["guard_cost"],
        change_delay_png=pngs["change_delay"], html=html_path, markdown=md_path, junit=junit_path, gate_passed=passed,
    )


def _race_model_for_plot(rates: pd.DataFrame, meta: Mapping[str, Any], bin_ms: float | None) -> plots.ModelSpec:
    model = model_from_run(meta)
    if model is None or rates.empty or not (rates["guard"] == "none").any():
        return None
    if bin_ms is not None:
        # Offsets were binned: the expected rate of a bin is an average, so plot those points.
        none = rates[(rates["guard"] == "none") & rates["model"].notna()]
        return list(zip(none["offset_ms"].tolist(), none["model"].tolist()))
    return lambda offset: model(offset, "none")

"""Build a run folder's report: summary.json, rates.csv, plots, report.html,
report.md, junit.xml and, for the evidence trial, reproduce.sh + test_reproduce.py,
from run.json + trials.csv + history.jsonl + audits.jsonl.

Output is deterministic for the same inputs (no clock reads, no PNG software
stamp, stable ordering), works on an interrupted run (partial trials.csv,
`finished_at` null) and on a run without races (the evidence section then says
none was observed). The HTML is self-contained (images inlined as base64) and
escapes every value taken from the run folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import pandas as pd

from harness.analysis.gate import evaluate
from harness.analysis.model import model_from_run
from harness.analysis.stats import load_trials, rate_table
from harness.analysis.summary import build_summary, change_delay_stats, hook_stats
from harness.core.thresholds import GatePolicy, Threshold
from harness.errors import ReportError
from harness.report import html, markdown
from harness.report.evidence import (
    JsonlStats,
    audit_records,
    build_evidence,
    change_delay_informative,
    pick_evidence,
    scan_audits,
    scan_jsonl,
)
from harness.report.junit import junit_xml
from harness.report.reproducer import write_reproducer
from harness.report.sections import build_document
from harness.runfolder import read_run_json

if TYPE_CHECKING:
    from harness.report import plots


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
    change_delay_png: Path | None  # written only when informative (a queue or a delay distribution)
    html: Path
    markdown: Path
    junit: Path
    gate_verdict: str  # "pass" | "fail" | "inconclusive"

    @property
    def gate_passed(self) -> bool:
        return self.gate_verdict == "pass"


@dataclass(frozen=True)
class Report:
    """What `build_report` wrote (`paths`) and the summary.json it wrote, as a dict: callers use it
    instead of reading the file back."""

    paths: ReportPaths
    summary: dict[str, Any]
    _pending: _Inputs | None = field(default=None, repr=False, compare=False)  # figures not written yet


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


def _policy(meta: Mapping[str, Any], run_dir: Path) -> GatePolicy:
    """The scenario's `[gate]` policy as run.json recorded it (defaults for older run folders)."""
    scenario = meta.get("scenario") or {}
    raw = (scenario.get("gate") or {}) if isinstance(scenario, Mapping) else {}
    try:
        return GatePolicy.from_dict(raw)
    except ValueError as exc:
        raise ReportError(f"{run_dir / 'run.json'}: scenario.gate: {exc}") from None


def _warnings(df: pd.DataFrame, history: JsonlStats, audits: JsonlStats) -> list[str]:
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



FIGURES_PENDING = "figures.pending"  # in the run folder while `build_report(..., figures=False)`'s figures are due


@dataclass(frozen=True)
class _Inputs:
    """What the figures and the HTML are drawn from, kept so `write_figures` does not read the run again."""

    run_dir: Path
    meta: Mapping[str, Any]
    df: pd.DataFrame
    rates: pd.DataFrame
    summary: dict[str, Any]
    row: pd.Series | None
    history: list[dict[str, Any]]
    audit: dict[str, Any] | None
    delays: list[tuple[float, float, float]]
    document: Callable[[bool], Any]  # figures_pending -> the report as data (sections.Document)


def build_report(run_dir: Path | str, *, figures: bool = True) -> Report:
    """Read a run folder and write every report file into it; returns their paths and the summary.

    `figures=False` writes everything but the figures (the HTML leaves them out) and leaves the
    FIGURES_PENDING marker: a command then shows its verdict without waiting on matplotlib, and
    `write_figures` (or a later `build_report`) adds them. Raises ReportError (naming the file) when
    run.json or trials.csv is missing or malformed; history.jsonl / audits.jsonl are optional and
    tolerated when cut short (noted in summary.json `warnings`).
    """
    run_dir = Path(run_dir)
    meta = read_run_json(run_dir)
    df = load_trials(run_dir)
    results = evaluate(df, _thresholds(meta, run_dir), _policy(meta, run_dir))

    row = pick_evidence(df)
    tid = int(row["trial_id"]) if row is not None else None
    hist_stats = JsonlStats()
    history = list(scan_jsonl(run_dir / "history.jsonl", tid, hist_stats))
    audit_scan = scan_audits(run_dir / "audits.jsonl", tid)
    audit_objs, audit_stats, delays = audit_scan.trial, audit_scan.stats, audit_scan.delays
    audit = audit_objs[0].get("audit") if audit_objs and isinstance(audit_objs[0].get("audit"), dict) else None
    evidence = build_evidence(row, audit, history) if row is not None else None
    integration = (meta.get("scenario") or {}).get("target", {}).get("integration")
    calibration = _read_calibration(run_dir)
    summary = build_summary(
        df, meta, gate=results, evidence=evidence, warnings=_warnings(df, hist_stats, audit_stats),
        hooks=hook_stats(audit_records(run_dir / "audits.jsonl"), dict(zip(df["trial_id"].astype(int), df["guard"])))
        if integration else None,
        change_delay=change_delay_stats(delays), calibration=calibration,
    )
    rates = rate_table(df, summary["rate_bin_ms"], model_from_run(meta))
    pngs = _figure_paths(run_dir, delays)

    write_reproducer(run_dir, meta, row.to_dict() if row is not None else None, history)
    summary_path = run_dir / "summary.json"
    _write_atomic(summary_path, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    rates_path = run_dir / "rates.csv"
    rates.to_csv(rates_path, index=False, lineterminator="\n")

    faults = audit_scan.faults

    def document(figures_pending: bool) -> Any:
        return build_document(summary=summary, meta=meta, run_dir=run_dir,
                              pngs={name: png for name, png in pngs.items() if png is not None}, rates=rates,
                              rates_name=rates_path.name, gate=results, evidence=evidence, evidence_row=row,
                              history=history, calibration=calibration, faults=faults,
                              figures_pending=figures_pending)

    inputs = _Inputs(run_dir, meta, df, rates, summary, row, history, audit, delays, document)
    if figures:
        _render_figures(inputs)
    else:
        (run_dir / FIGURES_PENDING).write_text(
            "the report's figures are being rendered; if this file stays, run `race-harness report` on this folder\n",
            encoding="utf-8")
        _write_atomic(run_dir / "report.html", html.render(document(True)))
    # Markdown links the figures by name: the same text whether they are written yet or not.
    md_path = run_dir / "report.md"
    _write_atomic(md_path, markdown.render(document(False)))
    junit_path = run_dir / "junit.xml"
    junit_path.write_bytes(junit_xml(results, summary))

    paths = ReportPaths(
        run_dir=run_dir, summary=summary_path, rates=rates_path, race_rate_png=_written(pngs["race_rate"]),
        timeline_png=_written(pngs["timeline"]), offset_error_png=_written(pngs["offset_error"]),
        guard_cost_png=_written(pngs["guard_cost"]),
        change_delay_png=pngs["change_delay"], html=run_dir / "report.html", markdown=md_path, junit=junit_path,
        gate_verdict=results.verdict,
    )
    return Report(paths, summary, None if figures else inputs)


def write_figures(report: Report) -> None:
    """The figures a `build_report(..., figures=False)` left out, and the HTML with them; no-op when written."""
    if report._pending is not None:
        _render_figures(report._pending)


def _render_figures(inputs: _Inputs) -> None:
    from harness.report import plots  # matplotlib: ~0.35 s of import, needed by the figures only

    run_dir, meta, summary, rates, row = inputs.run_dir, inputs.meta, inputs.summary, inputs.rates, inputs.row
    integration = (meta.get("scenario") or {}).get("target", {}).get("integration")
    plots.plot_race_rate(rates, _race_models_for_plot(rates, meta, summary["rate_bin_ms"]), run_dir / "race_rate.png",
                         window_edges=(summary.get("rounds") or {}).get("window_edges"),
                         offset_label=_offset_label(integration))
    plots.plot_timeline(row.to_dict() if row is not None else None, inputs.history, inputs.audit,
                        run_dir / "timeline.png")
    plots.plot_offset_error(inputs.df, run_dir / "offset_error.png")
    plots.plot_guard_cost(inputs.df, run_dir / "guard_cost.png")
    _change_delay_png(inputs.delays, run_dir / "change_delay.png")
    _write_atomic(run_dir / "report.html", html.render(inputs.document(False)))
    (run_dir / FIGURES_PENDING).unlink(missing_ok=True)


def _figure_paths(run_dir: Path, delays: list[tuple[float, float, float]]) -> dict[str, Path | None]:
    return {"race_rate": run_dir / "race_rate.png", "timeline": run_dir / "timeline.png",
            "offset_error": run_dir / "offset_error.png", "guard_cost": run_dir / "guard_cost.png",
            "change_delay": run_dir / "change_delay.png" if change_delay_informative(delays) else None}


def _write_atomic(path: Path, text: str) -> None:
    """Readers (a browser on report.html while the figures are added) see the old file or the new one, whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _written(path: Path | None) -> Path:
    assert path is not None  # only the Change-delay figure is optional
    return path


def _offset_label(integration: Any) -> str:
    """The mode's offset definition (docs/model.md, docs/integration.md) for the x axis."""
    if integration:
        if isinstance(integration, dict) and integration.get("delivery") == "feed":
            return "planned offset t_change − t_visible (ms)"
        return "planned offset t_change − t_hook (ms)"
    return "planned offset t_invoice − t_change (ms)"


def _change_delay_png(delays: list[tuple[float, float, float]], out: Path) -> Path | None:
    """The Change-delay figure when it says something; else none (and no stale one from an earlier build)."""
    from harness.report import plots

    if change_delay_informative(delays):
        return plots.plot_change_delay(delays, out)
    out.unlink(missing_ok=True)
    plots.hidpi_path(out).unlink(missing_ok=True)
    return None


def _race_models_for_plot(rates: pd.DataFrame, meta: Mapping[str, Any],
                          bin_ms: float | None) -> dict[str, plots.ModelSpec]:
    model = model_from_run(meta)
    if model is None or rates.empty:
        return {}
    out: dict[str, plots.ModelSpec] = {}
    for guard in rates["guard"].unique():
        if bin_ms is not None:
            # Offsets were binned: the expected rate of a bin is an average, so plot those points.
            sub = rates[(rates["guard"] == guard) & rates["model"].notna()]
            out[guard] = list(zip(sub["offset_ms"].tolist(), sub["model"].tolist())) or None
        else:
            out[guard] = lambda offset, g=str(guard): model(offset, g)
    return out


__all__ = ["FIGURES_PENDING", "Report", "ReportPaths", "build_report", "write_figures"]

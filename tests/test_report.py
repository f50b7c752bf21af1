"""Tests for harness.report: a synthetic run folder in, every report file out."""

from __future__ import annotations

import math
import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.analysis.gate import evaluate
from harness.analysis.sequential import wilson_interval
from harness.analysis.summary import SUMMARY_SCHEMA_VERSION
from harness.core.results import TrialResult
from harness.core.thresholds import Threshold
from harness.errors import ReportError
from harness.report import ReportPaths, build_report
from harness.report.junit import junit_xml

INITIAL, FINAL, DELAY_MS = 15_000, 9_990, 300.0
OFFSETS = [-100.0, 0.0, 100.0, 400.0]
REPS = 4
THRESHOLDS = [
    {"guard": "none", "min_lower": 0.2, "min_abs_offset_ms": 0.0, "offset_range_ms": [100.0, 100.0]},  # passes
    # 0 races in 4 trials per bin cannot prove <= 5%: inconclusive.
    {"guard": "finished-check", "max_upper": 0.05, "min_abs_offset_ms": 50.0, "offset_range_ms": None},
    {"guard": "serialized", "max_upper": 0.5, "min_abs_offset_ms": 0.0, "offset_range_ms": None},  # no trials: inconclusive
]


def _outcome(guard: str, offset: float) -> str:
    # Fixed 300 ms delay, vulnerable policy, settle 0 (docs/model.md table).
    if guard == "none":
        if 0 <= offset < DELAY_MS:
            return "race"
        return "invoice_refused" if offset >= DELAY_MS else "change_refused"
    return "clean" if offset >= 0 else "change_refused"


def make_trial(trial_id: int, guard: str, offset: float, outcome: str | None = None, **kw: Any) -> TrialResult:
    outcome = outcome or _outcome(guard, offset)
    raced = outcome == "race"
    inv_value = INITIAL if guard == "none" else FINAL
    fields: dict[str, Any] = dict(
        trial_id=trial_id, seq=trial_id, guard=guard, offset_ms=offset, order_id=f"1348894-{trial_id:02d}",
        outcome=outcome, audit_verdict="race" if raced else "clean", agree=True, disagreement="",
        initial_value=INITIAL, final_value=FINAL if outcome != "change_refused" else INITIAL,
        invoice_value=inv_value, invoiced_total=inv_value if outcome != "invoice_refused" else 0,
        invoice_status=409 if outcome == "invoice_refused" else 200,
        change_status=409 if outcome == "change_refused" else 202, change_delay_ms=DELAY_MS,
        change_planned_ms=0.0, invoice_planned_ms=offset, change_sent_ms=0.2,
        invoice_sent_ms=offset + 0.3 + (0.0 if guard == "none" else 310.0), change_acted_ms=0.6,
        invoice_acted_ms=offset + 0.9, change_finished_ms=DELAY_MS + 0.6, hook_sent_ms=math.nan,
        client_offset_error_ms=0.1 * (trial_id % 5) if guard == "none" else float("nan"),
        server_offset_error_ms=0.2 * (trial_id % 7) if guard == "none" else float("nan"),
        guard_cost_ms=0.3 if guard == "none" else 310.0 + trial_id, duration_ms=500.0, error="",
    )
    fields.update(kw)
    return TrialResult(**fields)


def _invoice_body(t: TrialResult) -> dict[str, Any]:
    return {"type": "Output", "invoiceNumber": f"NF-{t.trial_id}", "invoiceValue": str(t.invoice_value),
            "issuanceDate": "2026-01-09T10:00:00Z", "items": [{"id": "1", "price": t.invoice_value, "quantity": 1}]}


def _history(t: TrialResult) -> list[dict[str, Any]]:
    def ev(kind: str, method: str, path: str, planned: float | None, sent: float, status: int,
           req: Any = None, resp: Any = None) -> dict[str, Any]:
        return {"trial_id": t.trial_id, "guard": t.guard, "kind": kind, "method": method, "path": path,
                "planned_ms": planned, "sent_ms": sent, "response_ms": sent + 2.0, "status": status,
                "request_body": req, "response_body": resp, "error": ""}

    return [
        ev("create_order", "POST", "/_mock/orders", None, -50.0, 201),
        ev("start_handling", "POST", f"/api/oms/pvt/orders/{t.order_id}/start-handling", None, -20.0, 204),
        ev("invoice", "POST", f"/api/orders/pvt/document/{t.order_id}/invoices", t.invoice_planned_ms,
           t.invoice_sent_ms, t.invoice_status, _invoice_body(t), {"receipt": "r"}),
        ev("change", "PATCH", f"/api/order-system/orders/{t.order_id}/changes", 0.0, t.change_sent_ms,
           t.change_status, {"reason": "partial cancel"}, {"requestId": "c1"}),
    ]


def _audit(t: TrialResult) -> dict[str, Any]:
    accepted = t.invoice_status == 200
    return {"trial_id": t.trial_id, "order_id": t.order_id, "audit": {
        "orderId": t.order_id, "initialValue": t.initial_value, "finalValue": t.final_value,
        "invoicedTotal": t.invoiced_total, "verdict": t.audit_verdict,
        "invoices": [{"invoiceNumber": f"NF-{t.trial_id}", "invoiceValue": t.invoice_value, "accepted": accepted,
                      "status": t.invoice_status, "validatedAgainst": t.initial_value, "arrivalNs": 1,
                      "actedNs": 2, "body": _invoice_body(t)}],
        "changes": [{"requestId": "c1", "accepted": t.change_status == 202, "status": t.change_status,
                     "finished": True, "delayMs": DELAY_MS, "arrivalNs": 1, "actedNs": 2, "finishedNs": 3,
                     "valueBefore": t.initial_value, "valueAfter": t.final_value}]}}


def make_run(run_dir: Path, trials: list[TrialResult], **meta_kw: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "schema_version": 1,
        "scenario": {"name": "ticket-1348894", "description": "Synthetic <b>run</b> & friends",
                     "thresholds": THRESHOLDS},
        "seed": 1348894, "target": {"kind": "embedded", "url": "http://127.0.0.1:8765"},
        "mock": {"policy": "vulnerable", "delay": {"kind": "fixed", "ms": DELAY_MS}, "settle_ms": 0.0},
        "started_at": "2026-01-09T10:00:00+00:00", "finished_at": "2026-01-09T10:00:20+00:00",
        "interrupted": False, "planned_trials": len(trials), "wall_s": 20.0,
        "host": {"python": "3.11.7", "platform": "Linux", "cpus": 2}, "concurrency": 8,
    }
    meta.update(meta_kw)
    (run_dir / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    with (run_dir / "trials.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=TrialResult.columns())
        w.writeheader()
        for t in trials:
            w.writerow(t.row())
    with (run_dir / "history.jsonl").open("w", encoding="utf-8") as fh:
        for t in trials:
            for e in _history(t):
                fh.write(json.dumps(e) + "\n")
    with (run_dir / "audits.jsonl").open("w", encoding="utf-8") as fh:
        for t in trials:
            fh.write(json.dumps(_audit(t)) + "\n")
    return run_dir


def sweep(guards: tuple[str, ...] = ("none", "finished-check")) -> list[TrialResult]:
    trials: list[TrialResult] = []
    for _ in range(REPS):
        for g in guards:
            for o in OFFSETS:
                trials.append(make_trial(len(trials), g, o))
    return trials


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportPaths, list[TrialResult]]:
    trials = sweep()
    # One disagreement, with markup in it, to check escaping and reporting.
    trials[-1] = make_trial(trials[-1].trial_id, trials[-1].guard, trials[-1].offset_ms, agree=False,
                            disagreement="<script>alert(1)</script> audit says race")
    run_dir = make_run(tmp_path_factory.mktemp("run") / "ticket-1348894-20260109T100000", trials)
    return build_report(run_dir).paths, trials


def test_all_files_written(built: tuple[ReportPaths, list[TrialResult]]) -> None:
    paths, _ = built
    for p in (paths.summary, paths.rates, paths.race_rate_png, paths.timeline_png, paths.offset_error_png,
              paths.guard_cost_png, paths.html, paths.markdown, paths.junit):
        assert p.exists() and p.stat().st_size > 0 and p.parent == paths.run_dir
    assert paths.race_rate_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_numbers_from_data(built: tuple[ReportPaths, list[TrialResult]]) -> None:
    paths, trials = built
    s = json.loads(paths.summary.read_text())
    assert s["schema_version"] == SUMMARY_SCHEMA_VERSION
    assert s["scenario"] == "ticket-1348894" and s["seed"] == 1348894
    assert s["run"]["trials"] == len(trials) and s["run"]["planned_trials"] == len(trials)
    for guard in ("none", "finished-check"):
        mine = [t for t in trials if t.guard == guard]
        races = sum(t.outcome == "race" for t in mine)
        g = s["guards"][guard]
        assert (g["trials"], g["races"]) == (len(mine), races)
        assert [g["ci_low"], g["ci_high"]] == pytest.approx(list(wilson_interval(races, len(mine))))
    assert s["disagreements"]["count"] == sum(not t.agree for t in trials)
    ma = s["model_agreement"]
    assert ma["bins"] == len(OFFSETS) and ma["covered"] == len(OFFSETS)  # outcomes follow the model exactly
    assert s["gate"]["verdict"] == "inconclusive" and s["gate"]["passed"] is False
    assert len(s["gate"]["results"]) == len(THRESHOLDS) and s["gate"]["reasons"] == []
    assert [t["verdict"] for t in s["gate"]["thresholds"]] == ["pass", "inconclusive", "inconclusive"]
    none_bins = s["gate"]["thresholds"][0]["bins"]
    assert [(b["offset_ms"], b["races"], b["trials"], b["verdict"]) for b in none_bins] == [(100.0, REPS, REPS, "pass")]
    assert s["gate"]["outcomes"]["none"] == {"race": sum(t.outcome == "race" and t.guard == "none" for t in trials),
                                             "no_race": sum(t.outcome != "race" and t.guard == "none" for t in trials),
                                             "not_judged": 0, "failed": 0}
    assert s["gate"]["policy"] == {"alpha": 0.05, "max_failed": 0, "max_not_judged_fraction": 0.05,
                                   "max_trials": None}
    assert s["evidence"]["invoiced_total"] == INITIAL and s["evidence"]["final_value"] == FINAL
    assert s["evidence"]["guard"] == "none"
    assert s["warnings"] == []


def test_rates_csv(built: tuple[ReportPaths, list[TrialResult]]) -> None:
    paths, trials = built
    rows = list(csv.DictReader(paths.rates.open()))
    assert len(rows) == len({(t.guard, t.offset_ms) for t in trials})
    assert {"guard", "offset_ms", "trials", "races", "rate", "ci_low", "ci_high", "not_judged", "failed", "model"} <= set(rows[0])
    assert sum(int(r["races"]) for r in rows) == sum(t.outcome == "race" for t in trials)


def test_junit_marks_inconclusive_as_error(built: tuple[ReportPaths, list[TrialResult]]) -> None:
    paths, _ = built
    root = ET.parse(paths.junit).getroot()
    cases = root.findall(".//testcase")
    errors = root.findall(".//testcase/error")
    assert len(cases) == len(THRESHOLDS) and root.findall(".//testcase/failure") == []
    summary = json.loads(paths.summary.read_text())
    assert len(errors) == sum(t["verdict"] == "inconclusive" for t in summary["gate"]["thresholds"]) == 2
    assert root.get("errors") == "2" and root.get("failures") == "0"
    assert {e.get("message") for e in errors} <= set(summary["gate"]["results"])
    assert any("no judged trials in window" in (e.get("message") or "") for e in errors)
    assert all(e.get("type") == "Inconclusive" for e in errors)


def test_junit_marks_fail_as_failure() -> None:
    df = pd.DataFrame([make_trial(i, "none", 100.0).row() for i in range(20)])
    gate = evaluate(df, [Threshold("none", max_upper=0.1)])
    root = ET.fromstring(junit_xml(gate, {"scenario": "x", "seed": 1}))
    [failure] = root.findall(".//testcase/failure")
    assert failure.get("message", "").startswith("FAIL none: worst bin 100 ms 20/20 races")
    assert json.loads(failure.text or "")["bins"][0]["verdict"] == "fail"
    assert root.findall(".//testcase/error") == []


def test_html_evidence_and_escaping(built: tuple[ReportPaths, list[TrialResult]]) -> None:
    paths, _ = built
    page = paths.html.read_text()
    assert f'"invoiceValue": "{INITIAL}"' in page.replace("&quot;", '"')
    assert f"{FINAL / 100:,.2f}" in page and f"{INITIAL / 100:,.2f}" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Synthetic &lt;b&gt;run&lt;/b&gt; &amp; friends" in page
    # A fixed delay and no queue: the Change-delay figure would be one flat line, so it is left out.
    assert page.count("data:image/png;base64,") == 4 and paths.change_delay_png is None
    assert not (paths.run_dir / "change_delay.png").exists()
    md = paths.markdown.read_text()
    assert "(race_rate.png)" in md and f'"invoiceValue": "{INITIAL}"' in md
    assert "<script>" not in md and "<b>" not in md


def test_deterministic(built: tuple[ReportPaths, list[TrialResult]]) -> None:
    paths, _ = built
    before = {p: p.read_bytes() for p in paths.run_dir.iterdir()}
    build_report(paths.run_dir)
    after = {p: p.read_bytes() for p in paths.run_dir.iterdir()}
    assert before.keys() == after.keys()
    changed = [p.name for p in before if before[p] != after[p]]
    assert changed == []


def test_interrupted_truncated_run(tmp_path: Path) -> None:
    trials = sweep(("none",))[:7]
    run_dir = make_run(tmp_path / "run", trials, finished_at=None, interrupted=True, wall_s=None,
                       planned_trials=32)
    with (run_dir / "trials.csv").open("a", encoding="utf-8") as fh:
        fh.write("7,7,none,100.0,1348894-07,ra")  # the crash cut this row
    with (run_dir / "history.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"trial_id": 7, "kind": "inv')
    paths = build_report(run_dir).paths
    s = json.loads(paths.summary.read_text())
    assert s["run"]["trials"] == len(trials) and s["run"]["skipped_trial_lines"] == 1
    assert s["run"]["interrupted"] is True and s["run"]["finished_at"] is None and s["run"]["trials_per_s"] is None
    assert any("history.jsonl" in w for w in s["warnings"])
    assert "interrupted" in paths.html.read_text()


def test_build_report_returns_the_summary_it_wrote(tmp_path: Path) -> None:
    report = build_report(make_run(tmp_path / "run", sweep(("none",))[:4]))
    assert report.summary == json.loads(report.paths.summary.read_text())
    assert report.paths.gate_passed is report.summary["gate"]["passed"]
    assert report.paths.gate_verdict == report.summary["gate"]["verdict"]


def test_zero_races(tmp_path: Path) -> None:
    trials = [make_trial(i, "finished-check", o) for i, o in enumerate(OFFSETS * 3)]
    paths = build_report(make_run(tmp_path / "run", trials, scenario={"name": "clean", "thresholds": []})).paths
    s = json.loads(paths.summary.read_text())
    assert s["evidence"] is None
    assert s["gate"]["verdict"] == "pass" and s["gate"]["results"] == [] and s["gate"]["thresholds"] == []
    assert paths.gate_passed
    assert "No race observed" in paths.html.read_text() and "No race observed" in paths.markdown.read_text()
    assert ET.parse(paths.junit).getroot().findall(".//testcase") == []


def test_missing_or_bad_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="run.json"):
        build_report(tmp_path)
    run_dir = make_run(tmp_path / "run", sweep(("none",))[:2])
    (run_dir / "trials.csv").unlink()
    with pytest.raises(ReportError, match="trials.csv"):
        build_report(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(meta | {"trials_schema_version": 99}))
    with pytest.raises(ReportError, match="trials_schema_version 99"):
        build_report(run_dir)
    (run_dir / "run.json").write_text("{not json")
    with pytest.raises(ReportError, match="run.json"):
        build_report(run_dir)


def test_evidence_falls_back_to_history_without_audit_or_model(tmp_path: Path) -> None:
    t = make_trial(0, "none", 100.0)
    run_dir = make_run(tmp_path / "run", [t], mock=None)
    (run_dir / "audits.jsonl").write_text(json.dumps({"trial_id": 0, "order_id": t.order_id, "audit": None}) + "\n")
    paths = build_report(run_dir).paths
    s = json.loads(paths.summary.read_text())
    assert s["evidence"]["invoice_source"] == "history"
    assert s["evidence"]["accepted_invoice_values"] == [str(t.invoice_value)]
    assert s["evidence"]["over_by"] == t.invoiced_total - t.final_value
    assert s["model_agreement"]["covered"] is None and "note" in s["model_agreement"]
    assert "Race model not evaluated" in paths.html.read_text()


def test_findings_open_the_report_and_the_summary(built: tuple[ReportPaths, list[TrialResult]]) -> None:
    paths, _ = built
    s = json.loads(paths.summary.read_text())
    findings = s["findings"]
    assert 3 <= len(findings) <= 5
    assert findings[0].startswith("Ticket reproduced: ") and "cents" in findings[0]
    assert any(f.startswith(f"Gate {s['gate']['verdict'].upper()}") for f in findings)
    page = paths.html.read_text()
    assert page.index('id="findings"') < page.index("<table>")  # before the run's metadata
    md = paths.markdown.read_text()
    assert md.index("## Findings") < md.index("| scenario |")


def test_every_figure_also_at_2x(built: tuple[ReportPaths, list[TrialResult]]) -> None:
    paths, _ = built
    from matplotlib.image import imread

    for png in (paths.race_rate_png, paths.timeline_png, paths.offset_error_png, paths.guard_cost_png):
        hi = png.with_name(f"{png.stem}@2x.png")
        assert imread(str(hi)).shape[1] == 2 * imread(str(png)).shape[1]


def test_findings_sentences() -> None:
    from harness.analysis.summary import findings

    summary = {
        "guards": {"none": {"trials": 40, "races": 12, "ci_high": 0.45},
                   "finished-check": {"trials": 40, "races": 3, "ci_high": 0.2},
                   "serialized": {"trials": 40, "races": 0, "ci_high": 0.088}},
        "rounds": {"window_edges": {"none": {"low": 0, "high": 300, "edge_ms": 10},
                                    "finished-check": {"low": -150, "high": -10, "edge_ms": 10}, "serialized": None}},
        "gate": {"verdict": "fail", "reasons": [], "outcomes": {"none": {"not_judged": 2, "failed": 1}},
                 "thresholds": [{"guard": "finished-check", "verdict": "fail",
                                 "reason": "FAIL finished-check: worst bin -100 ms 3/4 races (3/40 pooled)"}]},
        "timing": {"warning": "timing degraded: 5 of 120 trials late"},
        "run": {"interrupted": True, "finished_at": None, "trials": 120, "planned_trials": 200},
    }
    out = findings(summary, worst_over_cents=5000)
    assert out[0] == ("Ticket reproduced: 12 of 40 judged unguarded (none) invoices were accepted above the "
                      "order's final total at offsets 0 … 300 ms, edges ±10 ms; the worst accepted invoice "
                      "exceeded the final total by 50.00 (5000 cents).")
    assert "finished-check leaves a window: 3 of 40 raced at offsets -150 … -10 ms" in out[1]
    assert "serialized closes the race (0 of 40 raced, 95% upper bound 0.088)" in out[1]
    assert out[2].startswith("Gate FAIL, a threshold is violated (finished-check: worst bin -100 ms 3/4 races)")
    assert out[3] == ("Warning: timing degraded: 5 of 120 trials late; 2 trial(s) not judged and 1 failed, left out "
                      "of the rates; the run was interrupted after 120 of 200 planned trials.")


def test_faults_injected_by_the_mock_get_a_section_only_when_there_were_any(tmp_path: Path) -> None:
    trials = sweep(("none",))[:4]
    clean = build_report(make_run(tmp_path / "clean", trials)).paths
    assert "Faults injected" not in clean.markdown.read_text()
    run_dir = make_run(tmp_path / "faulty", trials)
    lines = (run_dir / "audits.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["audit"]["faults"] = [{"route": "invoice", "kind": "fault-503", "ns": 1},
                                {"route": "get-order", "kind": "429", "ns": 2},
                                {"route": "invoice", "kind": "response-lost", "ns": 3}]
    (run_dir / "audits.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    md = build_report(run_dir).paths.markdown.read_text()
    assert "Faults injected by the mock: 3" in md
    section = md[md.index("Faults injected"):]
    assert "| get-order | 1 | 0 | 0 |" in section and "| invoice | 0 | 1 | 1 |" in section


def test_one_pass_over_audits_tolerates_a_damaged_file(tmp_path: Path) -> None:
    from harness.report.evidence import scan_audits

    change = {"accepted": True, "actedNs": 3_000_000_000, "delayMs": 250, "queueWaitMs": 4}
    path = tmp_path / "audits.jsonl"
    path.write_text("\n".join([
        json.dumps({"trial_id": 1, "audit": {"changes": [change], "faults": [{"route": "invoice", "kind": "429"}]}}),
        "",  # blank: not a line
        json.dumps([1, 2]),  # parsable, not a record
        json.dumps({"trial_id": 2}),  # no audit: still the trial's record
        json.dumps({"trial_id": 2, "audit": {"changes": [{**change, "actedNs": 1_000_000_000, "accepted": False}]}}),
        '{"trial_id": 2, "audit": {"chan',  # cut by a crash
    ]))
    scan = scan_audits(path, 2)
    assert (scan.stats.exists, scan.stats.lines, scan.stats.bad) == (True, 5, 1)
    assert [r.get("audit") for r in scan.trial] == [None, {"changes": [{**change, "actedNs": 1_000_000_000,
                                                                          "accepted": False}]}]
    assert scan.delays == [(0.0, 250.0, 4.0)]  # the refused Change is not drawn
    assert scan.faults == {"invoice": {"429": 1}}
    missing = scan_audits(tmp_path / "none.jsonl", 2)
    assert not missing.stats.exists and missing.trial == [] and missing.delays == [] and missing.faults == {}

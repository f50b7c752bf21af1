"""Timing quality judged per trial: the tolerance, the `late` column, the timing warning and the
concurrency controller (harness.core.timing; docs/model.md, "Timing quality").

Late trials are produced deterministically in simulated mode with a wide `--latency`: the
unguarded trials' server-side offset error is then the difference of two latency draws.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.stats import load_trials
from harness.cli import EXIT_INCONCLUSIVE, EXIT_OK, main
from harness.core.history import RequestEvent
from harness.core.results import TRIALS_SCHEMA_VERSION, integration_result, trial_result
from harness.core.scenario import ScenarioError, load_scenario, parse_scenario
from harness.core.timing import ConcurrencyController, default_tolerance_ms, is_late, scenario_tolerance_ms
from harness.report import build_report

ROOT = Path(__file__).resolve().parent.parent
GUARD_REGRESSION = ROOT / "scenarios" / "guard-regression.toml"
IN_FLIGHT = load_scenario(GUARD_REGRESSION).run.concurrency  # the scenario's trials in flight


def _scenario(**run: Any) -> dict[str, Any]:
    return {
        "name": "timing-test",
        "order": {"items": [{"id": "1", "name": "Shirt", "quantity": 2, "price": 5000}]},
        "change": {"items_removed": [{"id": "1", "quantity": 1}]},
        "sweep": {"offsets_ms": [-100, -40, 0, 30, 200], "trials_per_offset": 1},
        "run": run,
    }


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _sim_run(out: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[Path, str, str]:
    assert main(["run", str(GUARD_REGRESSION), "--simulate", "--no-progress", "--workers", "1", "--out", str(out),
                 *args]) == EXIT_OK
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    captured = capsys.readouterr()
    return run_dir, captured.out, captured.err


# --------------------------------------------------------------------------- the tolerance


@pytest.mark.parametrize(("offsets", "expected"), [
    ([-300, -100, -50, 50, 100, 200, 300], 5.0),  # smallest gap 50 ms: a tenth is 5 ms
    ([-100, -40, 0, 30, 200], 3.0),  # smallest gap 30 ms
    ([0, 10, 20], 1.0),
    ([0.0, 0.5, 100], 0.05),
    ([42], 5.0),  # no gap: the 5 ms cap
])
def test_default_tolerance_is_the_smaller_of_5_ms_and_a_tenth_of_the_smallest_gap(offsets: list[float],
                                                                                   expected: float) -> None:
    assert default_tolerance_ms(offsets) == pytest.approx(expected)


def test_scenario_tolerance_setting_default_and_validation() -> None:
    s = parse_scenario(_scenario(), "t.toml")
    assert s.run.timing_tolerance_ms is None and s.timing_tolerance_ms == pytest.approx(3.0)
    assert "timing_tolerance_ms" not in s.to_dict()["run"]  # the default follows the sweep
    assert scenario_tolerance_ms(s.to_dict()) == pytest.approx(3.0)
    set_ = parse_scenario(_scenario(timing_tolerance_ms=12), "t.toml")
    assert set_.timing_tolerance_ms == 12.0
    assert parse_scenario(set_.to_dict(), "again") == set_
    assert scenario_tolerance_ms(set_.to_dict()) == 12.0
    for bad in (0, -1, "5", True, math.inf):
        with pytest.raises(ScenarioError, match=r"t.toml: run.timing_tolerance_ms: expected a finite number > 0"):
            parse_scenario(_scenario(timing_tolerance_ms=bad), "t.toml")


def test_is_late_is_strictly_above_the_tolerance_and_never_for_unknown_timing() -> None:
    assert not is_late(5.0, 5.0) and not is_late(-5.0, 5.0)
    assert is_late(5.01, 5.0) and is_late(-5.01, 5.0)
    assert not is_late(math.nan, 5.0)


# --------------------------------------------------------------------------- the builders


def _event(kind: str, sent_ns: int, body: Any = None, status: int = 200) -> RequestEvent:
    return RequestEvent(kind=kind, method="POST", path="/x", planned_ns=None, sent_ns=sent_ns,
                        response_ns=sent_ns + 1_000_000, status=status, response_body=body)


def _audit(change_acted_ns: int, invoice_acted_ns: int | None) -> dict[str, Any]:
    invoices = [] if invoice_acted_ns is None else [{"invoiceNumber": "NF-1", "accepted": False,
                                                     "actedNs": invoice_acted_ns, "invoiceValue": 9000,
                                                     "status": 409}]
    return {"verdict": "clean", "finalValue": 5000, "invoicedTotal": 0, "invoices": invoices,
            "changes": [{"accepted": True, "delayMs": 100.0, "actedNs": change_acted_ns,
                         "finishedNs": change_acted_ns + 100_000_000}],
            "hooks": [{"state": "handling", "sentNs": 1_000_000_000}]}


def _core(guard: str, audit: dict[str, Any] | None, change_sent_ns: int, tolerance_ms: float,
          offset_ms: float = 50.0) -> Any:
    t0 = 1_000_000_000
    change = _event("change", change_sent_ns, {"totalChangeValue": -5000, "delayMs": 100.0})
    invoice = _event("invoice", t0 + 50_000_000, status=409)
    setup = [_event("create_order", t0 - 300_000_000), _event("start_handling", t0 - 250_000_000),
             _event("get_order", t0 - 200_000_000)]
    if offset_ms < 0:  # the invoice side's first step: read the value at t0 + offset (on time)
        setup.append(_event("get_order", t0 + round(offset_ms * 1e6)))
    return trial_result(trial_id=0, seq=0, guard=guard, offset_ms=offset_ms, order_id="1-01",
                        initial_value=10000, change=change, invoice=invoice, events=[*setup, change, invoice], invoice_value=10000, invoice_number="NF-1", guard_error="",
                        planned_delay_ms=100.0, t0_ns=t0, audit=audit, duration_ms=1.0, tolerance_ms=tolerance_ms)


def test_unguarded_trial_is_late_by_its_server_side_offset_error() -> None:
    t0 = 1_000_000_000
    audit = _audit(change_acted_ns=t0 + 1_000_000, invoice_acted_ns=t0 + 59_000_000)  # server error 8 ms
    assert _core("none", audit, t0, 5.0).late
    assert not _core("none", audit, t0, 8.5).late
    # No audit times (server clock unknown): the client-side offset error decides (0 ms here).
    assert not _core("none", None, t0, 5.0).late


def test_guarded_trial_is_late_by_its_first_request_after_setup() -> None:
    t0 = 1_000_000_000
    audit = _audit(change_acted_ns=t0 + 1_000_000, invoice_acted_ns=t0 + 200_000_000)  # the guard waited
    on_time = _core("finished-check", audit, t0 + 2_000_000, 5.0)
    assert not on_time.late and math.isnan(on_time.server_offset_error_ms)
    assert _core("finished-check", audit, t0 + 7_000_000, 5.0).late  # the Change, first out, left 7 ms late
    # serialized, offset -80: the invoice side reads the value on time at t0 - 80 ms and holds the
    # lock; the Change waits for it by design (sent 150 ms after t0) and the trial is on time.
    assert not _core("serialized", audit, t0 + 150_000_000, 5.0, offset_ms=-80.0).late


def test_integration_trial_is_late_by_change_acted_minus_hook_sent() -> None:
    t_hook = 1_000_000_000
    change = _event("change", t_hook + 30_000_000)
    audit = _audit(change_acted_ns=t_hook + 37_000_000, invoice_acted_ns=t_hook + 80_000_000)
    row = integration_result(trial_id=0, seq=0, guard="svc", offset_ms=30.0, order_id="1-01", initial_value=10000,
                             change=change, audit=audit, t0_ns=t_hook, duration_ms=1.0, tolerance_ms=5.0)
    assert row.server_offset_error_ms == pytest.approx(7.0) and row.late
    relaxed = integration_result(trial_id=0, seq=0, guard="svc", offset_ms=30.0, order_id="1-01",
                                 initial_value=10000, change=change, audit=audit, t0_ns=t_hook, duration_ms=1.0,
                                 tolerance_ms=10.0)
    assert not relaxed.late


# --------------------------------------------------------------------------- the concurrency controller


def test_controller_halves_on_late_trials_then_recovers_within_bounds() -> None:
    c = ConcurrencyController(16, window=8, late_to_decrease=2)
    assert all(c.observe(False) == 16 for _ in range(100))  # quiet at the maximum: never above it
    assert c.observe(True) == 16  # one late trial is not a trend
    assert c.observe(True) == 8
    # The 16 trials started under the old limit do not count against the new one.
    assert all(c.observe(True) == 8 for _ in range(16))
    limits = [c.observe(True) for _ in range(200)]
    assert limits[-1] == 1 and min(limits) == 1 and c.lowest == 1  # never below 1
    assert limits == sorted(limits, reverse=True)
    # Quiet again: +1 per window of quiet completions, up to the maximum and no further.
    recovered = [c.observe(False) for _ in range(8 * 15)]
    assert recovered[7] == 2 and recovered[-1] == 16 and max(recovered) == 16
    assert all(b - a in (0, 1) for a, b in zip(recovered, recovered[1:]))
    assert all(c.observe(False) == 16 for _ in range(50))
    assert c.lowest == 1


def test_controller_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError):
        ConcurrencyController(0)
    with pytest.raises(ValueError):
        ConcurrencyController(4, window=4, late_to_decrease=5)


# --------------------------------------------------------------------------- runs


def test_wide_latency_gives_late_trials_the_warning_and_a_lower_concurrency(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, out, err = _sim_run(tmp_path, capsys, "--trials", "10", "--latency", "uniform:0,40")
    rows = _rows(run_dir)
    late = [r for r in rows if r["late"] == "True"]
    assert late and all(r["late"] in ("True", "False") for r in rows)
    for r in rows:
        if r["guard"] == "none":  # the guarded trials' Change goes out on time on the virtual clock
            assert (r["late"] == "True") == (abs(float(r["server_offset_error_ms"])) > 5.0)
    summary = json.loads((run_dir / "summary.json").read_text())
    timing = summary["timing"]
    assert timing["late"] == len(late) and timing["tolerance_ms"] == 5.0 and timing["trials"] == len(rows)
    assert timing["server_abs_error_p99_ms"] > 5.0
    line = (f"timing degraded: {len(late)} of {len(rows)} trials late, server-side p99 "
            f"{timing['server_abs_error_p99_ms']:.0f} ms > 5 ms tolerance")
    assert timing["warning"] == line and line in summary["warnings"]
    assert f"warning: {line}" in err
    report = (run_dir / "report.md").read_text()
    assert f"> {line.replace('>', '&gt;')}" in report and f"| late trials (not judged) | {len(late)} of" in report
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["trials_schema_version"] == TRIALS_SCHEMA_VERSION == 3
    conc = meta["timing"]["concurrency"]
    assert conc == timing["concurrency"] and conc["max"] == IN_FLIGHT
    assert 1 <= conc["lowest"] < conc["max"] and conc["lowest"] <= conc["settled"] <= conc["max"]
    assert f"concurrency: settled at {conc['settled']} of {IN_FLIGHT} trials in flight" in out


def test_late_trials_make_the_gate_inconclusive_not_a_pass(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Late trials are not judged: above 5% of a guard's trials the verdict is INCONCLUSIVE (exit 3)
    even though every threshold passes on the judged trials."""
    text = GUARD_REGRESSION.read_text(encoding="utf-8")
    text = text[:text.index("[[thresholds]]")] + (
        '[[thresholds]]\nguard = "serialized"\nmax_upper = 0.5\nmin_abs_offset_ms = 50\n')
    scenario = tmp_path / "late.toml"
    scenario.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["check", str(scenario), "--simulate", "--no-progress", "--workers", "1", "--out", str(out),
               "--trials", "10", "--max-trials", "210", "--latency", "uniform:0,40"])
    err = capsys.readouterr().err
    assert rc == EXIT_INCONCLUSIVE, err
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    gate = json.loads((run_dir / "summary.json").read_text())["gate"]
    assert gate["verdict"] == "inconclusive"
    assert [t["verdict"] for t in gate["thresholds"]] == ["pass"]
    late_none = sum(r["late"] == "True" for r in _rows(run_dir) if r["guard"] == "none")
    assert gate["outcomes"]["none"]["not_judged"] >= late_none > 0
    assert any(r.startswith("INCONCLUSIVE none: ") and "not judged" in r for r in gate["reasons"]), gate["reasons"]


def test_quiet_run_has_no_late_trial_and_keeps_its_concurrency(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, out, err = _sim_run(tmp_path, capsys, "--trials", "4")
    assert {r["late"] for r in _rows(run_dir)} == {"False"}
    timing = json.loads((run_dir / "summary.json").read_text())["timing"]
    assert timing["late"] == 0 and timing["warning"] is None
    assert timing["concurrency"] == {"max": IN_FLIGHT, "settled": IN_FLIGHT, "lowest": IN_FLIGHT}
    assert "timing degraded" not in out + err
    assert f"concurrency: settled at {IN_FLIGHT} of {IN_FLIGHT} trials in flight\n" in out


def test_a_run_from_before_the_late_column_still_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _, _ = _sim_run(tmp_path, capsys, "--trials", "1")
    rows = _rows(run_dir)
    columns = [c for c in rows[0] if c != "late"]
    with (run_dir / "trials.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["trials_schema_version"] = 2
    del meta["timing"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    df = load_trials(run_dir)
    assert len(df) == len(rows) and df["late"].dtype == bool and not df["late"].any()
    timing = build_report(run_dir).summary["timing"]
    assert timing["late"] == 0 and timing["tolerance_ms"] == 5.0 and timing["concurrency"] is None

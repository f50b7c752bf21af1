"""`race-harness trend`: runs in time order, labelled by commit, regressions found and highlighted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.cli import main
from harness.report.trend import build_trend
from harness.runfolder import RUN_SCHEMA_VERSION


def _guard(races: int, trials: int, low: float, high: float) -> dict[str, Any]:
    return {"races": races, "trials": trials, "rate": races / trials, "ci_low": low, "ci_high": high}


def _run(parent: Path, name: str, started: str, describe: str | None, verdict: str, fc_races: int,
         late: int) -> Path:
    d = parent / name
    d.mkdir(parents=True)
    meta: dict[str, Any] = {"schema_version": RUN_SCHEMA_VERSION, "started_at": started}
    if describe:
        meta["git"] = {"describe": describe}
    (d / "run.json").write_text(json.dumps(meta))
    summary = {
        "scenario": "guard-regression",
        "guards": {"none": _guard(30, 100, 0.22, 0.4), "finished-check": _guard(fc_races, 100, 0.0, 0.037 + fc_races / 100)},
        "gate": {"verdict": verdict, "thresholds": [
            {"threshold": "finished-check: race rate <= 0.05", "guard": "finished-check", "max_upper": 0.05,
             "min_lower": None, "verdict": verdict, "races": fc_races, "trials": 100,
             "bins": [{"offset_ms": -100.0, "races": fc_races, "trials": 50, "lower": 0.0, "upper": 0.04 + fc_races / 50}]}]},
        "timing": {"late": late, "trials": 200, "server_abs_error_p99_ms": 0.5 if not late else 30.0,
                   "tolerance_ms": 5.0, "warning": f"timing degraded: {late} of 200 trials late" if late else None},
    }
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_trend_orders_runs_labels_by_commit_and_flags_regressions(tmp_path: Path) -> None:
    runs = tmp_path / "artifacts"
    _run(runs, "b", "2026-01-02T00:00:00+00:00", "v1.1-3-gabc1234", "fail", 20, late=7)
    _run(runs, "a", "2026-01-01T00:00:00+00:00", "v1.1", "pass", 0, late=0)
    _run(runs, "c", "2026-01-03T00:00:00+00:00", None, "fail", 20, late=7)
    trend = build_trend([runs], tmp_path / "out", label="nightly")
    assert [r.label for r in trend.runs] == ["v1.1", "v1.1-3-gabc1234", "nightly"]
    assert any("gate PASS -> FAIL" in r for r in trend.regressions)
    assert any("finished-check: race rate 0.200 above the previous run's 95% upper bound 0.037" in r
               for r in trend.regressions)
    assert any("timing degraded: 7 of 200 trials late" in r for r in trend.regressions)
    assert all(r.startswith("v1.1-3-gabc1234: ") for r in trend.regressions)  # the third run did not get worse
    page = trend.html.read_text()
    assert page.count('class="regressed"') >= 2 and "Regression at v1.1-3-gabc1234" in page
    assert trend.png.exists() and (tmp_path / "out" / "trend@2x.png").exists()


def test_trend_cli(tmp_path: Path, capsys: Any) -> None:
    a = _run(tmp_path, "a", "2026-01-01T00:00:00+00:00", "v1", "pass", 0, late=0)
    b = _run(tmp_path, "b", "2026-01-02T00:00:00+00:00", "v2", "pass", 0, late=0)
    assert main(["trend", str(a), str(b), "--out", str(tmp_path / "t")]) == 0
    assert "trend: " in capsys.readouterr().out and (tmp_path / "t" / "trend.html").exists()
    assert main(["trend", str(tmp_path / "nothing-here")]) == 2

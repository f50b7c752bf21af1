"""Integration mode end to end: the reference connector as real processes on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.core.scenario import load_scenario
from harness.errors import ScenarioError
from mock_orders_api import child_env
from mock_orders_api.config import MockConfig
from mock_orders_api.server import MockProcess

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "integration-reference.toml"


def _trials(out: Path) -> pd.DataFrame:
    [run_dir] = list(out.iterdir())
    return pd.read_csv(run_dir / "trials.csv")


def test_reference_scenario_naive_races_guarded_does_not(tmp_path: Path) -> None:
    assert main(["run", str(SCENARIO), "--trials", "3", "--out", str(tmp_path), "--no-progress"]) == 0
    df = _trials(tmp_path)
    scenario = load_scenario(SCENARIO)
    assert len(df) == len(scenario.sweep.offsets_ms) * 3 * 2
    assert (df["agree"]).all(), df.loc[~df["agree"], "disagreement"].tolist()
    window = df[df["offset_ms"].abs() >= 50]
    guarded, naive = window[window.guard == "guarded"], window[window.guard == "naive"]
    assert not (guarded.outcome == "race").any()
    # The Change is still processing when the hook arrives (shortest delay 200 ms > 150 ms): naive races.
    near = naive[naive.offset_ms.isin([-150.0, -50.0]) & ~naive.late]
    assert (near.outcome == "race").all()
    # A Change after the naive invoice finds the order invoiced.
    assert (naive[naive.offset_ms > 0].outcome == "change_refused").all()
    # Every handling hook was delivered and the Change went out at its offset from it.
    assert df.hook_sent_ms.notna().all()
    # A Change sent off its offset (a busy machine) is the harness's to notice: flagged late, not judged.
    assert ((df.server_offset_error_ms.abs() < 50) | df.late).all()


def test_hook_url_flag_drives_an_already_running_integration(tmp_path: Path) -> None:
    """A team's own service, started by them: only its hook URL is given to the harness."""
    with MockProcess(MockConfig()) as mock:
        conn = subprocess.Popen(
            [sys.executable, "-m", "harness.connectors.erp_connector", "--mode", "guarded", "--port", "0",
             "--api-url", mock.url, "--log-level", "WARNING"],
            stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            assert conn.stdout is not None
            line = conn.stdout.readline()  # the connector prints its address once it listens
            assert line.startswith("listening on "), line
            hook_url = line.split()[-1] + "/hook"
            code = main(["run", str(SCENARIO), "--trials", "1", "--target-url", mock.url, "--hook-url", hook_url,
                         "--out", str(tmp_path), "--no-progress"])
        finally:
            conn.terminate()
            conn.wait(timeout=10)
    assert code == 0
    df = _trials(tmp_path)
    assert set(df.guard) == {"integration"}
    # "No race" means the guarded connector invoiced every order and stayed consistent, not that it
    # did nothing: a service that never invoices gives no_invoice, which the gate fails (below).
    assert set(df.outcome) <= {"clean", "invoice_refused", "change_refused"}, df.outcome.tolist()
    [run_dir] = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert sum(summary["gate"]["outcomes"]["integration"].values()) == len(df)
    assert summary["gate"]["outcomes"]["integration"]["failed"] == 0
    # --hook-url keeps the scenario's race bound for the service: 1 trial per offset cannot prove
    # a rate <= 0.1, so the honest verdict is INCONCLUSIVE (not a pass by default).
    assert [t["guard"] for t in summary["gate"]["thresholds"]] == ["integration"]
    assert summary["gate"]["verdict"] == "inconclusive"


# Accepts every hook (200) and never invoices: the integration failing its own job.
_IDLE_SERVICE = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
srv.serve_forever()
"""


def test_an_integration_that_never_invoices_fails_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with MockProcess(MockConfig()) as mock:
        svc = subprocess.Popen([sys.executable, "-c", _IDLE_SERVICE], stdout=subprocess.PIPE, text=True,
                               env=child_env())
        try:
            assert svc.stdout is not None
            line = svc.stdout.readline()
            assert line.startswith("listening on "), line
            code = main(["check", str(SCENARIO), "--trials", "1", "--target-url", mock.url,
                         "--hook-url", line.split()[-1] + "/hook", "--out", str(tmp_path), "--no-progress"])
        finally:
            svc.terminate()
            svc.wait(timeout=10)
    out = capsys.readouterr()
    assert code == 1, out.err
    df = _trials(tmp_path)
    assert len(df) > 0 and (df.outcome == "no_invoice").all()
    [run_dir] = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["gate"]["verdict"] == "fail"
    counts = summary["gate"]["outcomes"]["integration"]
    # A late trial (timing missed under load) is not judged, whatever it observed.
    assert counts["race"] == counts["no_race"] == 0 and counts["not_judged"] == int(df.late.sum())
    assert f"FAIL integration: {counts['failed']} of {len(df)} trials failed their own job" in out.out
    assert "gate: FAIL" in out.err


def test_hook_delay_must_cover_negative_offsets(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.read_text().replace("hook_delay_ms = 600", "hook_delay_ms = 100"))
    with pytest.raises(ScenarioError, match="hook_delay_ms"):
        load_scenario(bad)


SERVICE = ROOT / "tests" / "integration_service.py"


def _check_service(kind: str, tmp_path: Path, trials: int, *extra: str) -> tuple[int, pd.DataFrame, dict, str]:
    """`check --hook-url` against tests/integration_service.py of this kind, as a child process."""
    with MockProcess(MockConfig()) as mock:
        svc = subprocess.Popen([sys.executable, str(SERVICE), "--kind", kind, "--api-url", mock.url],
                               stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            assert svc.stdout is not None
            line = svc.stdout.readline()
            assert line.startswith("listening on "), line
            code = main(["check", str(SCENARIO), "--trials", str(trials), "--target-url", mock.url,
                         "--hook-url", line.split()[-1] + "/hook", "--out", str(tmp_path), "--no-progress", *extra])
        finally:
            svc.terminate()
            svc.wait(timeout=10)
    [run_dir] = list(tmp_path.iterdir())
    return code, _trials(tmp_path), json.loads((run_dir / "summary.json").read_text()), str(run_dir)


def test_hook_url_judges_a_naive_service_by_the_scenarios_race_bound(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The README's command against a racing service: FAIL, not the pass it got with no thresholds."""
    code, df, summary, _ = _check_service("naive", tmp_path, 3)
    assert code == 1
    assert (df[df.offset_ms.isin([-150.0, -50.0])].outcome == "race").all()
    assert summary["gate"]["verdict"] == "fail"
    failed = [t for t in summary["gate"]["thresholds"] if t["verdict"] == "fail"]
    assert failed and failed[0]["guard"] == "integration" and failed[0]["max_upper"] == 0.1
    assert "integration     hooks: " in capsys.readouterr().out


@pytest.mark.parametrize("kind, outcome, shown", [
    ("error500", "hook_failed", "0 accepted (200)"),
    ("double", "extra_invoice", "x HTTP 400"),
])
def test_a_service_failing_its_job_fails_the_gate(kind: str, outcome: str, shown: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, df, summary, _ = _check_service(kind, tmp_path, 1)
    out = capsys.readouterr().out
    assert code == 1
    if kind == "double":  # a race (naive value read at the hook) is still a race; the rest are extra invoices
        assert set(df.outcome) <= {"race", outcome} and (df.outcome == outcome).any(), df.outcome.tolist()
    else:
        assert (df.outcome == outcome).all(), df.outcome.tolist()
    assert summary["gate"]["outcomes"]["integration"]["failed"] == ((df.outcome == outcome) & ~df.late).sum()
    assert shown in out, out


@pytest.mark.parametrize("kind, extra_invoices", [("naive", True), ("dedup", False)])
def test_duplicate_hooks_catch_a_service_that_does_not_deduplicate(kind: str, extra_invoices: bool,
                                                                   tmp_path: Path) -> None:
    """The seeded delivery plan sends every hook twice (VTEX: at-least-once); a service that invoices
    per delivery sends extra invoices (failures), one that deduplicates does not."""
    scenario = tmp_path / "dup.toml"
    scenario.write_text(SCENARIO.read_text().replace("invoice_wait_ms = 5000", "invoice_wait_ms = 5000\n"
                                                     "duplicate_rate = 1.0\nextra_delay_ms = 20"))
    out = tmp_path / "out"
    with MockProcess(MockConfig()) as mock:
        svc = subprocess.Popen([sys.executable, str(SERVICE), "--kind", kind, "--api-url", mock.url],
                               stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            assert svc.stdout is not None
            line = svc.stdout.readline()
            main(["run", str(scenario), "--trials", "1", "--target-url", mock.url, "--hook-url",
                  line.split()[-1] + "/hook", "--out", str(out), "--no-progress"])
        finally:
            svc.terminate()
            svc.wait(timeout=10)
    [run_dir] = list(out.iterdir())
    df = pd.read_csv(run_dir / "trials.csv")
    hooks = json.loads((run_dir / "summary.json").read_text())["hooks"]["services"]["integration"]
    assert hooks["duplicates"] == len(df)  # every trigger hook's copy was sent before the trial was judged
    positive = df[df.offset_ms > 0]
    assert ((positive.outcome == "extra_invoice").all() if extra_invoices
            else not (df.outcome == "extra_invoice").any()), df.outcome.tolist()
    assert bool(hooks["extra_invoices"]) == extra_invoices

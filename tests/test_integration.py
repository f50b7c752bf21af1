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
    near = naive[naive.offset_ms.isin([-150.0, -50.0])]
    assert (near.outcome == "race").all()
    # A Change after the naive invoice finds the order invoiced.
    assert (naive[naive.offset_ms > 0].outcome == "change_refused").all()
    # Every handling hook was delivered and the Change went out at its offset from it.
    assert df.hook_sent_ms.notna().all()
    assert (df.server_offset_error_ms.abs() < 50).all()


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
    assert not (df.outcome == "race").any()
    [run_dir] = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["guards"]["integration"]["trials"] == len(df)


def test_hook_delay_must_cover_negative_offsets(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.read_text().replace("hook_delay_ms = 600", "hook_delay_ms = 100"))
    with pytest.raises(ScenarioError, match="hook_delay_ms"):
        load_scenario(bad)

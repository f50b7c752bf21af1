"""Integration mode over Orders Feed v3, end to end: the reference connector reading the feed as real
child processes on loopback (a naive reader races, a guarded one does not), and `--feed` against a
team's already-running reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.core.scenario import load_scenario, parse_scenario
from harness.errors import RaceHarnessError, ScenarioError
from mock_orders_api import child_env
from mock_orders_api.config import MockConfig
from mock_orders_api.server import MockProcess

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "integration-feed.toml"


def _run_dir(out: Path) -> Path:
    [run_dir] = list(out.iterdir())
    return run_dir


def test_feed_scenario_naive_reader_races_guarded_does_not(tmp_path: Path) -> None:
    code = main(["run", str(SCENARIO), "--trials", "3", "--out", str(tmp_path), "--no-progress"])
    assert code == 0  # `run` reports; `check` gates
    run_dir = _run_dir(tmp_path)
    df = pd.read_csv(run_dir / "trials.csv")
    judged = df[~df.late]
    naive, guarded = judged[judged.guard == "naive"], judged[judged.guard == "guarded"]
    # The Change is still processing when the event becomes visible: the naive reader invoices too much.
    assert (naive[naive.offset_ms < 0].outcome == "race").sum() > 0
    # The guarded reader races only inside its reaction time after the event became visible (a Change
    # sent after it looked at the Changes): never when the Change came first, nor 150 ms later.
    safe = guarded[(guarded.offset_ms < 0) | (guarded.offset_ms >= 150)]
    assert set(safe.outcome) <= {"clean", "change_refused"}, safe.outcome.tolist()
    # The trigger is the handling event's visibility in the feed, known ahead from the pinned delay.
    assert df.hook_sent_ms.notna().all() and (df.hook_sent_ms.abs() < 50).all()
    summary = json.loads((run_dir / "summary.json").read_text())
    for name in ("naive", "guarded"):
        feed = summary["hooks"]["services"][name]["feed"]
        assert feed["events"] >= len(df[df.guard == name]) and feed["committed"] == feed["reads"], feed
    assert summary["gate"]["outcomes"]["guarded"]["failed"] == 0


def test_feed_flag_drives_an_already_running_reader(tmp_path: Path) -> None:
    """A team's own feed reader, started by them against their mock: no hook URL at all."""
    with MockProcess(MockConfig()) as mock:
        reader = subprocess.Popen(
            [sys.executable, "-m", "harness.connectors.erp_connector", "--source", "feed", "--feed-poll-ms", "20",
             "--mode", "guarded", "--port", "0", "--api-url", mock.url, "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, env=child_env())
        try:
            code = main(["run", str(SCENARIO), "--trials", "1", "--target-url", mock.url, "--feed",
                         "--out", str(tmp_path), "--no-progress"])
        finally:
            reader.terminate()
            reader.wait(timeout=10)
    assert code == 0
    run_dir = _run_dir(tmp_path)
    df = pd.read_csv(run_dir / "trials.csv")
    assert set(df.guard) == {"integration"}
    safe = df[~df.late & ((df.offset_ms < 0) | (df.offset_ms >= 150))]  # outside its reaction time (above)
    assert set(safe.outcome) <= {"clean", "change_refused"}, safe.outcome.tolist()
    summary = json.loads((run_dir / "summary.json").read_text())
    # --feed keeps the scenario's race bound for the service: 1 trial per offset cannot prove a rate
    # <= 0.1, so the honest verdict is INCONCLUSIVE (not a pass by default).
    assert [t["guard"] for t in summary["gate"]["thresholds"]] == ["integration"]
    assert summary["gate"]["outcomes"]["integration"]["failed"] == 0
    assert summary["gate"]["verdict"] == "inconclusive"


def test_feed_flag_needs_target_url_and_excludes_hook_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(SCENARIO), "--feed", "--no-progress"]) == 2
    assert "--target-url" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(SCENARIO), "--feed", "--hook-url", "http://127.0.0.1:1/hook"])
    with pytest.raises(RaceHarnessError, match="exclusive"):
        load_scenario(SCENARIO).with_overrides(hook_url="http://127.0.0.1:1/hook", feed=True)


@pytest.mark.parametrize(("patch", "mentions"), [
    ({"delivery": "mail"}, "target.integration.delivery"),
    ({"services": [{"name": "a", "hook_url": "http://127.0.0.1:1/hook"}]}, "no hook_url with delivery"),
    ({"headers": {"X-Secret": "s"}}, "no hook headers with delivery"),
])
def test_feed_delivery_is_validated_with_clear_errors(patch: dict, mentions: str) -> None:
    data = load_scenario(SCENARIO).to_dict()
    data["target"]["integration"].update(patch)
    with pytest.raises(ScenarioError, match=mentions):
        parse_scenario(data, "feed.toml")

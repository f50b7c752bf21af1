"""reproduce.sh and test_reproduce.py of a run folder replay its evidence trial against a real mock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.report import build_report
from harness.report.reproducer import REPRODUCE_SH, TEST_REPRODUCE
from harness.sim.run import run_simulated
from harness.core.scenario import load_scenario
from mock_orders_api.config import MockConfig
from mock_orders_api.server import MockProcess

# A Change of 600 ms and invoices 150 ms after it: 450 ms of margin, so the replay races however
# late curl or the test machine is.
SCENARIO = """
name = "reproducer-test"
seed = 7
[target]
kind = "embedded"
[mock]
policy = "vulnerable"
change_delay = "fixed:600"
settle_ms = 0
pin_delays = true
[order]
items = [{ id = "1", name = "Shirt", quantity = 2, price = 5000 }, { id = "2", name = "Shoes", quantity = 1, price = 12000 }]
shipping = 1000
[change]
items_removed = [{ id = "1", quantity = 1 }]
[sweep]
offsets_ms = [-300, 150]
trials_per_offset = 2
[guards]
names = ["none"]
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reproducer")
    (tmp / "s.toml").write_text(SCENARIO, encoding="utf-8")
    run_dir, _ = run_simulated(load_scenario(str(tmp / "s.toml")), tmp / "runs", workers=1)
    build_report(run_dir)
    return run_dir


def _env() -> dict[str, str]:
    # The child pytest imports this checkout (PYTHONPATH) and its plugin, not an installed copy.
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_reproduce_sh_races_against_a_mock(run_dir: Path) -> None:
    script = (run_dir / REPRODUCE_SH).read_text()
    assert "X-Mock-Change-Delay-Ms: 600.000" in script and "at 150000" in script
    with MockProcess(MockConfig()) as mock:
        done = subprocess.run(["bash", str(run_dir / REPRODUCE_SH), mock.url], capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"verdict":"race"' in done.stdout.replace(" ", "") and "RACE reproduced" in done.stderr


def test_test_reproduce_py_passes_with_the_race_mock_fixture(run_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST_REPRODUCE],
                          cwd=run_dir, capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_no_reproducer_without_a_race(tmp_path: Path, run_dir: Path) -> None:
    """A strict mock: no evidence trial, so no reproducer (and none left over from an earlier build)."""
    (tmp_path / "s.toml").write_text(SCENARIO.replace('"vulnerable"', '"strict"'), encoding="utf-8")
    strict_dir, _ = run_simulated(load_scenario(str(tmp_path / "s.toml")), tmp_path / "runs", workers=1)
    (strict_dir / REPRODUCE_SH).write_text("stale")
    build_report(strict_dir)
    assert not (strict_dir / REPRODUCE_SH).exists() and not (strict_dir / TEST_REPRODUCE).exists()

"""Built-in scenarios by name: from any working directory, in a source checkout and in an installed wheel.

The wheel test is the packaging check: it builds the project's wheel, installs it into a fresh
virtual environment (no dependencies: the venv sees this interpreter's site-packages) and runs
the console script from an empty directory, so `scenarios/*.toml` must really ship as package data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.builtin_scenarios import DEFAULT_SCENARIO, builtin_names, builtin_purposes, find_scenario
from harness.errors import ScenarioError
from harness.core.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml"))


def _env(pythonpath: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def test_every_shipped_toml_is_a_builtin_with_a_purpose() -> None:
    assert builtin_names() == SHIPPED
    assert DEFAULT_SCENARIO in SHIPPED
    purposes = dict(builtin_purposes())
    assert sorted(purposes) == SHIPPED
    assert all(purposes.values()), purposes


@pytest.mark.parametrize("ref", ["guard-regression", "guard-regression.toml"])
def test_a_name_finds_the_shipped_file(ref: str) -> None:
    assert find_scenario(ref).resolve() == (ROOT / "scenarios" / "guard-regression.toml").resolve()
    assert load_scenario(ref).name == "guard-regression"


def test_an_existing_path_wins_over_a_builtin_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "guard-regression.toml"
    own.write_text('name = "mine"\n[guards]\nnames = ["none"]\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert find_scenario("guard-regression.toml") == Path("guard-regression.toml")


def test_an_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario("ticket-134889")
    assert "ticket-134889" in str(err.value)
    for name in SHIPPED:
        assert name in str(err.value)


def test_cli_runs_a_builtin_by_name_from_another_directory(tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "harness.cli", "scenarios"], cwd=tmp_path, env=_env(str(ROOT)),
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == SHIPPED
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", "strict-policy", "--simulate", "--trials", "1",
                          "--workers", "1", "--no-progress"], cwd=tmp_path, env=_env(str(ROOT)),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert list((tmp_path / "reports").glob("strict-policy-*/summary.json"))


@pytest.mark.packaging
def test_wheel_install_finds_builtins_by_name(tmp_path: Path) -> None:
    """Build the wheel from a copy of the tree, install it into a fresh venv, run from an empty dir (~15 s)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "reports", "build", "dist", "*.egg-info",
                                                               "__pycache__", ".pytest_cache", ".venv"))
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                           env=_env(None), capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "Could not find a version" in build.stderr + build.stdout:
        pytest.skip(f"no build backend reachable: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(bindir / "python"), "install", "-q",
                              "--no-deps", "--no-index", "--force-reinstall", *map(str, wheels.glob("*.whl"))],
                             env=_env(None), capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(bindir / "python"), "-c", "from harness.builtin_scenarios import find_scenario; "
                            "print(find_scenario('ticket-1348894'))"],
                           cwd=work, env=_env(None), capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the wheel's copy, not this tree's
    listed = subprocess.run([str(bindir / "race-harness"), "scenarios"], cwd=work, env=_env(None),
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == SHIPPED
    run = subprocess.run([str(bindir / "race-harness"), "run", "guard-regression", "--simulate", "--trials", "1",
                          "--workers", "1", "--no-progress"], cwd=work, env=_env(None),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert list((work / "reports").glob("guard-regression-*/summary.json"))

"""pytest plugin (entry point `race_harness`): the mock and integration runs as fixtures.

For a team's own test suite (the README's example)::

    def test_guarded_connector_does_not_race(run_integration_scenario):
        summary = run_integration_scenario("integration-reference", services=["guarded"],
                                           offsets_ms=[-300, 300], trials=56)
        summary.assert_passed()   # AssertionError names the threshold, its worst bin and bound

Fixtures:
- `race_mock`: a running mock Orders API (child process, free loopback port),
  reset before each test: `.url`, `.set_policy()`, `.set_delay()`,
  `.set_settle_ms()`, `.create_order()`, `.audit()`, `.verdicts()`, `.admin()`.
  Its `.url` is known before your service starts: point the service at it, then pass
  `target_url=race_mock.url` (and the service's `hook_url=`) to `run_integration_scenario`.
- `run_integration_scenario(scenario, *, services=None, target_url=None, hook_url=None,
  feed=False, trials=None, seed=None, offsets_ms=None)`: runs a scenario (a built-in scenario's name or a TOML path) into
  `tmp_path` as `race-harness check` does (rounds that stop once the gate decides) and returns a
  `RunSummary`. Without `target_url` the run has its own embedded mock
  and starts each service from the scenario's `command` (`{api_url}` = that mock); with
  `hook_url` (or `feed=True`: it reads the mock's Feed v3) one already-running service named
  "integration" is judged by the scenario's race bounds (harness.core.scenario.integration_thresholds). `services` keeps only the named
  services; `offsets_ms` replaces the sweep's offsets (fewer bins, fewer trials). Call it from synchronous tests (it runs its own event loop).

- `race_scorecard(*, target_url, hook_url, hazards=None, trials=None) -> Scorecard`: runs
  `race-harness scorecard` against your running service into `tmp_path`;
  `.assert_survived()` fails listing every hazard it did not survive (docs/hazards/README.md)::

      def test_survives_the_hazards(race_mock, race_scorecard):
          card = race_scorecard(target_url=race_mock.url, hook_url="http://127.0.0.1:9000/hook")
          card.assert_survived()

How many trials: the gate decides each offset bin on its own (docs/model.md). With no race,
a bin proves "rate <= 0.1" after 56 trials, "<= 0.25" after 20, "<= 0.5" after 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx
import pytest

from harness.errors import TargetError
from mock_orders_api.config import MockConfig
from mock_orders_api.server import MockProcess

_TIMEOUT_S = 10.0


@dataclass
class RunSummary:
    """A finished run: `summary.json` with helpers for assertions."""

    run_dir: Path
    data: dict[str, Any]

    def _guard(self, name: str) -> dict[str, Any]:
        try:
            return self.data["guards"][name]
        except KeyError:
            raise KeyError(f"no trials for {name!r} in {self.run_dir}; have {sorted(self.data['guards'])}") from None

    def races(self, name: str) -> int:
        return int(self._guard(name)["races"])

    def trials(self, name: str) -> int:
        return int(self._guard(name)["trials"])

    def race_rate(self, name: str) -> float:
        return float(self._guard(name)["rate"])

    def race_rate_upper(self, name: str, window: bool = True) -> float:
        """95% Wilson upper bound of the race rate; over |offset| >= 50 ms unless `window=False`."""
        g = self._guard(name)
        return float((g["window"] if window else g)["ci_high"])

    def outcomes(self, name: str) -> dict[str, int]:
        return dict(self._guard(name)["outcomes"])

    @property
    def gate_verdict(self) -> str:
        """"pass", "fail" or "inconclusive" (summary.json `gate.verdict`)."""
        return str(self.data["gate"]["verdict"])

    @property
    def gate_passed(self) -> bool:
        return self.gate_verdict == "pass"

    def hooks(self, name: str) -> dict[str, Any]:
        """Integration mode: hook deliveries and extra invoices of one service (summary.json `hooks.services`)."""
        return dict(((self.data.get("hooks") or {}).get("services") or {}).get(name) or {})

    def assert_passed(self) -> None:
        """AssertionError unless the gate passed, naming every threshold or accounting check that
        did not (its verdict, worst bin, bound against the limit) and the run folder."""
        gate = self.data["gate"]
        if gate["verdict"] == "pass":
            return
        lines = [f"{t['threshold']}: {t['reason']}" for t in gate["thresholds"]
                 if t["verdict"] != "pass"] + list(gate.get("reasons") or [])
        raise AssertionError(f"gate {gate['verdict'].upper()} ({self.run_dir}):\n  " + "\n  ".join(lines))


class MockHandle:
    """A running mock and its admin API (synchronous, every call with a timeout)."""

    def __init__(self, url: str, admin_token: str | None = None) -> None:
        self.url = url
        headers = {"X-Mock-Admin-Token": admin_token} if admin_token else {}
        self._http = httpx.Client(base_url=url, timeout=_TIMEOUT_S, headers=headers)

    def close(self) -> None:
        self._http.close()

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        r = self._http.request(method, f"/_mock{path}", json=json)
        if r.status_code >= 400:
            raise TargetError(f"mock admin {method} /_mock{path}: HTTP {r.status_code}: {r.text}")
        return r.json() if r.content else None

    def reset(self) -> None:
        self.admin("POST", "/reset")

    def config(self) -> dict[str, Any]:
        return self.admin("GET", "/config")

    def set_policy(self, policy: str) -> dict[str, Any]:
        return self.admin("PATCH", "/config", {"policy": policy})

    def set_delay(self, delay: str | dict[str, Any]) -> dict[str, Any]:
        """`"fixed:300"`, `"uniform:50,1000"`, ... or `{"kind": ..., ...}`."""
        return self.admin("PATCH", "/config", {"delay": delay})

    def set_settle_ms(self, ms: float) -> dict[str, Any]:
        return self.admin("PATCH", "/config", {"settle_ms": ms})

    def create_order(self, items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return self.admin("POST", "/orders", {"items": items, **extra})

    def audit(self, order_id: str) -> dict[str, Any]:
        return self.admin("GET", f"/orders/{order_id}/audit")

    def verdicts(self) -> dict[str, Any]:
        return self.admin("GET", "/verdicts")


@pytest.fixture(scope="session")
def race_mock_server() -> Iterator[MockHandle]:
    """One mock process for the session (see `race_mock` for a clean one per test)."""
    with MockProcess(MockConfig()) as proc:
        handle = MockHandle(proc.url)
        try:
            yield handle
        finally:
            handle.close()


@pytest.fixture
def race_mock(race_mock_server: MockHandle) -> MockHandle:
    """The session's mock, reset to a clean state and the vulnerable defaults."""
    race_mock_server.reset()
    race_mock_server.admin("PATCH", "/config", {"policy": "vulnerable", "delay": "fixed:300", "settle_ms": 0})
    return race_mock_server


@pytest.fixture
def run_integration_scenario(tmp_path: Path) -> Callable[..., RunSummary]:
    """`run_integration_scenario(scenario, *, services=None, target_url=None, hook_url=None, feed=False,
    trials=None, seed=None, offsets_ms=None) -> RunSummary` (see the module docstring)."""
    from harness.analysis.rounds import threshold_decide
    from harness.core.adaptive import CHECK_BUDGET_GRIDS
    from harness.core.scenario import load_scenario
    from harness.live.run import run_scenario
    from harness.rounds import RoundLoop
    from harness.report import build_report

    def _run(scenario: str | Path, *, services: Sequence[str] | None = None, target_url: str | None = None,
             hook_url: str | None = None, feed: bool = False, trials: int | None = None,
             seed: int | None = None, offsets_ms: Sequence[float] | None = None) -> RunSummary:
        loaded = load_scenario(scenario)
        if services is not None:
            loaded = loaded.with_services(services)
        loaded = loaded.with_overrides(trials_per_offset=trials, seed=seed, target_url=target_url,
                                       hook_url=hook_url, offsets_ms=offsets_ms, feed=feed)
        # As `race-harness check` runs it: rounds that stop once the gate decides, within a budget.
        rounds = RoundLoop(loaded, threshold_decide(loaded.thresholds, loaded.gate),
                           max_trials=loaded.gate.max_trials or CHECK_BUDGET_GRIDS * loaded.n_trials,
                           early_stop=True)
        run_dir, _ = run_scenario(loaded, tmp_path / "reports", rounds=rounds)
        return RunSummary(run_dir, build_report(run_dir).summary)

    return _run


@pytest.fixture
def race_scorecard(tmp_path: Path) -> Callable[..., Any]:
    """`race_scorecard(*, target_url, hook_url, hazards=None, trials=None) -> harness.scorecard.Scorecard`:
    every hazard (or the listed ids) against your running service; `.assert_survived()`."""
    from harness.scorecard import parse_hazard_list, run_scorecard

    def _run(*, target_url: str, hook_url: str, hazards: Sequence[str] | None = None,
             trials: int | None = None) -> Any:
        ids = parse_hazard_list(None if hazards is None else ",".join(hazards))
        return run_scorecard(ids, tmp_path / "reports", target_url=target_url, hook_url=hook_url, trials=trials)

    return _run

"""pytest plugin (entry point `race_harness`): the mock and integration runs as fixtures.

For a team's own test suite::

    def test_guarded_connector_does_not_race(run_integration_scenario):
        summary = run_integration_scenario("integration-reference", trials=11)
        assert summary.race_rate_upper("guarded") < 0.05   # 0/77: upper bound 0.048

Fixtures:
- `race_mock`: a running mock Orders API (child process, free loopback port),
  reset before each test: `.url`, `.set_policy()`, `.set_delay()`,
  `.set_settle_ms()`, `.create_order()`, `.audit()`, `.verdicts()`, `.admin()`.
- `run_integration_scenario(path, hook_url=None, trials=None, seed=None)`:
  runs a scenario (a built-in scenario's name or a TOML path; its own
  embedded mock) into `tmp_path` and returns a `RunSummary`. Call it from synchronous tests (it runs its own event loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

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
    """`run_integration_scenario(path, hook_url=None, trials=None, seed=None) -> RunSummary`."""
    from harness.core.scenario import load_scenario
    from harness.live.run import run_scenario
    from harness.report import build_report

    def _run(path: str | Path, hook_url: str | None = None, trials: int | None = None,
             seed: int | None = None) -> RunSummary:
        scenario = load_scenario(path).with_overrides(trials_per_offset=trials, seed=seed, hook_url=hook_url)
        run_dir, _ = run_scenario(scenario, tmp_path / "reports")
        return RunSummary(run_dir, build_report(run_dir).summary)

    return _run

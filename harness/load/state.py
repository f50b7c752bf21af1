"""Load mode (Locust): what one Locust process knows about the current test.

One `LoadState` per process, created by the locustfile and handed explicitly
to the user classes (`harness.load.users.bind`) and to the listeners
(`harness.load.listeners.register`): nothing else reaches it. Under
`--processes N` each forked process has its own copy.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

from gevent.event import Event
from gevent.lock import Semaphore

from harness.core import wire
from harness.load.judge import Headers
from harness.load.records import Collector
from harness.core.scenario import Scenario, load_scenario

log = logging.getLogger("race-harness")

_ROOT = Path(__file__).resolve().parents[2]


class LoadState:
    """The scenario, the credentials, this process's trial counters, the drain flag and the records."""

    def __init__(self) -> None:
        self.scenario: Scenario | None = None
        self.scenario_dict: dict[str, Any] = {}
        self.headers = Headers()
        self.order_spec: dict[str, Any] = {}
        self.change_body: dict[str, Any] = {}
        self.collector = Collector()
        self.draining = False
        self.in_flight = 0
        self.idle = Event()
        self.idle.set()
        self.created = 0  # orders this process created for trials
        self.recorded = 0  # trial records this process delivered
        self.seq = itertools.count()
        self.user_serial = itertools.count()
        self.recent_orders: deque[str] = deque(maxlen=256)
        self.server_offset_ns: int | None = None
        self.clock_lock = Semaphore()
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self.users = 0
        self.finished = False
        self.config_error = ""

    def load(self, path: str) -> None:
        scenario = load_scenario(resolve_scenario(path))
        self.scenario = scenario
        self.scenario_dict = scenario.to_dict()
        t = scenario.target
        self.headers = Headers.from_env(t.app_key_env, t.app_token_env, t.admin_token_env)
        self.order_spec = wire.order_spec(scenario)
        self.change_body = wire.change_body(scenario)

    def reset(self) -> None:
        self.collector.close()
        self.collector = Collector()
        self.draining = False
        self.finished = False
        self.config_error = ""
        self.created = self.recorded = self.users = 0
        self.started_mono, self.started_wall = time.monotonic(), time.time()

    def begin(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self.idle.set()

    def drain_timeout_s(self) -> float:
        """Bound on a trial in flight: offsets, two guard waits, a few request timeouts."""
        s = self.scenario
        if s is None:
            return 5.0
        return (max(abs(o) for o in s.sweep.offsets_ms) + 2 * s.guards.timeout_ms) / 1000 \
            + 4 * s.run.request_timeout_s + 2

    def drain(self) -> None:
        """Start no new trial; wait (bounded) for those in flight to be delivered."""
        self.draining = True
        if not self.idle.wait(timeout=self.drain_timeout_s()):
            log.warning("drain: %d trial(s) still in flight after %.0f s", self.in_flight, self.drain_timeout_s())


def resolve_scenario(path: str) -> Path:
    """The scenario as given, else relative to the project root, else by name in its scenarios/
    folder (workers on other hosts may have the checkout elsewhere)."""
    p = Path(path)
    for candidate in (p, _ROOT / p, _ROOT / "scenarios" / p.name):
        if candidate.is_file():
            return candidate
    return p  # load_scenario names the missing file

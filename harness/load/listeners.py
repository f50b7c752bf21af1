"""Load mode (Locust): the test lifecycle, as listeners on Locust's events and messages.

`register(events, state)` adds every listener, with the process's `LoadState`
bound to them (no module-level state). Each listener's docstring is its
contract: on which node it runs, when, and what it leaves behind. The custom
messages make up the distributed drain protocol:

* `trial` (worker -> master): one finished trial's record
  (`harness.load.records`); the master's collector keeps each order once.
* `drain` (master -> workers): sent at `test_stopping`; a worker finishes the
  trials in flight, starts none, flushes its stats, then answers `drained`.
* `drained` (worker -> master): the worker's counts (orders created, records
  delivered, trials still in flight), after all its `trial` messages on the same channel.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any

import gevent
from locust.event import Events
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from harness.core import wire
from harness.load import judge, records
from harness.load.state import LoadState
from harness.load.users import USER_CLASSES, TrialUser

log = logging.getLogger("race-harness")

DEFAULT_SCENARIO = "scenarios/guard-regression.toml"
WEIGHT_OPTIONS = {"NoGuardUser": "weight_none", "FinishedCheckUser": "weight_finished_check",
                  "SerializedUser": "weight_serialized", "ReaderUser": "weight_reader"}


def register(events: Events, state: LoadState) -> None:
    """Add the command-line options and the lifecycle listeners (call once, at locustfile import)."""
    hooks = _Lifecycle(state)
    events.init_command_line_parser.add_listener(add_options)
    events.init.add_listener(hooks.on_init)
    events.test_start.add_listener(hooks.on_test_start)
    events.test_stopping.add_listener(hooks.on_test_stopping)
    events.test_stop.add_listener(hooks.on_test_stop)


def add_options(parser: Any) -> None:
    """init_command_line_parser, every node: the load mode's options (a worker receives the master's)."""
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO,
                        help=f"scenario TOML (order, change, offsets, guard settings, thresholds, mock settings); "
                             f"default {DEFAULT_SCENARIO}")
    parser.add_argument("--report-dir", default="reports", help="parent folder of the run folder (default reports)")
    parser.add_argument("--max-error-rate", type=float, default=0.01,
                        help="gate: the mock's failed-request ratio must not exceed this (default 0.01)")
    parser.add_argument("--weight-none", type=int, default=1, help="weight of NoGuardUser (guard none)")
    parser.add_argument("--weight-finished-check", type=int, default=1,
                        help="weight of FinishedCheckUser (guard finished-check)")
    parser.add_argument("--weight-serialized", type=int, default=0,
                        help="weight of SerializedUser (guard serialized); default 0")
    parser.add_argument("--weight-reader", type=int, default=1, help="weight of ReaderUser (reads orders only)")


class _Lifecycle:
    """The listeners of one process, sharing its `LoadState`."""

    def __init__(self, state: LoadState) -> None:
        self.state = state

    def on_init(self, environment: Any, **_: Any) -> None:
        """init, every node, once the runner exists: load the scenario (fail fast on a bad one; a worker
        reloads the master's at test start) and register the messages this node receives. The master or
        the single process also applies the --weight-* options and drops the user classes weighted 0
        (none left: ValueError)."""
        opts = environment.parsed_options
        runner = environment.runner
        if opts is None:
            return
        self.state.load(opts.scenario)
        if isinstance(runner, WorkerRunner):
            runner.register_message("drain", self._on_drain, concurrent=True)
            return
        for cls in environment.user_classes:
            option = WEIGHT_OPTIONS.get(cls.__name__)
            if option is not None:
                cls.weight = max(0, int(getattr(opts, option)))
        environment.user_classes[:] = [c for c in environment.user_classes if c.weight > 0 or c.fixed_count > 0]
        if not environment.user_classes:
            raise ValueError("every user class has weight 0 (--weight-none/--weight-finished-check/...)")
        if isinstance(runner, MasterRunner):
            runner.register_message("trial", self._on_trial)
            runner.register_message("drained", self._on_drained)

    def _on_trial(self, environment: Any, msg: Any, **_: Any) -> None:
        """Master, message `trial`: collect one worker's trial record (each order once)."""
        self.state.collector.add(msg.data)

    def _on_drained(self, environment: Any, msg: Any, **_: Any) -> None:
        """Master, message `drained`: note the worker's final counts (its trial records came before)."""
        self.state.collector.drained[str(msg.node_id)] = dict(msg.data or {})

    def _on_drain(self, environment: Any, msg: Any, **_: Any) -> None:
        """Worker, message `drain`: finish the trials in flight, then report (after the trial records,
        on the same channel)."""
        state = self.state
        state.drain()
        runner = environment.runner
        send_stats = getattr(runner, "_send_stats", None)
        if callable(send_stats):  # the master's stats then hold every request before the drain
            send_stats()
        runner.send_message("drained", {"created": state.created, "recorded": state.recorded,
                                        "in_flight": state.in_flight})

    def on_test_start(self, environment: Any, **_: Any) -> None:
        """test_start, every node, before users spawn: (re)load the scenario, reset the counters and the
        collector, apply the scenario's request timeouts to the user classes and tune the GC. The master
        or the single process then configures the mock (PATCH /_mock/config); a mock that cannot be
        configured stops the test, which then exits 2 without judging."""
        state = self.state
        opts = environment.parsed_options
        state.load(opts.scenario)
        state.reset()
        s = state.scenario
        assert s is not None
        for cls in (TrialUser, *USER_CLASSES):
            cls.network_timeout = s.run.request_timeout_s
            cls.connection_timeout = min(5.0, s.run.request_timeout_s)
        # As the asyncio runner does: a gen-2 collection over the imported modules' objects stalls the
        # loop for tens of ms, which would land on timed requests. Freeze what exists, collect less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        if isinstance(environment.runner, WorkerRunner):
            return
        if not environment.host:
            raise ValueError("--host is required: the mock's URL, e.g. http://127.0.0.1:8080")
        try:
            self._admin(environment).call("PATCH", "/_mock/config", wire.mock_settings(s))
        except judge.LoadRunError as err:
            # No mock there (or not this one): the trials would judge nothing. Stop, exit code 2.
            state.config_error = str(err)
            log.error("race-harness: cannot configure the mock at %s (%s); stopping", environment.host, err)
            environment.process_exit_code = 2
            gevent.spawn(environment.runner.quit if opts is not None and opts.headless else environment.runner.stop)
            return
        log.info("race-harness load mode: scenario %s, mock %s configured (policy %s, delay %s, settle %g ms)",
                 s.name, environment.host, s.mock.policy, s.mock.change_delay.spec(), s.mock.settle_ms)

    def _admin(self, environment: Any) -> judge.MockAdmin:
        s = self.state.scenario
        timeout = s.run.request_timeout_s if s else 10.0
        return judge.MockAdmin(environment.host, self.state.headers.admin, timeout_s=max(timeout, 10.0))

    def on_test_stopping(self, environment: Any, **_: Any) -> None:
        """test_stopping, every node, before users are stopped: drain. The single process and a worker
        wait (bounded) for their own trials in flight; the master sends `drain` and waits (bounded)
        until every connected worker answered `drained`, so its collector is complete at test_stop."""
        state = self.state
        runner = environment.runner
        state.users = max(state.users, int(getattr(runner, "user_count", 0) or 0))
        if not isinstance(runner, MasterRunner):
            state.drain()  # local: before users are stopped; worker: before it reports "client_stopped"
            return
        workers = [c.id for c in runner.clients.all if c.state != STATE_MISSING]
        runner.send_message("drain", {})
        stop = time.monotonic() + state.drain_timeout_s() + 5
        while time.monotonic() < stop and not set(workers) <= set(state.collector.drained):
            gevent.sleep(0.05)
        missing = sorted(set(workers) - set(state.collector.drained))
        if missing:
            log.warning("drain: no answer from worker(s) %s; their trials in flight are not counted", missing)

    def on_test_stop(self, environment: Any, **_: Any) -> None:
        """test_stop, the master or the single process, once per test: read the mock's audits, write the
        run folder and its report (harness.load.judge), print one line per threshold and set the exit
        code: 0 passed, 1 a threshold failed, 2 not judged (mock not configured, or writing failed)."""
        state = self.state
        if isinstance(environment.runner, WorkerRunner) or state.finished or state.scenario is None:
            return
        state.finished = True
        if state.config_error:
            print(f"error: load run not judged: the mock could not be configured: {state.config_error}", flush=True)
            environment.process_exit_code = 2
            return
        s = state.scenario
        figures = request_figures(environment.stats)
        guards_run = {getattr(c, "guard") for c in environment.user_classes
                      if issubclass(c, TrialUser) and (c.weight > 0 or c.fixed_count > 0)}
        guards_run |= state.collector.guards()
        workers = state.collector.per_worker()
        worker_info = {w: {"trials": n, **state.collector.drained.get(w, {})} for w, n in workers.items()}
        if isinstance(environment.runner, MasterRunner):
            created = sum(int(v.get("created", 0)) for v in state.collector.drained.values())
        else:
            created = state.created
            worker_info = {"local": {"trials": len(state.collector), "created": state.created,
                                     "recorded": state.recorded}}
        opts = environment.parsed_options
        meta = {
            "seed": s.seed,
            "target": {"kind": "locust", "url": environment.host},
            "mock": {"policy": s.mock.policy, "delay": s.mock.change_delay.spec(), "settle_ms": s.mock.settle_ms},
            "planned_trials": None,
            "concurrency": state.users,
            "load": {
                "tool": "locust",
                "runner": type(environment.runner).__name__,
                "users": state.users,
                "workers": worker_info,
                "orders_created": created,
                "duplicates": state.collector.duplicates,
                "weights": {c.__name__: c.weight for c in environment.user_classes},
                "max_error_rate": opts.max_error_rate,
            },
        }
        try:
            verdict = judge.finish(
                admin=self._admin(environment), collector=state.collector, scenario_dict=state.scenario_dict,
                guards_run=guards_run, report_dir=Path(opts.report_dir), meta=meta, figures=figures,
                max_error_rate=opts.max_error_rate, wall_s=time.monotonic() - state.started_mono,
                audit_wait_s=max(5.0, s.guards.timeout_ms / 1000 + 1),
            )
        except Exception as err:  # noqa: BLE001 - the exit code must say the run was not judged
            log.exception("race-harness: writing the load run failed")
            print(f"error: load run not judged: {err}", flush=True)
            environment.process_exit_code = 2
            return
        print(f"mock requests: {figures.requests} ({figures.rps or 0:.1f}/s), p50 {figures.p50_ms} ms, "
              f"p99 {figures.p99_ms} ms, {figures.failures} failed", flush=True)
        for line in verdict.lines:
            print(line, flush=True)
        environment.process_exit_code = verdict.exit_code


def request_figures(stats: Any) -> judge.RequestFigures:
    """The mock's requests (every stats entry but the TRIAL outcome rows)."""
    from locust.stats import StatsEntry

    total = StatsEntry(stats, "mock", "", use_response_times_cache=False)
    for (name, method), entry in stats.entries.items():
        if method != records.TRIAL_REQUEST_TYPE:
            total.extend(entry)
    if not total.num_requests:
        return judge.RequestFigures(0, 0)
    return judge.RequestFigures(
        requests=total.num_requests, failures=total.num_failures, rps=float(total.total_rps),
        p50_ms=float(total.get_response_time_percentile(0.5)), p99_ms=float(total.get_response_time_percentile(0.99)),
    )

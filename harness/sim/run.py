"""Simulated mode: the same trials, guards, mock and oracle, in one process on virtual time.

`run_simulated` runs a scenario against an in-process mock (deterministic ids,
virtual clock) through the simulated network (`harness.sim.net`) on a
`VirtualTimeLoop`: time only advances when every task waits, so a 1,000 ms
offset costs no wall time, and the same seed gives the same `trials.csv` and
`summary.json` (minus wall-clock fields) on every run and machine.

What differs from a live run, on purpose:
* trial starts are not spread (`start_spread_ms` = 0) and there is no request
  rate cap: both exist to protect real CPUs and servers, and with them a
  trial's start would depend on the others;
* each trial's order id is derived from its trial id, and its latency draws
  from (seed, trial id), so `harness.sim.replay` can re-run one trial alone and
  get the same row;
* nothing is warmed before the first trial (a live run opens its connection
  pool and sends a warm-up order through every path): in-process, on a virtual
  clock, there is nothing to warm and nothing can be late.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any, Callable

from harness.core.plan import Plan, PlannedTrial, build_plan
from harness.core.results import TrialResult
from harness.core.scenario import Scenario, Simulate
from harness.errors import RaceHarnessError, ScenarioError, StorageError
from harness.core.guards import TrialContext
from harness.live.client import OrdersClient
from harness.live.runner import Runner, RunStats
from harness.live.targets import credentials_from_env, mock_config
from harness.runfolder import RunWriter, check_writable, new_run_dir, run_meta
from harness.sim.clock import VirtualClock, run_virtual
from harness.sim.net import SIM_URL, DirectClient, Latency, SimTransport
from mock_orders_api.delays import parse_delay
from mock_orders_api.errors import ConfigError
from mock_orders_api.lifeline import die_with_parent
from mock_orders_api.dates import DATE_SOURCE, virtual_dates

if TYPE_CHECKING:  # the loop and its analysis (pandas) come with `rounds`; a one-round run never imports them
    from harness.rounds import RoundLoop

TRANSPORTS = ("direct", "asgi")
_MAX_WORKERS = 8
_MIN_TRIALS_PER_WORKER = 200


def sim_order_id(trial_id: int) -> str:
    """The order id of a trial in simulated mode (VTEX-shaped, derived from the trial id)."""
    return f"{1_000_001 + trial_id}-01"


def with_latency(scenario: Scenario, spec: str | None) -> Scenario:
    """The scenario with `--latency DIST` applied (None: unchanged)."""
    if spec is None:
        return scenario
    try:
        dist = parse_delay(spec, where="--latency")
    except ConfigError as err:
        raise ScenarioError(str(err)) from None
    return replace(scenario, simulate=Simulate(latency=dist))


def check_simulatable(scenario: Scenario) -> None:
    if scenario.target.integration is not None:
        raise ScenarioError(f"{scenario.source}: --simulate runs the core guards only; integration mode needs "
                            "your service to receive real hooks (run it live)")


def sim_settings(scenario: Scenario) -> Scenario:
    """The scenario as the simulated runner executes it: starts not spread, no rate cap (module docstring)."""
    return replace(scenario, run=replace(scenario.run, start_spread_ms=0.0, rate_limit_rps=0.0))


class SimRunner(Runner):
    """`Runner` on a virtual clock against an in-process mock; trials are independent of each other."""

    def __init__(self, scenario: Scenario, plan: Plan, writer: Any, *, app: Any, clock: VirtualClock,
                 transport: str = "direct", progress: Callable[[TrialResult, RunStats], None] | None = None,
                 credentials: Any = None, record_t0: bool = False) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport: expected one of {TRANSPORTS}; got {transport!r}")
        self.latency = Latency(scenario.simulate.latency, scenario.seed)
        self.app = app
        self.sim_transport = transport
        self.t0_ns: dict[int, int] | None = {} if record_t0 else None  # trial id -> t0 (virtual ns), for timelines
        http_transport = None
        if transport == "asgi":
            import httpx

            http_transport = SimTransport(httpx.ASGITransport(app=app), self.latency, clock)
        kwargs: dict[str, Any] = {} if credentials is None else {"credentials": credentials}
        super().__init__(sim_settings(scenario), plan, SIM_URL, writer, clock=clock, transport=http_transport,
                         progress=progress, configure_mock=True, last_byte_sync=False, **kwargs)
        self.direct: DirectClient | None = None

    async def _open_http(self, stack: Any) -> list[Any]:
        if self.sim_transport == "asgi":
            return await super()._open_http(stack)
        assert isinstance(self.clock, VirtualClock)
        self.direct = await stack.enter_async_context(DirectClient(self.app, self.latency, self.clock))
        return [self.direct]

    def _order_spec_for(self, p: PlannedTrial) -> dict[str, Any]:
        return {**self._order_spec, "orderId": sim_order_id(p.trial_id)}

    # What a live run warms before timing starts (connection pools, first calls of every path) is not
    # there to warm in-process on a virtual clock, where nothing is ever late: up to 512 health
    # requests and an order per process (~6% of a worker's requests on the ticket sweep), skipped.
    async def _warm_paths(self, client: OrdersClient) -> None:
        return None

    async def _warm(self, client: OrdersClient) -> None:
        return None

    async def _trial(self, client: OrdersClient, p: PlannedTrial,
                     start_ns: int) -> tuple[TrialResult, list[dict[str, Any]], dict[str, Any] | None]:
        # Runs in the trial's own task: its requests (and its guard's subtasks) draw from its stream.
        Latency.enter_trial(p.trial_seed)
        return await super()._trial(client, p, start_ns)

    def _judge(self, p: PlannedTrial, ctx: TrialContext, t0: int, began: int, initial: int,
               audit: dict[str, Any] | None) -> TrialResult:
        if self.t0_ns is not None:
            self.t0_ns[p.trial_id] = t0
        return super()._judge(p, ctx, t0, began, initial, audit)


def build_sim_app(scenario: Scenario, clock: VirtualClock) -> tuple[Any, Any]:
    """(the mock app on the virtual clock, with deterministic ids; the client credentials)."""
    from mock_orders_api import create_app

    creds = credentials_from_env(scenario)
    return create_app(mock_config(scenario, creds), clock=clock.now_ns, deterministic=True), creds


def _meta(scenario: Scenario, plan: Plan, transport: str, workers: int) -> dict[str, Any]:
    return run_meta(scenario, target_kind="simulated", target_url=SIM_URL, planned_trials=len(plan.trials),
                    concurrency=scenario.run.concurrency,
                    simulate={"latency": scenario.simulate.latency.spec(), "transport": transport, "workers": workers})


def default_workers(n_trials: int) -> int:
    """Processes for a simulated run: one per CPU, each with at least `_MIN_TRIALS_PER_WORKER` trials."""
    return max(1, min(os.cpu_count() or 1, _MAX_WORKERS, n_trials // _MIN_TRIALS_PER_WORKER))


def run_simulated(scenario: Scenario, out: Path, progress: Callable[[Any, RunStats], None] | None = None,
                  transport: str = "direct", workers: int | None = None,
                  rounds: RoundLoop | None = None,
                  while_running: Callable[[], None] | None = None) -> tuple[Path, bool]:
    """Run every planned trial in simulated mode (with `rounds`: round after round, harness.rounds);
    returns (run folder, interrupted). No report here.

    `while_running` is called once in this process while the first round's worker processes run
    (after they are forked: e.g. the caller's imports for the report, which would otherwise wait
    for the trials; before the fork they would be copied into every worker for nothing).

    Each round's trials are split over `workers` processes (default: `default_workers` of the
    grid), each with its own virtual clock and mock: trials are independent, so the rows do not
    depend on the split, and trials.csv lists them in execution order (`seq`) whatever it was.
    Each process writes its trials to `parts/<round>-<k>/` as they finish; they are appended to
    the run folder's files after each round (the next round is planned from them).
    """
    check_simulatable(scenario)
    if transport not in TRANSPORTS:
        raise RaceHarnessError(f"--sim-transport: expected one of {list(TRANSPORTS)}; got {transport!r}")
    plan: Plan | None = build_plan(scenario) if rounds is None else rounds.first()
    assert plan is not None
    n = workers if workers is not None else default_workers(scenario.n_trials)
    if n < 1:
        raise RaceHarnessError(f"--workers: expected an integer >= 1; got {n}")
    n = min(n, max(1, scenario.n_trials))
    check_writable(out)
    run_dir = new_run_dir(out, scenario.name)
    writer = RunWriter(run_dir, _meta(scenario, plan, transport, n))
    print(f"run folder: {run_dir}", file=sys.stderr)
    # Each process runs its share with its share of the concurrency.
    part_scenario = replace(scenario, run=replace(scenario.run, concurrency=math.ceil(scenario.run.concurrency / n)))
    started = time.monotonic()
    interrupted = True
    virtual: list[float] = []
    timings: list[Any] = []  # per round: each process's run.json `timing` block
    total = RunStats(planned=len(plan.trials))  # progress over every round

    def _progress(item: Any, _stats: RunStats) -> None:
        guard, outcome = (item.guard, item.outcome) if isinstance(item, TrialResult) else item
        total.done += 1
        per = total.outcomes.setdefault(guard, {})
        per[outcome] = per.get(outcome, 0) + 1
        assert progress is not None
        progress(item, total)

    try:
        round_no = 0
        while plan is not None:
            round_no += 1
            total.planned = total.done + len(plan.trials)
            if not _run_round(part_scenario, plan, run_dir / "parts", round_no, min(n, len(plan.trials)), writer,
                              transport, _progress if progress is not None else None, virtual, timings,
                              while_running if round_no == 1 else None):
                break
            plan = rounds.next(run_dir) if rounds is not None else None
        else:
            interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    finally:
        wall_s = time.monotonic() - started
        extra: dict[str, Any] = {"simulate": {**writer.meta["simulate"], "virtual_s": sum(virtual) if virtual else None},
                                 "timing": _merged_timing(scenario, timings)}
        if rounds is not None:
            extra.update(planned_trials=rounds.planned, rounds=rounds.record())
        writer.close(interrupted=interrupted, wall_s=wall_s, extra=extra)
        shutil.rmtree(run_dir / "parts", ignore_errors=True)  # merged into the run folder's files
    return run_dir, interrupted


def _run_round(scenario: Scenario, plan: Plan, parts_dir: Path, round_no: int, n: int, writer: RunWriter,
               transport: str, progress: Any, virtual: list[float], timings: list[Any],
               while_running: Callable[[], None] | None) -> bool:
    """One round over `n` processes (every n-th trial each), merged into `writer`; True if it finished."""
    parts = [parts_dir / f"{round_no}-{k}" for k in range(n)]
    shards = [Plan(plan.scenario_name, plan.seed, plan.trials[k::n]) for k in range(n)]
    try:
        if n == 1:
            _run_part(scenario, shards[0], parts[0], transport, progress)
            if while_running is not None:  # nothing to overlap with in one process
                while_running()
        else:
            _run_forked(scenario, shards, parts, transport, progress, while_running)
    finally:
        part_meta = [_read_json(part / "run.json") for part in parts]
        writer.append_parts(parts)
        times = [m["simulate"]["virtual_s"] for m in part_meta if "virtual_s" in (m.get("simulate") or {})]
        if times:
            virtual.append(max(times))
        timings.append([m.get("timing") for m in part_meta])
    return not any(m.get("interrupted", True) or m.get("finished_at") is None for m in part_meta)


def _merged_timing(scenario: Scenario, rounds: list[list[Any]]) -> dict[str, Any]:
    """run.json's `timing` block of a run split over processes and rounds: in a round each process ran
    its share of the concurrency with its own controller, so the round's limits are the sums of
    theirs; over the rounds, late trials add up, `settled` is the last round's, `lowest` the least."""
    per_round = []
    for parts in rounds:
        blocks = [t for t in parts if isinstance(t, dict)]
        if blocks:
            per_round.append({"late": sum(t["late"] for t in blocks),
                              "concurrency": {k: sum(t["concurrency"][k] for t in blocks)
                                              for k in ("max", "settled", "lowest")}})
    if not per_round:
        return {"tolerance_ms": scenario.timing_tolerance_ms, "late": 0, "concurrency": None}
    return {"tolerance_ms": scenario.timing_tolerance_ms, "late": sum(r["late"] for r in per_round),
            "concurrency": {"max": max(r["concurrency"]["max"] for r in per_round),
                            "settled": per_round[-1]["concurrency"]["settled"],
                            "lowest": min(r["concurrency"]["lowest"] for r in per_round)}}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_part(scenario: Scenario, plan: Plan, part: Path, transport: str, progress: Any) -> None:
    try:
        part.mkdir(parents=True)
    except OSError as err:
        raise StorageError(f"cannot create {part}: {err.strerror or err}; the run stopped") from None
    run_virtual(_execute_part(scenario, plan, part, transport, progress))


async def _execute_part(scenario: Scenario, plan: Plan, part: Path, transport: str, progress: Any) -> None:
    clock = VirtualClock()
    DATE_SOURCE.set(virtual_dates(clock.now_ns))  # this task and every task it starts
    app, creds = build_sim_app(scenario, clock)
    writer = RunWriter(part, {"part_of": scenario.name, "planned_trials": len(plan.trials)})
    runner = SimRunner(scenario, plan, writer, app=app, clock=clock, transport=transport, progress=progress,
                       credentials=creds)
    interrupted = True
    started_ns = clock.now_ns()
    # The runner collects garbage once and freezes the heap before timing starts; most of the heap
    # (the imports) is ours to freeze first, which makes that collection cheap.
    gc.freeze()
    try:
        stats = await runner.run()
        interrupted = stats.interrupted
    except asyncio.CancelledError:  # Ctrl-C (asyncio.Runner cancels the main task)
        interrupted = True
    finally:
        writer.close(interrupted=interrupted, wall_s=runner.stats.wall_s,
                     extra={"simulate": {"virtual_s": (clock.now_ns() - started_ns) / 1e9},
                            "timing": runner.stats.timing(scenario.timing_tolerance_ms, scenario.run.concurrency)})


def _run_forked(scenario: Scenario, shards: list[Plan], parts: list[Path], transport: str, progress: Any,
                while_running: Callable[[], None] | None) -> None:
    """One forked process per shard (fork: no re-import, the children start at once).

    The children ignore Ctrl-C; the parent stops them (their finished trials are on disk in
    their part folders, flushed trial by trial) and re-raises KeyboardInterrupt.
    """
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue() if progress is not None else None
    errors = ctx.SimpleQueue()  # a worker's RaceHarnessError (e.g. a storage fault), to be raised here
    procs = [ctx.Process(target=_worker, args=(scenario, shard, part, transport, queue, errors), daemon=True,
                         name=f"race-harness-sim-{k}") for k, (shard, part) in enumerate(zip(shards, parts))]
    for proc in procs:
        proc.start()
    try:
        if while_running is not None:
            while_running()
        if queue is not None:
            stats = RunStats(planned=sum(len(s.trials) for s in shards))
            while stats.done < stats.planned:  # one item per trial: the last one ends the wait at once
                try:
                    item = queue.get(timeout=0.2)
                except Empty:
                    if not any(proc.is_alive() for proc in procs):
                        break
                    continue
                guard, outcome = item
                stats.done += 1
                per = stats.outcomes.setdefault(guard, {})
                per[outcome] = per.get(outcome, 0) + 1
                progress(item, stats)
        for proc in procs:
            proc.join()
    except BaseException:
        for proc in procs:
            if proc.is_alive():
                proc.kill()  # they ignore SIGTERM; their finished trials are flushed in their parts
            proc.join()
        raise
    failed = [p for p in procs if p.exitcode != 0]
    if failed and not errors.empty():
        raise errors.get()
    if failed:
        raise RaceHarnessError(f"simulation worker {failed[0].name} failed (exit code {failed[0].exitcode}); "
                               f"its trials so far are in {parts[procs.index(failed[0])]}")


def _worker(scenario: Scenario, plan: Plan, part: Path, transport: str, queue: Any, errors: Any) -> None:
    # The parent decides (see _run_forked): Ctrl-C or SIGTERM sent to the whole process group must
    # not cut a worker's trial short; and a worker dies with the parent (mock_orders_api.lifeline).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(os.getppid())
    def progress(result: TrialResult, stats: RunStats) -> None:
        queue.put((result.guard, result.outcome))

    try:
        _run_part(scenario, plan, part, transport, progress if queue is not None else None)
    except RaceHarnessError as err:  # one line, from the parent; not a worker traceback
        errors.put(err)
        sys.exit(2)
    if queue is not None:
        queue.close()
        queue.join_thread()  # every progress message is out before the process ends


# --------------------------------------------------------------------------- replay


__all__ = ["SimRunner", "TRANSPORTS", "build_sim_app", "check_simulatable", "run_simulated", "sim_order_id",
           "with_latency"]

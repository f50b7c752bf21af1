"""One live run of a scenario end to end: target up, run folder, runner.

Shared by the CLI, the calibrate command and the pytest plugin so all produce
the same run folder. The report is built by the caller (`harness.report`);
simulated runs start from `harness.sim.run.run_simulated`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from harness.core.plan import Plan, build_plan
from harness.core.scenario import Scenario
from harness.integration.runner import IntegrationRunner
from harness.live.runner import Runner, RunStats
from harness.live.targets import open_target
from harness.rounds import RoundLoop
from harness.runfolder import RunWriter, check_writable, new_run_dir, run_meta


def use_uvloop() -> None:
    """uvloop where available: about half the client CPU per request of the default loop,
    which is what limits how many trials can be in flight on time."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_scenario(scenario: Scenario, out: Path, progress: Callable[[Any, RunStats], None] | None = None,
                 handle_sigint: bool = False, rounds: RoundLoop | None = None) -> tuple[Path, bool]:
    """Run every planned trial (`handle_sigint`: the first SIGINT or SIGTERM lets the trials in flight
    finish and stops, a second abandons them: they are not written) (with `rounds`: round after round, harness.rounds); returns
    (run folder, interrupted). The report is not built here."""
    use_uvloop()
    return asyncio.run(execute(scenario, build_plan(scenario) if rounds is None else rounds.first(), out, progress,
                               handle_sigint, rounds))


async def execute(scenario: Scenario, plan: Plan, out: Path,
                  progress: Callable[[Any, RunStats], None] | None = None,
                  handle_sigint: bool = False, rounds: RoundLoop | None = None) -> tuple[Path, bool]:
    """Run `plan` (the first round when `rounds` plans more) into a new run folder."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def _on_signal() -> None:
        if stop.is_set():  # second Ctrl-C: stop waiting for trials in flight
            assert main_task is not None
            main_task.cancel()
        else:
            print("\nstopping: finishing trials in flight (Ctrl-C again to abandon them)", file=sys.stderr)
            stop.set()

    # SIGTERM (CI cancellation, `timeout`) is one Ctrl-C: the trials in flight finish, run.json is finished.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if handle_sigint else {}
    for sig in previous:
        loop.add_signal_handler(sig, _on_signal)
    try:
        check_writable(out)
        with open_target(scenario) as target:
            run_dir = new_run_dir(out, scenario.name)
            writer = RunWriter(run_dir, run_meta(scenario, target_kind=target.kind, target_url=target.url,
                                                 planned_trials=len(plan.trials),
                                                 concurrency=scenario.run.concurrency))
            print(f"run folder: {run_dir}", file=sys.stderr)
            runner_cls = IntegrationRunner if scenario.target.integration else Runner
            runner = runner_cls(scenario, plan, target.url, writer, credentials=target.credentials,
                                progress=progress,
                                next_round=None if rounds is None else (lambda: rounds.next(run_dir)))
            interrupted = True
            try:
                stats = await runner.run(stop)
                interrupted = stats.interrupted
            except asyncio.CancelledError:
                interrupted = True
            finally:
                writer.close(interrupted=interrupted, wall_s=runner.stats.wall_s,
                             extra={"timing": runner.stats.timing(scenario.timing_tolerance_ms,
                                                                  scenario.run.concurrency),
                                    **({} if rounds is None else {"planned_trials": rounds.planned,
                                                                  "rounds": rounds.record()})})
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)  # remove_signal_handler leaves SIGTERM at its default: death
    return run_dir, interrupted

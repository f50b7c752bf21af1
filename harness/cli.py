"""`race-harness`: run a scenario, rebuild a report, gate CI, or serve the mock."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from harness.builtin_scenarios import DEFAULT_SCENARIO, builtin_purposes
from harness.core.thresholds import VERDICT_EXIT_CODES
from harness.errors import RaceHarnessError

if TYPE_CHECKING:
    import pandas as pd

    from harness.core.adaptive import Cell
    from harness.core.scenario import Scenario
    from harness.rounds import RoundLoop
from harness.core.adaptive import CHECK_BUDGET_GRIDS

# 0 PASS, 1 FAIL, 2 could not run, 3 INCONCLUSIVE (not enough evidence either way), 130 interrupted.
EXIT_OK, EXIT_GATE_FAILED, EXIT_ERROR, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _parser() -> argparse.ArgumentParser:
    from mock_orders_api.__main__ import add_serve_arguments

    p = argparse.ArgumentParser(prog="race-harness", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("run", "run a scenario and write its report"),
                        ("check", "run a scenario, then gate: exit 0 PASS, 1 FAIL, 3 INCONCLUSIVE (not enough evidence)")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO, help=f"built-in scenario name or TOML path (default {DEFAULT_SCENARIO})")
        s.add_argument("--target-url", help="run against this server instead of the embedded mock")
        delivery = s.add_mutually_exclusive_group()
        delivery.add_argument("--feed", action="store_true",
                              help="integration mode over Feed v3: your running integration (at the mock of "
                                   "--target-url) reads and commits the feed, which the harness configures; it is "
                                   "named 'integration' in the report")
        delivery.add_argument("--hook-url", help="integration mode: the hook URL of your running integration, which "
                       "invoices on its own (it is named 'integration' in the report)")
        s.add_argument("--trials", type=int, help="trials per offset (overrides the scenario)")
        s.add_argument("--seed", type=int, help="plan seed (overrides the scenario)")
        s.add_argument("--max-trials", type=int, metavar="N",
                       help="trial budget: the grid runs in batches and, while thresholds are undecided, further "
                            "rounds go to undecided offsets and bisect window edges, never beyond N trials "
                            f"(check: default {CHECK_BUDGET_GRIDS} x the grid, stops once every threshold is "
                            "decided; run: default the grid only, in one round)")
        s.add_argument("--out", type=Path, default=Path("reports"), help="parent folder of the run folder")
        s.add_argument("--no-progress", action="store_true", help="no progress bar (CI logs)")
        s.add_argument("--simulate", action="store_true",
                       help="simulated mode: in-process mock on a virtual clock (deterministic, no wall time waited)")
        s.add_argument("--latency", metavar="DIST",
                       help="simulated mode: one-way network latency in ms (overrides [simulate] latency), "
                            "e.g. lognormal:0.3,0.3 or fixed:0")
        s.add_argument("--workers", type=int, metavar="N",
                       help="simulated mode: processes to split the trials over (default: one per CPU); "
                            "the results do not depend on it")
        s.add_argument("--sim-transport", choices=("direct", "asgi"), default="direct",
                       help="simulated mode: call the mock's handlers directly (default) or through "
                            "httpx + ASGI (slower, same results)")
    c = sub.add_parser("calibrate", help="run a scenario live and simulated, compare both with the race model: "
                                         "exit 0 when the unguarded curve's intervals cover it in enough bins, "
                                         "3 (inconclusive) when too few bins have the trials to notice a deviation")
    c.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO, help=f"built-in scenario name or TOML path (default {DEFAULT_SCENARIO})")
    c.add_argument("--trials", type=int, help="trials per offset (overrides the scenario)")
    c.add_argument("--seed", type=int, help="plan seed (overrides the scenario)")
    c.add_argument("--max-trials", type=int, metavar="N",
                   help="trial budget for adaptive rounds: the grid runs in batches, then more trials go to the "
                        "unguarded curve's bins too small to detect a deviation from the model, never beyond N "
                        "(default: the grid only); the simulated run replays the same trials")
    c.add_argument("--out", type=Path, default=Path("reports"), help="parent folder of the run folders")
    c.add_argument("--no-simulate", action="store_true", help="live run only")
    c.add_argument("--min-coverage", type=float, default=0.9,
                   help="fraction of the unguarded curve's bins whose 95%% interval must cover the model (default 0.9)")
    c.add_argument("--gate-on", choices=("model", "conditional"), default="model",
                   help="the model the exit code judges: the distribution-level one (default) or the one given "
                        "each trial's pinned delay; both are reported")
    c.add_argument("--no-progress", action="store_true", help="no progress bar (CI logs)")
    r = sub.add_parser("report", help="rebuild a run folder's report from its trials (also after a crash)")
    r.add_argument("run_dir", type=Path)
    rp = sub.add_parser("replay", help="re-run one trial of a run folder alone in simulated mode and print "
                                       "its timeline")
    rp.add_argument("run_dir", type=Path)
    rp.add_argument("trial_id", type=int)
    t = sub.add_parser("trend", help="the gate's numbers across runs (CI artifacts): trend.html + trend.png")
    t.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="run folders, or folders holding them")
    t.add_argument("--out", type=Path, default=Path("."), help="folder for trend.html and trend.png (default .)")
    t.add_argument("--label", help="label for runs whose run.json recorded no `git describe`")
    sub.add_parser("scenarios", help="list the built-in scenarios (run them by name) with their purpose")
    sub.add_parser("hazards", help="list the catalogue of order-integration hazards (id, KI ids, one line)")
    sc = sub.add_parser("scorecard", help="run every hazard (or --hazards) against the built-in subjects or your "
                                          "service, each with the gate: exit 0 PASS, 1 FAIL, 2 could not run, "
                                          "3 INCONCLUSIVE")
    sc.add_argument("--hazards", metavar="ID,...", help="only these hazards (default: all; see `race-harness hazards`)")
    sc.add_argument("--target-url", help="your mock/API URL (with --hook-url: your service already points at it)")
    sc.add_argument("--hook-url", help="the hook URL of your running integration (named 'integration')")
    if _feed_supported():
        sc.add_argument("--feed", help="your integration reads the Orders Feed instead of hooks (as in integration mode)")
    sc.add_argument("--trials", type=int, help="trials per offset for every hazard (overrides the scenarios)")
    sc.add_argument("--simulate", action="store_true",
                    help="simulated mode for the hazards that allow it (the harness's own guards); the others run live")
    sc.add_argument("--out", type=Path, default=Path("reports"), help="parent folder of the scorecard folder")
    sc.add_argument("--no-progress", action="store_true", help="no per-hazard progress lines (CI logs)")
    s = sub.add_parser("serve", help="serve the mock Orders API")
    add_serve_arguments(s)
    return p


def main(argv: list[str] | None = None) -> int:
    """The exit code; never a traceback for Ctrl-C, SIGTERM, a full disk or a closed pipe."""
    args = _parser().parse_args(argv)
    stdout = sys.stdout
    sys.stdout = _ClosedPipeSafe(stdout)  # type: ignore[assignment]
    sigterm = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (CI cancellation, `timeout`) is one Ctrl-C; the live run handles both itself.
        sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _command(args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RaceHarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as err:  # a file outside the run folder's writer (the report's files, say)
        print(f"error: {err.filename or 'I/O'}: {err.strerror or err}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # a bug: shown, but it must not read as a gate verdict (exit 1 = FAIL)
        traceback.print_exc()
        print("error: internal error (traceback above): the command could not finish", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
        sys.stdout.flush()
        sys.stdout = stdout
        if argv is None:  # the command line's process, which ends now (not a caller's, e.g. a test's)
            _exit_lightly()


def _exit_lightly() -> None:
    """Spare the interpreter's last garbage collections, which would walk the whole heap (pandas, the
    report: ~0.1 s) only to free memory the OS reclaims anyway. Frozen objects are skipped by them;
    the exit itself stays the normal one (atexit handlers, every stream flushed and file closed)."""
    gc.freeze()


def _command(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from mock_orders_api.__main__ import run_serve

        return run_serve(args)
    if args.command == "scenarios":
        for name, purpose in builtin_purposes():
            print(f"{name:<24} {purpose}")
        return EXIT_OK
    if args.command == "hazards":
        from harness.hazards import hazards

        for hazard in hazards():
            print(hazard.line())
        return EXIT_OK
    if args.command == "scorecard":
        return _scorecard(args)
    if args.command == "report":
        return _report(args.run_dir)
    if args.command == "trend":
        return _trend(args.dirs, args.out, args.label)
    if args.command == "replay":
        return _replay(args.run_dir, args.trial_id)
    if args.command == "calibrate":
        return _calibrate(args)
    return _run(args, gate=args.command == "check")


class _ClosedPipeSafe:
    """stdout that outlives its reader (`race-harness ... | head`): once the pipe is closed, output
    goes to /dev/null and the command finishes with its own exit code, no BrokenPipeError."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # the buffered rest is flushed there, at exit too
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _feed_supported() -> bool:
    """`--feed` exists where integration mode takes a feed (Scenario.with_overrides(feed=...))."""
    import inspect

    from harness.core.scenario import Scenario

    return "feed" in inspect.signature(Scenario.with_overrides).parameters


def _scorecard(args: argparse.Namespace) -> int:
    from harness.scorecard import format_matrix, parse_hazard_list, run_scorecard

    if bool(args.target_url) != bool(args.hook_url or getattr(args, "feed", None)):
        raise RaceHarnessError("scorecard: your service needs both --target-url (the API it calls) and --hook-url "
                               "(or --feed)")
    overrides = {"feed": args.feed} if getattr(args, "feed", None) else {}
    card = run_scorecard(parse_hazard_list(args.hazards), args.out, target_url=args.target_url,
                         hook_url=args.hook_url, simulate=args.simulate, trials=args.trials, overrides=overrides,
                         on_hazard=None if args.no_progress else
                         (lambda hid: print(f"hazard {hid} ...", file=sys.stderr, flush=True)))
    for line in format_matrix(card):
        print(line)
    print(f"scorecard: {card.folder / 'scorecard.html'} ({card.wall_s:.0f} s); exit {card.exit_code}")
    for line in card.not_survived():
        print(f"not survived: {line}", file=sys.stderr)
    return card.exit_code


def _report(run_dir: Path) -> int:
    from harness.report import build_report

    report = build_report(run_dir)
    _print_summary(report.summary, report.paths.html)
    _print_findings(report.summary)
    return EXIT_OK


def _trend(dirs: list[Path], out: Path, label: str | None) -> int:
    from harness.report.trend import build_trend

    trend = build_trend(dirs, out, label=label)
    for run in trend.runs:
        print(f"  {run.label:30s} {run.started_at:26s} gate {run.verdict.upper()}")
    for line in trend.regressions:
        print(f"regression: {line}", file=sys.stderr)
    print(f"trend: {trend.html}")
    return EXIT_OK


def _calibrate(args: argparse.Namespace) -> int:
    from harness.calibrate import run_calibration
    from harness.core.scenario import load_scenario

    if not 0.0 <= args.min_coverage <= 1.0:
        raise RaceHarnessError(f"--min-coverage: expected a fraction in [0, 1]; got {args.min_coverage}")
    if args.max_trials is not None and args.max_trials < 1:
        raise RaceHarnessError(f"--max-trials: expected an integer >= 1; got {args.max_trials}")
    scenario = load_scenario(args.scenario).with_overrides(trials_per_offset=args.trials, seed=args.seed)
    if scenario.target.integration is not None:
        raise RaceHarnessError("calibrate: integration scenarios have no race model to calibrate against")
    bar = None if args.no_progress else _Progress(scenario.n_trials, scenario.guards.names)
    if bar:
        bar.start()
    try:
        cal = run_calibration(scenario, args.out, simulate=not args.no_simulate, min_coverage=args.min_coverage,
                              gate_on=args.gate_on, progress=bar.update if bar else None, max_trials=args.max_trials,
                              on_phase=lambda msg: print(msg, file=sys.stderr))
    finally:
        if bar:
            bar.stop()
    res = cal.result
    if res.get("note"):
        print(f"note: {res['note']}")
    for guard, g in res["guards"].items():
        parts = [f"live: model {_coverage(g['live']['model'])}, conditional {_coverage(g['live']['conditional'])}"]
        if "simulated" in g:
            parts.append(f"simulated: model {_coverage(g['simulated']['model'])}, "
                         f"conditional {_coverage(g['simulated']['conditional'])}")
            d = g["live_vs_simulated"]
            if d["bins"]:
                parts.append(f"|live - simulated| mean {d['mean_abs_diff']:.3f} max {d['max_abs_diff']:.3f}")
        print(f"  {guard:15s} " + "; ".join(parts))
    print(f"calibration: {cal.html_path}")
    if cal.interrupted:
        return EXIT_INTERRUPTED
    frac = res["gated_fraction"]
    line = (f"{res['gated_guard']} vs {res['gated_model']}: {'n/a' if frac is None else f'{frac:.0%}'} of bins "
            f"covered (needed {res['min_coverage']:.0%})")
    if not res["passed"]:
        print(f"calibration: FAILED ({line})", file=sys.stderr)
        return EXIT_GATE_FAILED
    if res["verdict"] == "inconclusive":
        p = res["gated_power"]
        print(f"calibration: INCONCLUSIVE ({line}; only {p['powered']} of {p['bins']} bins have enough trials "
              f"to detect a deviation of {p['deviation']:g} from the model with power {p['power']:.0%})",
              file=sys.stderr)
        return EXIT_INCONCLUSIVE
    print(f"calibration: passed ({line})")
    return EXIT_OK


def _coverage(c: dict[str, Any]) -> str:
    return "n/a" if not c.get("bins") else f"{c['covered']}/{c['bins']} bins covered ({c['fraction']:.0%})"


def _replay(run_dir: Path, trial_id: int) -> int:
    from harness.sim.replay import format_timeline, replay

    r = replay(run_dir, trial_id)
    print(format_timeline(r))
    return EXIT_GATE_FAILED if r.simulated_run and r.differences else EXIT_OK


def _run(args: argparse.Namespace, gate: bool) -> int:
    from harness.core.scenario import load_scenario

    sim_only = [flag for flag, value in (("--latency", args.latency), ("--workers", args.workers),
                                         ("--sim-transport", args.sim_transport != "direct" or None)) if value]
    if args.simulate and (args.target_url or args.hook_url or args.feed):
        raise RaceHarnessError("--simulate runs its own in-process mock: drop --target-url / --hook-url / --feed")
    if args.feed and not args.target_url:
        raise RaceHarnessError("--feed judges a service already reading a mock's feed: give that mock's URL "
                               "with --target-url")
    if sim_only and not args.simulate:
        raise RaceHarnessError(f"{', '.join(sim_only)}: only with --simulate")
    scenario = load_scenario(args.scenario).with_overrides(
        trials_per_offset=args.trials, seed=args.seed, target_url=args.target_url, hook_url=args.hook_url,
        feed=args.feed)
    if args.simulate:
        from harness.sim.run import run_simulated, with_latency

        scenario = with_latency(scenario, args.latency)
    rounds = _round_loop(scenario, args.max_trials, gate)
    bar = None if args.no_progress else _Progress(scenario.n_trials, scenario.guards.names)
    if bar:
        bar.start()
    try:
        if args.simulate:
            run_dir, interrupted = run_simulated(scenario, args.out, progress=bar.update if bar else None,
                                                 transport=args.sim_transport, workers=args.workers, rounds=rounds,
                                                 while_running=_import_report)
        else:
            from harness.live.run import run_scenario

            if rounds is not None:
                # The looks' analysis (pandas) imported now, before the runner freezes the heap for
                # the timed trials, not at the first look between rounds (its heap unfrozen then).
                import harness.analysis.rounds  # noqa: F401
            run_dir, interrupted = run_scenario(scenario, args.out, progress=bar.update if bar else None,
                                                handle_sigint=True, rounds=rounds)
    finally:
        if bar:
            bar.stop()
    from harness.report import build_report, write_figures

    # The verdict first, the figures (matplotlib, ~1 s) after it: `check` draws them before it exits
    # (CI uploads the folder then), `run` in a background process (the data is on disk already).
    report = build_report(run_dir, figures=False)
    try:
        return _print_verdict(report.summary, report.paths.html, run_dir, args.simulate, interrupted, gate)
    finally:
        sys.stdout.flush()
        if gate or interrupted:
            write_figures(report)
        else:
            _figures_in_background(run_dir)


def _import_report() -> None:
    """The report's imports (pandas, ~0.3 s), done while the simulation's workers run instead of after."""
    import harness.report  # noqa: F401  (imported for its side effect: sys.modules)


def _print_verdict(summary: dict[str, Any], html: Path, run_dir: Path, simulate: bool, interrupted: bool,
                   gate: bool) -> int:
    _print_summary(summary, html)
    if simulate:
        _print_simulation(run_dir)
    if interrupted:
        _print_findings(summary)
        print(f"interrupted: kept {summary['run']['trials']} finished trials in {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    # `run` is the QA reproduction command: it shows the same verdict lines but keeps exit 0.
    verdict = summary["gate"]["verdict"]
    for line in summary["gate"]["results"]:
        print(line)
    _print_findings(summary)
    print(f"gate: {verdict.upper()}", file=sys.stdout if verdict == "pass" or not gate else sys.stderr)
    return VERDICT_EXIT_CODES[verdict] if gate else EXIT_OK


def _figures_in_background(run_dir: Path) -> None:
    """`race-harness report RUN_DIR` in its own session (a Ctrl-C at the shell prompt does not stop it):
    it rebuilds the report from the run folder with its figures and removes FIGURES_PENDING; if it dies,
    the marker stays and says how to finish (the report without figures is complete otherwise)."""
    import subprocess

    subprocess.Popen([sys.executable, "-m", "harness.cli", "report", str(run_dir.resolve())],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def _round_loop(scenario: Scenario, max_trials: int | None, gate: bool) -> RoundLoop | None:
    """`check`: batches with early stop, budget default CHECK_BUDGET_GRIDS grids; `run`: the grid in
    one round unless --max-trials is given (then rounds, no early stop: the budget sharpens the edges)."""
    if max_trials is not None and max_trials < 1:
        raise RaceHarnessError(f"--max-trials: expected an integer >= 1; got {max_trials}")
    if max_trials is None and gate:  # the scenario's [gate] max_trials is check's budget
        max_trials = scenario.gate.max_trials
    if not gate and max_trials is None:
        return None
    from harness.rounds import RoundLoop
    budget = max_trials if max_trials is not None else CHECK_BUDGET_GRIDS * scenario.n_trials

    def decide(df: pd.DataFrame) -> tuple[bool, list[Cell]]:
        # Imported (pandas) at the first look: a simulated run has it by then (`_import_report`).
        from harness.analysis.rounds import threshold_decide

        return threshold_decide(scenario.thresholds, scenario.gate)(df)

    return RoundLoop(scenario, decide, max_trials=budget, early_stop=gate)


class _Progress:
    """Trials done, races so far per guard, ETA (rich)."""

    def __init__(self, total: int, guards: tuple[str, ...]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), transient=False)
        self._guards = guards
        self._task = self._progress.add_task(self._describe({}), total=total)

    def _describe(self, outcomes: dict[str, dict[str, int]]) -> str:
        return "races " + " ".join(f"{g}={outcomes.get(g, {}).get('race', 0)}" for g in self._guards)

    def start(self) -> None:
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()

    def update(self, result: Any, stats: Any) -> None:
        self._progress.update(self._task, completed=stats.done, total=max(stats.planned, stats.done),
                              description=self._describe(stats.outcomes))


def _print_simulation(run_dir: Path) -> None:
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    sim = meta.get("simulate") or {}
    latency = sim.get("latency") or {}
    virtual = sim.get("virtual_s")
    print(f"  simulated: {'?' if virtual is None else f'{virtual:.1f}'} s of virtual time in "
          f"{meta.get('wall_s') or 0:.2f} s wall, "
          f"{sim.get('workers')} process(es), {sim.get('transport')} transport, latency "
          + ", ".join(f"{k}={v}" for k, v in latency.items()))


def _print_findings(summary: dict[str, Any]) -> None:
    """The findings last, so a CI log's tail says what the run showed."""
    print("findings:")
    for sentence in summary.get("findings") or []:
        print(f"  - {sentence}")


def _print_summary(summary: dict[str, Any], html: Path) -> None:
    from harness.core.adaptive import describe_edges

    run = summary["run"]
    print(f"{summary['scenario']}: {run['trials']} trials in {run['wall_s']:.1f} s "
          f"({run['trials_per_s']:.1f} trials/s)" if run.get("wall_s") else
          f"{summary['scenario']}: {run['trials']} trials")
    for name, g in summary["guards"].items():
        c = (summary.get("gate") or {}).get("outcomes", {}).get(name)
        counts = f"  ({c['not_judged']} not judged, {c['failed']} failed)" if c else ""
        if g.get("rate") is None:  # no judged trial
            print(f"  {name:15s} no judged trials{counts}")
            continue
        print(f"  {name:15s} races {g['races']}/{g['trials']} judged  rate {g['rate']:.3f}  "
              f"95% CI [{g['ci_low']:.3f}, {g['ci_high']:.3f}]{counts}")
    for name, svc in ((summary.get("hooks") or {}).get("services") or {}).items():
        extra = svc.get("extra_invoices") or {}
        extras = ", ".join(f"{n} x HTTP {status}" for status, n in sorted(extra.items())) or "none"
        feed = svc.get("feed")
        if feed:
            print(f"  {name:15s} feed: {feed['events']} events ({feed['duplicates']} duplicates), {feed['reads']} "
                  f"read, {feed['redeliveries']} redelivered after the visibility timeout, {feed['committed']} "
                  f"committed; extra invoices: {extras}")
            continue
        print(f"  {name:15s} hooks: {svc['deliveries']} sent, {svc['delivered']} accepted (200), "
              f"{svc['failed_attempts']} failed, {svc['duplicates']} duplicates, {svc['retries']} retries, "
              f"{svc.get('reorders', 0)} reordered; "
              f"extra invoices: {extras}")
    rounds = summary.get("rounds") or {}
    if rounds.get("rounds"):
        print(f"  rounds: {rounds['rounds']} ({'+'.join(map(str, rounds['trials_per_round']))} trials, budget "
              f"{rounds['budget']}){', stopped early: ' + rounds['stop_reason'] if rounds.get('stopped_early') else ''}")
    for guard, edges in (rounds.get("window_edges") or {}).items():
        if edges is not None:
            print(f"  {describe_edges(guard, edges)}")
    for side, st in summary["offset_error_ms"].items():
        if st.get("n"):
            print(f"  offset error ({side}): p50 {st['p50']:.2f} ms  p99 {st['p99']:.2f} ms  max {st['max']:.2f} ms")
    timing = summary.get("timing") or {}
    concurrency = timing.get("concurrency")
    if concurrency:
        slowed = concurrency["lowest"] < concurrency["max"]
        print(f"  concurrency: settled at {concurrency['settled']} of {concurrency['max']} trials in flight"
              + (f" (lowest {concurrency['lowest']}: late trials slowed the run)" if slowed else ""))
    if timing.get("warning"):
        print(f"warning: {timing['warning']}", file=sys.stderr)
    print(f"report: {html}")


if __name__ == "__main__":
    sys.exit(main())

"""Tests for harness.live.runner: short real runs, in-process and against the embedded mock, and interruption.

The scenarios are tiny (3 offsets x 3 trials x 2 guards) and use a fixed, pinned
Change delay D, so the expected outcome of every unguarded trial follows from
the table of docs/model.md: 0 < offset < D races, offset <= -S (S = 0) is change_refused.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from harness.analysis.stats import load_trials
from harness.core.oracle import Outcome
from harness.core.plan import Plan, build_plan
from harness.core.results import TrialResult
from harness.core.scenario import Scenario, parse_scenario
from harness.live.runner import Runner, RunStats
from harness.live.targets import open_target
from harness.report import build_report
from harness.runfolder import RunWriter, new_run_dir
from mock_orders_api import create_app
from mock_orders_api.config import MockConfig

DELAY_MS = 200.0
OFFSETS = [-100.0, 60.0, 120.0]
TRIALS_PER_OFFSET = 3
GUARDS = ["none", "finished-check"]
MIN_ABS_OFFSET_MS = 50.0  # where finished-check must never race (docs/model.md / guard-regression gate)


def scenario_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "runner-test",
        "seed": 4242,
        "target": {"kind": "embedded"},
        "mock": {"policy": "vulnerable", "change_delay": f"fixed:{DELAY_MS:g}", "settle_ms": 0, "pin_delays": True},
        "order": {"items": [{"id": "1", "name": "Shirt", "quantity": 2, "price": 5000},
                            {"id": "2", "name": "Shoes", "quantity": 1, "price": 12000}],
                  "shipping": 1000},
        "change": {"items_removed": [{"id": "1", "quantity": 1}]},
        "sweep": {"offsets_ms": OFFSETS, "trials_per_offset": TRIALS_PER_OFFSET},
        "guards": {"names": GUARDS, "poll_interval_ms": 10, "timeout_ms": 3000},
        "run": {"concurrency": 10, "start_spread_ms": 100, "lead_ms": 50},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return data


def make_scenario(**overrides: Any) -> Scenario:
    return parse_scenario(scenario_dict(**overrides), "<test_runner>")


def make_writer(out: Path, scenario: Scenario, plan: Plan, target: dict[str, Any]) -> RunWriter:
    """A writer with the run.json fields the CLI records (so build_report can read the folder)."""
    return RunWriter(new_run_dir(out, scenario.name), {
        "scenario": scenario.to_dict(),
        "seed": scenario.seed,
        "target": target,
        "mock": {"policy": scenario.mock.policy, "delay": scenario.mock.change_delay.spec(),
                 "settle_ms": scenario.mock.settle_ms},
        "planned_trials": len(plan.trials),
        "concurrency": scenario.run.concurrency,
    })


async def run_in_process(scenario: Scenario, out: Path, *, stop: asyncio.Event | None = None,
                         progress: Any = None) -> tuple[RunStats, Plan, Path, RunWriter]:
    plan = build_plan(scenario)
    writer = make_writer(out, scenario, plan, {"kind": "asgi", "url": "http://mock"})
    # A default config that differs from the scenario: the runner must configure the mock itself.
    app = create_app(MockConfig())
    runner = Runner(scenario, plan, "http://mock", writer, transport=httpx.ASGITransport(app=app),
                    progress=progress)
    try:
        stats = await runner.run(stop)
    finally:
        writer.close(interrupted=runner.stats.interrupted, wall_s=runner.stats.wall_s)
    return stats, plan, writer.path, writer


def read_history(run_dir: Path) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    with (run_dir / "history.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            ev = json.loads(line)
            out[ev["trial_id"]].append(ev)
    return out


def expected_none_outcome(offset: float) -> str:
    # docs/model.md table with S = 0 and a fixed D.
    if 0 < offset < DELAY_MS:
        return Outcome.RACE.value
    if offset >= DELAY_MS:
        return Outcome.INVOICE_REFUSED.value
    return Outcome.CHANGE_REFUSED.value


def assert_race_model(df: pd.DataFrame, scenario: Scenario) -> None:
    """none races in the window and only there; finished-check never races at |offset| >= 50 ms."""
    none = df[df["guard"] == "none"]
    assert len(none) == len(OFFSETS) * TRIALS_PER_OFFSET
    for row in none.itertuples():
        assert row.outcome == expected_none_outcome(row.offset_ms), (row.trial_id, row.offset_ms, row.outcome,
                                                                     row.error)
        assert row.invoice_value == row.initial_value == scenario.order.value  # the naive value
    in_window = none[(none["offset_ms"] > 0) & (none["offset_ms"] < DELAY_MS)]
    assert len(in_window) > 0 and (in_window["outcome"] == "race").all()
    assert (in_window["invoiced_total"] > in_window["final_value"]).all()
    assert (in_window["final_value"] == scenario.final_value).all()

    fc = df[df["guard"] == "finished-check"]
    assert len(fc) == len(OFFSETS) * TRIALS_PER_OFFSET
    guarded = fc[fc["offset_ms"].abs() >= MIN_ABS_OFFSET_MS]
    assert len(guarded) == len(fc)  # every planned offset is in the gate's window
    assert not (guarded["outcome"] == "race").any(), guarded[["trial_id", "offset_ms", "outcome"]]
    after = fc[fc["offset_ms"] > 0]
    assert (after["outcome"] == "clean").all()
    assert (after["invoice_value"] == scenario.final_value).all()  # the reduced value, re-read after the wait
    before = fc[fc["offset_ms"] < 0]
    assert (before["outcome"] == "change_refused").all()


def assert_run_folder(run_dir: Path, plan: Plan, df: pd.DataFrame) -> None:
    assert sorted(df["trial_id"]) == sorted(t.trial_id for t in plan.trials)  # one row per planned trial
    assert df["agree"].all(), df.loc[~df["agree"], ["trial_id", "disagreement"]]
    assert set(df["audit_verdict"]) <= {"race", "clean"}
    planned = {t.trial_id: t for t in plan.trials}
    for row in df.itertuples():
        p = planned[row.trial_id]
        assert (row.guard, row.offset_ms, row.seq) == (p.guard, p.offset_ms, p.seq)
        assert row.change_delay_ms == p.change_delay_ms == DELAY_MS
    history = read_history(run_dir)
    assert set(history) == set(planned)
    for tid, evs in history.items():
        kinds = [e["kind"] for e in evs]
        assert kinds.count("change") == 1 and kinds.count("invoice") == 1, (tid, kinds)
        assert kinds[:3] == ["create_order", "start_handling", "get_order"]
        row = df[df["trial_id"] == tid].iloc[0]
        (change,) = [e for e in evs if e["kind"] == "change"]
        (invoice,) = [e for e in evs if e["kind"] == "invoice"]
        assert change["status"] == row["change_status"] and invoice["status"] == row["invoice_status"]
        assert int(invoice["request_body"]["invoiceValue"]) == row["invoice_value"]
        assert change["planned_ms"] == 0.0  # t0 is the Change's deadline
        assert math.isclose(change["sent_ms"], row["change_sent_ms"], abs_tol=1e-6)
    audits = [json.loads(line) for line in (run_dir / "audits.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(a["trial_id"] for a in audits) == sorted(planned)
    assert all(a["audit"]["orderId"] == a["order_id"] for a in audits)


# --------------------------------------------------------------------------- (a) in-process


async def test_in_process_run_reproduces_the_race_model(tmp_path: Path) -> None:
    scenario = make_scenario()
    stats, plan, run_dir, writer = await run_in_process(scenario, tmp_path)

    assert stats.interrupted is False
    assert stats.done == stats.planned == len(plan.trials) == scenario.n_trials
    assert writer.count == stats.done
    df = load_trials(run_dir)
    assert len(df) == len(plan.trials)
    assert_run_folder(run_dir, plan, df)
    assert_race_model(df, scenario)
    # The run's counters match the rows.
    for guard in GUARDS:
        counts = df[df["guard"] == guard]["outcome"].value_counts().to_dict()
        assert stats.outcomes[guard] == counts
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert meta["trials_written"] == len(df) and meta["interrupted"] is False


# --------------------------------------------------------------------------- (b) embedded mock

# t0 this far after scheduling starts: the run must not depend on how fast helper processes start
# (test_embedded_first_trials_are_fired_on_time covers a short lead on its own).
EMBEDDED_LEAD_MS = 1000.0


async def run_embedded(scenario: Scenario, out: Path) -> tuple[RunStats, Plan, Path, str]:
    plan = build_plan(scenario)
    with open_target(scenario) as target:
        assert target.kind == "embedded"
        assert target.url.startswith("http://127.0.0.1:")
        writer = make_writer(out, scenario, plan, {"kind": target.kind, "url": target.url})
        runner = Runner(scenario, plan, target.url, writer, credentials=target.credentials)
        try:
            stats = await runner.run()
        finally:
            writer.close(interrupted=runner.stats.interrupted, wall_s=runner.stats.wall_s)
    return stats, plan, writer.path, target.url


@pytest.fixture
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VTEX_APP_KEY", "VTEX_APP_TOKEN", "MOCK_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("_no_credentials")
async def test_embedded_target_run_reproduces_the_race_model(tmp_path: Path) -> None:
    scenario = make_scenario(run={"lead_ms": EMBEDDED_LEAD_MS})
    stats, plan, run_dir, url = await run_embedded(scenario, tmp_path)
    # The child process is gone once the target is closed.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/_mock/health", timeout=1.0)

    assert stats.interrupted is False and stats.done == len(plan.trials)
    df = load_trials(run_dir)
    assert_run_folder(run_dir, plan, df)
    assert_race_model(df, scenario)
    none = df[df["guard"] == "none"]
    for col in ("client_offset_error_ms", "server_offset_error_ms"):
        values = none[col].to_numpy(dtype=float)
        assert all(math.isfinite(v) for v in values), (col, values)
        # Far below the distance from any planned offset to the model's edges (0 and D).
        assert max(abs(v) for v in values) < min(min(abs(o) for o in OFFSETS), DELAY_MS - max(OFFSETS)) / 2
    fc = df[df["guard"] == "finished-check"]
    assert fc["client_offset_error_ms"].isna().all() and fc["server_offset_error_ms"].isna().all()
    assert (fc["guard_cost_ms"].dropna() >= 0).all()


@pytest.mark.usefixtures("_no_credentials")
async def test_embedded_first_trials_are_fired_on_time(tmp_path: Path) -> None:
    """With a short lead the first deadlines fall right after the run starts: the timed-request machinery
    (e.g. a helper process for last-byte sync) must be ready before scheduling, not start up late and
    then fire the overdue Change and invoice of a trial together."""
    scenario = make_scenario()  # lead_ms = 50: the first deadlines fall right after the run starts
    assert scenario.run.lead_ms < 100
    _, _, run_dir, _ = await run_embedded(scenario, tmp_path)
    df = load_trials(run_dir)
    late = df[df["change_sent_ms"].abs() >= 25.0]
    assert late.empty, late[["trial_id", "seq", "guard", "offset_ms", "change_sent_ms", "invoice_sent_ms"]]
    assert_race_model(df, scenario)


# --------------------------------------------------------------------------- (c) interruption


async def test_interrupted_run_keeps_finished_trials_and_rebuilds_a_report(tmp_path: Path) -> None:
    # One trial at a time, so "stop after k" leaves exactly k finished trials.
    scenario = make_scenario(run={"concurrency": 1, "start_spread_ms": 0, "lead_ms": 20},
                             mock={"change_delay": "fixed:40"},
                             sweep={"offsets_ms": [-30, 20], "trials_per_offset": 3})
    k = 3
    stop = asyncio.Event()
    seen: list[TrialResult] = []

    def progress(result: TrialResult, stats: RunStats) -> None:
        seen.append(result)
        if stats.done >= k:
            stop.set()

    stats, plan, run_dir, writer = await run_in_process(scenario, tmp_path, stop=stop, progress=progress)

    assert len(plan.trials) > k
    assert stats.interrupted is True
    assert stats.done == k == len(seen) == writer.count
    df = load_trials(run_dir)
    assert len(df) == k
    assert list(df["trial_id"]) == [r.trial_id for r in seen]  # rows are the finished trials, in finish order
    assert sorted(df["seq"]) == list(range(k))  # the first k of the execution order, nothing else started
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert meta["interrupted"] is True and meta["trials_written"] == k

    paths = build_report(run_dir).paths
    summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    assert summary["run"]["trials"] == len(df)
    assert summary["run"]["planned_trials"] == len(plan.trials)
    assert summary["run"]["interrupted"] is True
    assert sum(g["trials"] + g["not_judged"] + g["failed"] for g in summary["guards"].values()) == len(df)
    assert "interrupted" in paths.html.read_text(encoding="utf-8")
    for p in (paths.rates, paths.markdown, paths.junit, paths.race_rate_png):
        assert p.exists()

    # A crash mid-write: the last row of trials.csv is cut in half.
    crashed = tmp_path / "crashed"
    shutil.copytree(run_dir, crashed)
    text = (crashed / "trials.csv").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    assert len(lines) == 1 + k
    last = lines[-1]
    (crashed / "trials.csv").write_text("".join(lines[:-1]) + last[: len(last) // 2], encoding="utf-8")
    cut = build_report(crashed).paths
    summary = json.loads(cut.summary.read_text(encoding="utf-8"))
    assert summary["run"]["trials"] == k - 1
    assert summary["run"]["skipped_trial_lines"] == 1
    assert any("trials.csv" in w for w in summary["warnings"])


def test_history_lines_are_json_dumps_of_each_event_with_null_for_non_finite(tmp_path: Path) -> None:
    """history.jsonl / audits.jsonl lines are exactly `json.dumps` of the record (default separators,
    ASCII escapes), a non-finite number written as null (JSON has no NaN)."""
    from harness.runfolder import _dumps

    event = {"trial_id": 7, "guard": "none", "planned_ms": None, "sent_ms": -0.25, "response_ms": 1e-07,
             "status": 201, "request_body": {"items": [{"id": "1", "price": 5000}], "note": "café \x7f \"q\" \n"},
             "response_body": {"value": 23000, "big": 10 ** 30, "list": [True, False, None, 1.5]}, "error": ""}
    assert _dumps(event) == json.dumps(event)
    assert _dumps({"a": float("nan"), "b": [1.0, float("-inf")]}) == '{"a": null, "b": [1.0, null]}'
    assert _dumps("text") == json.dumps("text")
    with pytest.raises(TypeError):
        _dumps({"x": object()})

"""Simulated mode: virtual-time loop, determinism, replay, the simulated CI gate, the race model.

`race-harness run/check --simulate` runs the same trials, guards, mock and oracle
in one process on a virtual clock. These tests pin what it promises: same seed
-> identical trials.csv and summary.json (minus wall-clock fields), any trial
replays alone to its row, waiting costs no wall time, and the unguarded curve is
the table of docs/model.md.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.cli import EXIT_ERROR, EXIT_OK, main
from harness.core.adaptive import CHECK_BUDGET_GRIDS
from harness.core.plan import build_plan
from harness.core.scenario import ScenarioError, load_scenario, parse_scenario
from harness.live.runner import Runner
from harness.runfolder import RunWriter, new_run_dir
from harness.sim.clock import SimulationDeadlock, VirtualClock, VirtualTimeLoop, run_virtual
from harness.sim.replay import format_timeline, replay
from harness.sim.run import run_simulated
from mock_orders_api import create_app
from mock_orders_api.config import MockConfig

ROOT = Path(__file__).resolve().parent.parent
GUARD_REGRESSION = ROOT / "scenarios" / "guard-regression.toml"
WALL_FIELDS = ("started_at", "finished_at", "wall_s", "trials_per_s")
D_MS, S_MS = 300.0, 150.0


def scenario_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "sim-test",
        "seed": 77,
        "mock": {"policy": "vulnerable", "change_delay": f"fixed:{D_MS:g}", "settle_ms": S_MS, "pin_delays": True},
        "order": {"items": [{"id": "1", "name": "Shirt", "quantity": 2, "price": 5000},
                            {"id": "2", "name": "Shoes", "quantity": 1, "price": 12000}], "shipping": 1000},
        "change": {"items_removed": [{"id": "1", "quantity": 1}]},
        "sweep": {"offsets_ms": [-400, -250, -100, -40, 40, 150, 260, 340, 600], "trials_per_offset": 3},
        "guards": {"names": ["none", "finished-check", "serialized"], "poll_interval_ms": 20, "timeout_ms": 3000},
        "run": {"concurrency": 20, "lead_ms": 200},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return data


def trials(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def summary_without_wall_clock(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    for key in WALL_FIELDS:
        summary["run"].pop(key)
    return summary


def only_run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def cli_run(out: Path, *args: str) -> Path:
    assert main(["run", str(GUARD_REGRESSION), "--simulate", "--no-progress", "--out", str(out), *args]) == EXIT_OK
    return only_run_dir(out)


# --------------------------------------------------------------------------- the virtual-time loop


def test_virtual_loop_jumps_to_timers_exactly_and_in_order() -> None:
    order: list[tuple[str, int]] = []

    async def main_() -> int:
        clock = VirtualClock()

        async def sleeper(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            order.append((name, clock.now_ns()))

        await asyncio.gather(sleeper("b", 2.0), sleeper("a", 1.0), sleeper("c", 2.0), sleeper("d", 0.000_001))
        await clock.sleep_until(clock.now_ns() + 3_000_000_001)
        async with asyncio.timeout(10):  # timeouts run on virtual time too
            await asyncio.sleep(5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1):
                await asyncio.sleep(2)
        return clock.now_ns()

    started = time.perf_counter()
    end_ns = run_virtual(main_())
    assert time.perf_counter() - started < 2.0  # 11 virtual seconds
    assert order == [("d", 1_000), ("a", 1_000_000_000), ("b", 2_000_000_000), ("c", 2_000_000_000)]
    assert end_ns == 11_000_000_001


def test_virtual_loop_reports_a_deadlock_instead_of_hanging() -> None:
    async def waits_forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(SimulationDeadlock, match="no timer pending"):
        run_virtual(waits_forever())


def test_virtual_clock_needs_the_virtual_loop() -> None:
    async def on_real_loop() -> None:
        VirtualClock()

    with pytest.raises(TypeError, match="VirtualTimeLoop"):
        asyncio.run(on_real_loop())
    loop = VirtualTimeLoop(start_ns=5)
    try:
        assert VirtualClock(loop).now_ns() == 5
    finally:
        loop.close()


def test_mock_reads_the_injected_clock() -> None:
    """Every mock stamp and timer follows the clock it is given (here the virtual one)."""

    async def main_() -> dict[str, Any]:
        clock = VirtualClock()
        await asyncio.sleep(7)  # the mock's clock is not the host's monotonic clock
        app = create_app(MockConfig(settle_ms=0), clock=clock.now_ns, deterministic=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock") as c:
            order = (await c.post("/_mock/orders", json={"items": [{"id": "1", "quantity": 2, "price": 5000}]})).json()
            oid = order["orderId"]
            await c.post(f"/api/oms/pvt/orders/{oid}/start-handling")
            r = await c.patch(f"/api/order-system/orders/{oid}/changes", headers={"X-Mock-Change-Delay-Ms": "250"},
                              json={"reason": "cut", "remove": {"items": [{"id": "1", "quantity": 1}]}})
            assert r.status_code == 202
            await asyncio.sleep(1)  # the mock's timer applies the Change at 250 ms
            audit = (await c.get(f"/_mock/orders/{oid}/audit")).json()
            health = (await c.get("/_mock/health")).json()
        return {"audit": audit, "health": health, "now": clock.now_ns()}

    out = run_virtual(main_())
    change = out["audit"]["changes"][0]
    assert change["actedNs"] == 7_000_000_000
    assert change["finishedNs"] == change["appliedNs"] == 7_250_000_000  # the timer fired exactly on time
    assert out["health"]["monotonicNs"] == out["now"] == 8_000_000_000
    assert out["audit"]["createdNs"] == 7_000_000_000
    assert re.fullmatch(r"[0-9a-f]{32}", change["requestId"])


def test_deterministic_mock_ids_derive_from_the_order() -> None:
    async def one_run() -> list[str]:
        clock = VirtualClock()
        app = create_app(MockConfig(seed=3), clock=clock.now_ns, deterministic=True)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock") as c:
            await c.post("/_mock/orders", json={"items": [{"id": "1", "quantity": 2, "price": 5000}],
                                                "orderId": "42-01", "status": "handling"})
            change = (await c.patch("/api/order-system/orders/42-01/changes",
                                    json={"reason": "cut", "remove": {"items": [{"id": "1", "quantity": 1}]}})).json()
            invoice = (await c.post("/api/orders/pvt/document/42-01/invoices", json={
                "type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "NF-1", "invoiceValue": 1000,
                "items": [{"itemIndex": 0, "price": 1000, "quantity": 1}]})).json()
        return [change["requestId"], change["workflowId"], str(change["delayMs"]), invoice["receipt"]]

    first, second = run_virtual(one_run()), run_virtual(one_run())
    assert first == second  # unpinned delay included: drawn per order, not from a shared stream
    assert len(set(first)) == 4


# --------------------------------------------------------------------------- scenario and CLI


def test_scenario_simulate_section(tmp_path: Path) -> None:
    s = parse_scenario(scenario_dict(simulate={"latency": "uniform:0.1,2"}), "x.toml")
    assert s.simulate.latency.spec() == {"kind": "uniform", "min_ms": 0.1, "max_ms": 2.0}
    assert parse_scenario(json.loads(json.dumps(s.to_dict())), "x.toml") == s
    assert parse_scenario(scenario_dict(), "x.toml").simulate.latency.spec()["kind"] == "lognormal"  # default
    with pytest.raises(ScenarioError, match=r"x.toml: simulate.latency: unknown delay distribution 'gauss'"):
        parse_scenario(scenario_dict(simulate={"latency": "gauss:1"}), "x.toml")
    with pytest.raises(ScenarioError, match=r"simulate: unknown key\(s\) 'jitter'"):
        parse_scenario(scenario_dict(simulate={"jitter": "fixed:1"}), "x.toml")


@pytest.mark.parametrize("args, message", [
    (["--simulate", "--target-url", "http://127.0.0.1:1"], "--simulate runs its own in-process mock"),
    (["--latency", "fixed:1"], "--latency: only with --simulate"),
    (["--simulate", "--latency", "bogus:1"], "--latency: unknown delay distribution"),
])
def test_cli_simulate_misuse_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                         message: str) -> None:
    assert main(["run", str(GUARD_REGRESSION), "--no-progress", "--out", str(tmp_path), *args]) == EXIT_ERROR
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- determinism and replay


def test_same_seed_gives_identical_trials_and_summary(tmp_path: Path) -> None:
    a = cli_run(tmp_path / "a", "--trials", "4")
    b = cli_run(tmp_path / "b", "--trials", "4")
    assert a.name != b.name or a.parent != b.parent
    assert (a / "trials.csv").read_bytes() == (b / "trials.csv").read_bytes()
    assert summary_without_wall_clock(a) == summary_without_wall_clock(b)
    # The raw evidence too, the invoices' issuance dates included (from the virtual clock).
    for name in ("history.jsonl", "audits.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    meta = json.loads((a / "run.json").read_text())
    assert meta["target"]["kind"] == "simulated"
    assert meta["simulate"]["virtual_s"] > 0.8  # at least a trial's lead (500 ms) + the largest offset (300 ms)
    assert len(trials(a)) == 7 * 4 * 3

    c = cli_run(tmp_path / "c", "--trials", "4", "--seed", "12345")
    assert (c / "trials.csv").read_bytes() != (a / "trials.csv").read_bytes()


def test_results_do_not_depend_on_workers_or_transport(tmp_path: Path) -> None:
    """Trials are independent: splitting them over processes, or going through httpx + Starlette
    (ASGI) instead of calling the handlers directly, gives the same rows."""
    scenario = parse_scenario(scenario_dict(sweep={"trials_per_offset": 2}), "mem")
    one, _ = run_simulated(scenario, tmp_path / "one", workers=1)
    two, _ = run_simulated(scenario, tmp_path / "two", workers=3)
    asgi, _ = run_simulated(scenario, tmp_path / "asgi", workers=1, transport="asgi")
    rows = (one / "trials.csv").read_bytes()
    assert rows == (two / "trials.csv").read_bytes() == (asgi / "trials.csv").read_bytes()
    # The direct dispatch is the ASGI app minus HTTP: the same requests, answers and audits, to the byte.
    for name in ("history.jsonl", "audits.jsonl"):
        assert (one / name).read_bytes() == (asgi / name).read_bytes(), name
    assert [int(r["seq"]) for r in trials(one)] == list(range(scenario.n_trials))
    assert not (two / "parts").exists()
    assert len((two / "history.jsonl").read_text().splitlines()) == len((one / "history.jsonl").read_text().splitlines())


def test_replay_reproduces_every_row_of_a_simulated_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Unpinned delays: the mock draws them, per order, so a trial alone still gets its own delay.
    scenario = parse_scenario(scenario_dict(mock={"change_delay": "uniform:100,400", "pin_delays": False},
                                            sweep={"trials_per_offset": 1}), "mem")
    run_dir, interrupted = run_simulated(scenario, tmp_path, workers=2)
    assert not interrupted
    rows = trials(run_dir)
    assert len({r["change_delay_ms"] for r in rows}) > 5
    for trial_id in (0, 5, 13, 22, scenario.n_trials - 1):
        r = replay(run_dir, trial_id)
        assert r.recorded is not None and r.differences == [], (trial_id, r.differences)
    assert main(["replay", str(run_dir), "13"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "the replayed row is identical to the recorded one" in text
    assert re.search(r"^change\s+PATCH\s+0\.000\s+0\.000", text, re.M)  # the Change leaves at t0 exactly
    assert "mock's record" in text and "outcome: " in text
    assert main(["replay", str(run_dir), "9999"]) == EXIT_ERROR


def test_replay_of_a_live_run_shows_the_variation(tmp_path: Path) -> None:
    """A trial recorded live (real clock, ASGI here) replays in simulation; differences are expected."""
    scenario = parse_scenario(scenario_dict(sweep={"offsets_ms": [100], "trials_per_offset": 2},
                                            guards={"names": ["none"]}, run={"lead_ms": 20}), "mem")
    plan = build_plan(scenario)
    run_dir = new_run_dir(tmp_path, scenario.name)
    writer = RunWriter(run_dir, {"scenario": scenario.to_dict(), "seed": scenario.seed,
                                 "target": {"kind": "asgi", "url": "http://mock"}})
    app = create_app(MockConfig())

    async def live() -> None:
        runner = Runner(scenario, plan, "http://mock", writer, transport=httpx.ASGITransport(app=app))
        await runner.run()

    asyncio.run(live())
    writer.close(interrupted=False, wall_s=1.0)
    r = replay(run_dir, 1)
    assert not r.simulated_run
    assert r.result.outcome == r.recorded["outcome"] == "race"  # type: ignore[index]
    assert {col for col, _, _ in r.differences} >= {"duration_ms"}  # real time went by differently
    assert "expected variation" in format_timeline(r)


# --------------------------------------------------------------------------- the CI gate, time, the model


def test_guard_regression_gate_passes_in_simulated_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CI's flake-free guard-regression gate (a short live gate run: tests/test_cli.py)."""
    code = main(["check", str(GUARD_REGRESSION), "--simulate", "--no-progress", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert "gate: PASS" in out and out.count("PASS ") == 3  # every threshold, in every bin of its window
    run_dir = only_run_dir(tmp_path)
    # check runs the grid in batches, then rounds while thresholds are undecided, within its budget
    grid = load_scenario(GUARD_REGRESSION).n_trials
    rounds = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["rounds"]
    assert len(trials(run_dir)) == sum(rounds["trials_per_round"]) <= rounds["budget"] == CHECK_BUDGET_GRIDS * grid


def test_a_1000_ms_offset_costs_no_wall_time(tmp_path: Path) -> None:
    scenario = parse_scenario(scenario_dict(mock={"change_delay": "fixed:900", "settle_ms": 0},
                                            sweep={"offsets_ms": [-1000, -500, 500, 1000], "trials_per_offset": 10},
                                            run={"concurrency": 10, "lead_ms": 500}), "mem")
    started = time.perf_counter()
    run_dir, _ = run_simulated(scenario, tmp_path, workers=1)
    wall = time.perf_counter() - started
    meta = json.loads((run_dir / "run.json").read_text())
    virtual = meta["simulate"]["virtual_s"]
    assert virtual > 10  # 12 rounds of 10 trials, each 500 ms lead + up to 1000 ms offset + 900 ms Change
    assert sum(float(r["duration_ms"]) for r in trials(run_dir)) / 1000 > 100  # trials' own virtual seconds
    assert wall < virtual / 4, (wall, virtual)  # in practice ~100x faster than real time
    none = [r for r in trials(run_dir) if r["guard"] == "none"]
    assert {r["outcome"] for r in none if float(r["offset_ms"]) == 500} == {"race"}


def test_unguarded_curve_matches_the_analytic_model(tmp_path: Path) -> None:
    """docs/model.md: with fixed D and settle S, none races iff 0 < offset < D or -S < offset < 0
    (offsets here are far from the edges compared with the ~0.3 ms simulated latency)."""
    scenario = parse_scenario(scenario_dict(sweep={"trials_per_offset": 4}), "mem")
    run_dir, _ = run_simulated(scenario, tmp_path, workers=1)
    rows = trials(run_dir)
    for r in rows:
        offset = float(r["offset_ms"])
        if r["guard"] == "none":
            expected = "race" if (0 < offset < D_MS or -S_MS < offset < 0) else (
                "invoice_refused" if offset >= D_MS else "change_refused")
            assert r["outcome"] == expected, (offset, r["outcome"], r["error"])
            assert float(r["change_delay_ms"]) == D_MS
            assert abs(float(r["server_offset_error_ms"])) < 5  # the latency model's jitter only
        elif r["guard"] == "serialized":
            assert r["outcome"] != "race"
        elif abs(offset) >= 200:  # finished-check: only its residual invoice-first window races
            assert r["outcome"] != "race", (offset, r)
        assert r["agree"] == "True"
    fc_residual = [r for r in rows if r["guard"] == "finished-check" and -S_MS < float(r["offset_ms"]) < 0]
    assert fc_residual and all(r["outcome"] == "race" for r in fc_residual)


def test_latency_model_shifts_server_times(tmp_path: Path) -> None:
    """Latency is modelled: a fixed 2 ms one way puts the mock's action 2 ms after the send."""
    run_dir = cli_run(tmp_path / "fixed", "--trials", "1", "--latency", "fixed:2")
    none = [r for r in trials(run_dir) if r["guard"] == "none"]
    assert none
    for row in none:
        assert float(row["change_sent_ms"]) == 0.0
        if row["change_acted_ms"] != "nan":
            assert float(row["change_acted_ms"]) == pytest.approx(2.0)
        assert float(row["invoice_acted_ms"]) == pytest.approx(float(row["offset_ms"]) + 2.0)
    assert json.loads((run_dir / "run.json").read_text())["scenario"]["simulate"]["latency"] == {
        "kind": "fixed", "ms": 2.0}
    default = cli_run(tmp_path / "default", "--trials", "1")
    acted = [float(r["change_acted_ms"]) for r in trials(default) if r["guard"] == "none"]
    assert all(0 < a < 2 for a in acted)  # lognormal, median 0.3 ms


def test_a_lost_invoice_response_makes_the_trial_indeterminate(tmp_path: Path) -> None:
    """The mock applies the invoice and cuts the connection (fault schedule): the client cannot know."""
    scenario = parse_scenario(scenario_dict(mock={"faults": {"invoice": {"drop": 1.0}}},
                                            sweep={"offsets_ms": [-100, 150], "trials_per_offset": 1},  # invoices the mock accepts
                                            guards={"names": ["none"]}), "mem")
    run_dir, _ = run_simulated(scenario, tmp_path, workers=1)
    rows = trials(run_dir)
    assert rows and all(r["outcome"] == "indeterminate" for r in rows), [(r["outcome"], r["error"]) for r in rows]
    audits = [json.loads(line) for line in (run_dir / "audits.jsonl").read_text().splitlines()]
    assert any(inv.get("accepted") for a in audits for inv in (a.get("audit") or a).get("invoices", []))


def test_direct_dispatch_picks_the_route_the_app_would() -> None:
    """DirectClient matches all of a method's routes in one regex: the route it picks (and its path
    parameters) is the first in the app's routing order whose path matches, as Starlette's router does."""
    from harness.sim.net import _routers
    from mock_orders_api.routes import ROUTES

    routers = _routers(ROUTES)
    samples = ["1000001-01", "NF-1", "a.b", "%20x", "-"]
    paths = [re.sub(r"\(\?P<\w+>\[\^/\]\+\)", value, route.path_regex.pattern.strip("^$").replace("\\-", "-"))
             for route in ROUTES for value in samples]
    paths += ["/", "/nope", "/api/oms/pvt/orders/", "/api/oms/pvt/orders/1/2", "/_mock/orders/x/audit/",
              "/api/oms/pvt/orders//start-handling"]
    for method in {route.method for route in ROUTES} | {"HEAD"}:
        for path in paths:
            expected = next(((route, m.groupdict()) for route in ROUTES if route.method == method
                             for m in [route.path_regex.match(path)] if m is not None), None)
            router = routers.get(method)
            m = router.pattern.match(path) if router is not None else None
            got = None
            if m is not None:
                route, params = router.routes[m.lastgroup]
                got = (route, {name: m.group(group) for group, name in params})
            assert got == expected, (method, path)
    # Overlapping paths: the earlier route wins, whichever is more specific.
    from types import SimpleNamespace

    overlapping = tuple(SimpleNamespace(method="GET", path_regex=re.compile(pattern), name=name) for name, pattern in
                        (("any", r"^/a/(?P<x>[^/]+)$"), ("b", r"^/a/b$"), ("deep", r"^/a/(?P<x>[^/]+)/(?P<y>[^/]+)$")))
    router = _routers(overlapping)["GET"]  # type: ignore[arg-type]
    for path, name, params in (("/a/b", "any", {"x": "b"}), ("/a/c/d", "deep", {"x": "c", "y": "d"})):
        m = router.pattern.match(path)
        assert m is not None
        route, groups = router.routes[m.lastgroup]
        assert (route.name, {n: m.group(g) for g, n in groups}) == (name, params)


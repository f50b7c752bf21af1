"""Load mode (Locust): headless runs of scenarios/locustfile.py against the embedded mock, in subprocesses.

Locust monkey-patches the whole process with gevent on import, so this test
process never imports locust (nor the locustfile): every Locust run is a child
process, and only harness.load.records / harness.load.judge / harness.core
(plain Python) are imported here. One mock (a child process) serves the module;
each run counts the orders it created from the mock's order counter.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from harness.core import names, wire
from harness.core.history import RequestEvent
from harness.load import judge, records
from mock_orders_api import child_env
from mock_orders_api.config import MockConfig
from mock_orders_api.server import MockProcess

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "scenarios" / "locustfile.py"
# locust is a dependency: a missing install must fail these tests, not skip them. Never import it
# here: importing it monkey-patches this process with gevent.

DELAY_MS = 200
OFFSETS = [-300, -100, 60, 120, 300]  # |offset| >= 50 ms: finished-check must never race
ASYNCIO_MODULES = ("harness.live.runner", "harness.live.client", "harness.live.run", "harness.integration.runner",
                   "harness.live.sender", "harness.live.targets", "harness.sim.run", "harness.sim.clock",
                   "harness.sim.net")
# The guards' modules are pure: the gevent driver runs the same generators as the asyncio one.
PURE_GUARD_MODULES = (ROOT / "harness" / "core" / "steps.py", ROOT / "harness" / "core" / "guards.py")

SCENARIO = f"""
name = "locust-test"
seed = 99
[mock]
policy = "vulnerable"
change_delay = "fixed:{DELAY_MS}"
settle_ms = 0
pin_delays = true
[order]
items = [{{ id = "1", name = "Shirt", quantity = 2, price = 5000 }}, {{ id = "2", name = "Shoes", quantity = 1, price = 12000 }}]
shipping = 1000
[change]
items_removed = [{{ id = "1", quantity = 1 }}]
[sweep]
offsets_ms = {OFFSETS}
trials_per_offset = 1
[guards]
names = ["none", "finished-check"]
poll_interval_ms = 20
timeout_ms = 3000
[run]
request_timeout_s = 5.0
# Per offset bin, sequentially: 2 race-free trials in each of the 5 bins prove <= 0.9 (a short run's gate).
[[thresholds]]
guard = "finished-check"
max_upper = 0.9
min_abs_offset_ms = 50
"""
FAILING_THRESHOLD = """
[[thresholds]]
guard = "none"
max_upper = 0.0
"""


@pytest.fixture(scope="module")
def mock() -> Iterator[MockProcess]:
    with MockProcess(MockConfig()) as proc:
        yield proc


def orders_on(mock: MockProcess) -> int:
    return int(httpx.get(f"{mock.url}/_mock/health", timeout=5).json()["orders"])


def write_scenario(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO + extra, encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    # Own session: the finally below can end the process and any child it forked.
    return subprocess.Popen([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args], cwd=ROOT,
                            env=child_env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout=10)


def run_locust(args: list[str], log: Path, timeout_s: float = 60) -> tuple[int, str]:
    proc = start(args, log)
    try:
        rc = proc.wait(timeout=timeout_s)
    finally:
        stop([proc])
    return rc, log.read_text(encoding="utf-8", errors="replace")


def headless(mock: MockProcess, scenario: Path, out: Path, users: int, run_time: str) -> list[str]:
    return ["--headless", "-u", str(users), "-r", str(users), "--run-time", run_time, "--host", mock.url,
            "--scenario", str(scenario), "--report-dir", str(out / "reports"), "--only-summary"]


def only_run_dir(reports: Path) -> Path:
    dirs = [d for d in reports.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def read_trials(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_run_folder(run_dir: Path, created_orders: int) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The run folder of an asyncio run, every trial once, and the race verdicts the model predicts."""
    for name in ("run.json", "summary.json", "trials.csv", "history.jsonl", "audits.jsonl", "report.html",
                 "race_rate.png", "junit.xml"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    rows = read_trials(run_dir)
    order_ids = [r["order_id"] for r in rows]
    assert len(order_ids) == len(set(order_ids)) == created_orders == summary["run"]["trials"]
    assert all(r["agree"] == "True" for r in rows), [r["disagreement"] for r in rows if r["agree"] != "True"]
    guards = summary["guards"]
    assert guards["none"]["races"] > 0
    assert guards["finished-check"]["trials"] > 0
    assert guards["finished-check"]["window"]["races"] == 0  # |offset| >= 50 ms
    for r in rows:  # the race model with D = 200 ms, S = 0 for the unguarded trials
        if r["guard"] == "none" and r["outcome"] != "indeterminate":
            offset = float(r["offset_ms"])
            expected = "race" if 0 < offset < DELAY_MS else ("invoice_refused" if offset > 0 else "change_refused")
            assert r["outcome"] == expected, r
    return summary, rows


# --------------------------------------------------------------------------- headless runs


def test_headless_run_counts_races_and_writes_the_report(mock: MockProcess, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path)
    before = orders_on(mock)
    rc, out = run_locust([*headless(mock, scenario, tmp_path, 12, "5s"), "--csv", str(tmp_path / "locust"),
                          "--html", str(tmp_path / "locust.html")], tmp_path / "locust.log")
    assert rc in (0, 3), out[-3000:]
    run_dir = only_run_dir(tmp_path / "reports")
    summary, rows = check_run_folder(run_dir, orders_on(mock) - before)
    if rc == 3:  # a busy machine: late trials are not judged and may leave the gate INCONCLUSIVE, never FAIL
        assert summary["gate"]["verdict"] == "inconclusive" and summary["timing"]["late"] > 0, summary["gate"]
    else:
        assert summary["gate"]["passed"] is True and "gate: PASS" in out
    assert "PASS finished-check: worst bin " in out
    # Locust's own outputs, with the live per-guard outcome rows and the background reader's requests.
    assert (tmp_path / "locust.html").is_file()
    with (tmp_path / "locust_stats.csv").open(encoding="utf-8") as fh:
        stats = {(r["Type"], r["Name"]): r for r in csv.DictReader(fh)}
    # Locust rewrites _stats.csv every second, so it may miss the last trials; the run folder does not.
    # Locust counts the client-side outcome; the summary does not judge late trials (not_judged).
    none = summary["guards"]["none"]
    assert 0 < int(stats[("TRIAL", "none race")]["Request Count"]) <= none["races"] + none["not_judged"]
    assert ("TRIAL", "finished-check race") not in stats
    assert int(stats[("GET", "GET /api/oms/pvt/orders/{orderId}")]["Request Count"]) > len(rows)  # + readers
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert meta["target"] == {"kind": "locust", "url": mock.url}
    assert meta["load"]["requests"]["failures"] == 0


def test_master_and_two_workers_count_every_trial_once(mock: MockProcess, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path)
    port = free_port()
    before = orders_on(mock)
    master = start([*headless(mock, scenario, tmp_path, 16, "5s"), "--master", "--expect-workers", "2",
                    "--expect-workers-max-wait", "30", "--master-bind-host", "127.0.0.1",
                    "--master-bind-port", str(port)], tmp_path / "master.log")
    procs = [master]
    try:
        for n in range(2):
            procs.append(start(["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                               tmp_path / f"worker{n}.log"))
        rc = master.wait(timeout=60)
        out = (tmp_path / "master.log").read_text(encoding="utf-8", errors="replace")
        assert rc == 0, out[-3000:]
        for p in procs[1:]:
            p.wait(timeout=15)
    finally:
        stop(procs)
    run_dir = only_run_dir(tmp_path / "reports")
    _, rows = check_run_folder(run_dir, orders_on(mock) - before)
    workers = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["load"]["workers"]
    assert len(workers) == 2
    for info in workers.values():  # every worker ran trial users, and all its trials were counted
        assert info["trials"] > 0
        assert info["trials"] == info["created"] == info["recorded"]
    assert sum(w["trials"] for w in workers.values()) == len(rows)


def test_failing_threshold_sets_exit_code_with_processes(mock: MockProcess, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, FAILING_THRESHOLD)
    port = free_port()  # not Locust's default 5557: another run on the machine may hold it
    rc, out = run_locust([*headless(mock, scenario, tmp_path, 6, "3s"), "--processes", "2",
                          "--master-bind-port", str(port), "--master-port", str(port)],
                         tmp_path / "locust.log")
    assert rc == 1, out[-3000:]
    failed = [ln for ln in out.splitlines() if ln.startswith("FAIL ")]
    assert len(failed) == 1, out[-3000:]
    assert failed[0].startswith("FAIL none: worst bin ") and "a race proves the rate > max 0" in failed[0]
    assert " finished-check: worst bin " in out and "gate: FAIL" in out
    summary = json.loads((only_run_dir(tmp_path / "reports") / "summary.json").read_text(encoding="utf-8"))
    assert summary["gate"]["passed"] is False


def test_gevent_process_runs_no_asyncio_core(tmp_path: Path) -> None:
    """The locustfile under Locust's monkey-patching loads the pure core only."""
    code = ("import locust, runpy, sys, json; runpy.run_path(sys.argv[1]); "
            f"print(json.dumps(sorted(m for m in {list(ASYNCIO_MODULES)!r} if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code, str(LOCUSTFILE)], cwd=ROOT, env=child_env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = set(json.loads(res.stdout.strip().splitlines()[-1]))
    # Everything that sends requests or runs an event loop stays out of the gevent process.
    assert loaded == set(), loaded


def test_load_modules_import_no_asyncio_core() -> None:
    load_modules = sorted((ROOT / "harness" / "load").glob("*.py"))
    for path in (LOCUSTFILE, *load_modules, ROOT / "harness" / "core" / "wire.py",
                 ROOT / "harness" / "core" / "results.py", *PURE_GUARD_MODULES):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        banned = {*ASYNCIO_MODULES, "asyncio"}
        if path in PURE_GUARD_MODULES:
            banned |= {"httpx", "gevent", "locust"}
        assert not imported & banned, (path, imported & banned)


# --------------------------------------------------------------------------- pure parts


def test_guard_names_match_the_guard_registry() -> None:
    from harness.core.guards import GUARDS

    assert names.GUARD_NAMES == tuple(GUARDS)


def test_guard_decisions() -> None:
    assert wire.all_changes_terminal({"requests": []})
    assert wire.all_changes_terminal({"requests": [{"finished": True}, {"finished": True}]})
    assert not wire.all_changes_terminal({"requests": [{"finished": True}, {"finished": False}]})
    assert not wire.all_changes_terminal("not json")  # cannot tell: keep polling
    # a canceled Change is over although `finished` stays false (HC-ADAPT)
    assert wire.all_changes_terminal({"requests": [{"finished": True}, {"finished": False, "status": "canceled"}]})
    assert not wire.all_changes_terminal({"requests": [{"finished": False, "status": "canceling"}]})
    order = {"value": 18000, "packageAttachment": {"packages": [
        {"type": "Output", "invoiceValue": 5000}, {"type": "Input", "invoiceValue": 1000}]}}
    assert wire.remaining_value(order) == 13000
    assert wire.invoice_settled({"status": "invoiced"})
    assert not wire.invoice_settled({"status": "invoice"})


def test_clock_offset_is_zero_on_one_host_and_estimated_across_hosts() -> None:
    same_host = [(1_000_000, 1_400_000, 2_000_000), (5_000_000, 5_100_000, 5_300_000)]
    assert records.clock_offset_ns(same_host) == 0
    other = [(1_000_000, 9_000_000_600_000, 2_000_000), (5_000_000, 9_000_004_150_000, 5_300_000)]
    assert records.clock_offset_ns(other) == 9_000_004_150_000 - 5_150_000  # the shortest round trip


def _record(order_id: str, worker: str, seq: int, invoice_status: int = 200) -> dict[str, Any]:
    t0 = 10_000_000_000
    change = RequestEvent("change", "PATCH", "/c", t0, t0 + 100_000, t0 + 900_000, 202,
                          response_body={"totalChangeValue": -5000})
    invoice = RequestEvent("invoice", "POST", "/i", t0 + 60_000_000, t0 + 60_200_000, t0 + 61_000_000,
                           invoice_status)
    return records.make_record(worker=worker, local_seq=seq, guard="none", offset_ms=60.0, order_id=order_id,
                               initial_value=23000, invoice_value=23000, invoice_number=f"NF-{order_id}",
                               events=[change, invoice], change=change, invoice=invoice, t0_ns=t0,
                               began_ns=t0 - 5_000_000, ended_ns=t0 + 70_000_000, planned_delay_ms=200.0)


def test_records_are_counted_once_by_order_and_judged_like_the_core() -> None:
    c = records.Collector()
    assert c.add(_record("1000002-01", "w1", 0))
    assert c.add(_record("1000001-01", "w2", 0))
    assert not c.add(_record("1000002-01", "w1", 0))  # the same trial twice
    assert c.duplicates == 1
    assert [r["order_id"] for r in c.ordered()] == ["1000001-01", "1000002-01"]  # mock creation order
    assert c.per_worker() == {"w1": 1, "w2": 1}
    rec = next(c.ordered())
    assert records.record_outcome(rec) == ("race", "")
    audit = {"verdict": "race", "finalValue": 18000, "invoicedTotal": 23000,
             "invoices": [{"invoiceNumber": "NF-1000001-01", "accepted": True, "actedNs": 10_060_500_000}],
             "changes": [{"accepted": True, "delayMs": 200.0, "actedNs": 10_000_300_000,
                          "finishedNs": 10_200_300_000}]}
    result = judge.judge_record(rec, 0, audit, 5.0)
    assert (result.outcome, result.audit_verdict, result.agree) == ("race", "race", True)
    assert math.isclose(result.client_offset_error_ms, 0.1)
    assert math.isclose(result.server_offset_error_ms, 0.2)
    assert math.isclose(result.change_acted_ms, 0.3)
    # The same trial seen from a worker whose clock is 5 s behind the mock's.
    shifted = {**rec, "server_offset_ns": 5_000_000_000}
    moved = {**audit, "invoices": [{**audit["invoices"][0], "actedNs": 15_060_500_000}],
             "changes": [{**audit["changes"][0], "actedNs": 15_000_300_000, "finishedNs": 15_200_300_000}]}
    again = judge.judge_record(shifted, 0, moved, 5.0)
    assert math.isclose(again.change_acted_ms, 0.3) and math.isclose(again.server_offset_error_ms, 0.2)


def test_fetch_audits_waits_for_pending_changes() -> None:
    calls: list[list[str]] = []
    state = {"reads": 0}

    class FakeAdmin:
        def call(self, method: str, path: str, body: Any = None) -> Any:
            ids = body["orderIds"]
            calls.append(ids)
            state["reads"] += 1
            verdict = "pending" if state["reads"] == 1 else "race"
            return {"audits": [{"orderId": i, "verdict": verdict} for i in ids]}

    audits = judge.fetch_audits(FakeAdmin(), ["a", "b", "c"], wait_s=5, batch=2, sleep=lambda s: None)  # type: ignore[arg-type]
    assert {k: v["verdict"] for k, v in audits.items() if v} == {"a": "race", "b": "race", "c": "race"}
    assert calls[:2] == [["a", "b"], ["c"]]


def test_gate_fails_on_the_mock_error_rate_with_one_line_per_threshold() -> None:
    summary = {"gate": {"verdict": "pass", "results": ["PASS finished-check: worst bin 100 ms 0/60 races, ..."]}}
    ok = judge.gate(summary, judge.RequestFigures(1000, 5), 0.01)
    assert ok.exit_code == 0 and ok.lines[-1] == "gate: PASS"
    assert ok.lines[0] == summary["gate"]["results"][0]
    undecided = judge.gate({"gate": {"verdict": "inconclusive", "results": ["INCONCLUSIVE ..."]}},
                           judge.RequestFigures(1000, 5), 0.01)
    assert undecided.exit_code == 3 and undecided.lines[-1] == "gate: INCONCLUSIVE"
    bad = judge.gate(summary, judge.RequestFigures(1000, 50), 0.01,
                       skipped=["serialized: threshold skipped, no serialized users in this load test"])
    assert bad.exit_code == 1
    assert [ln for ln in bad.lines if ln.startswith("FAIL")] == [
        "FAIL mock error rate: 0.0500 > max 0.01 (50 of 1000 requests failed)"]
    assert bad.lines[-1] == "gate: FAIL"
    assert "threshold skipped: serialized: threshold skipped, no serialized users in this load test" in bad.lines


def test_thresholds_on_guards_without_users_are_skipped() -> None:
    scen = {"name": "x", "guards": {"names": ["none", "finished-check", "serialized"]},
            "thresholds": [{"guard": "serialized", "max_upper": 0.1}, {"guard": "none", "min_lower": 0.5}]}
    out, skipped = judge.load_scenario_dict(scen, {"none", "finished-check"})
    assert out["guards"]["names"] == ["none", "finished-check"]
    assert out["thresholds"] == [{"guard": "none", "min_lower": 0.5}]
    assert skipped == ["serialized: threshold skipped, no serialized users in this load test"]


def test_collector_ignores_records_after_the_run_is_written(tmp_path: Path) -> None:
    c = records.Collector()
    c.closed = True
    assert not c.add(_record("1000003-01", "w", 0)) and c.late == 1
    started = time.monotonic()
    verdict = judge.finish(admin=judge.MockAdmin("http://127.0.0.1:9"), collector=c,
                             scenario_dict={"name": "x", "guards": {"names": ["none"]}, "thresholds": []},
                             guards_run={"none"}, report_dir=tmp_path, meta={},
                             figures=judge.RequestFigures(0, 0), max_error_rate=0.01, wall_s=1.0, audit_wait_s=1.0)
    assert time.monotonic() - started < 5
    assert verdict.lines[0] == "no trials recorded: no run folder written" and verdict.exit_code == 0
    assert not any(tmp_path.iterdir())

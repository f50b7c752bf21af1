"""Load mode (Locust): the run folder of a Locust run, written with the core's own code.

At test stop the master (or the single local process) reads the mock's audit
of every recorded order (`harness.load.records`), judges each trial with the
same pure code as the asyncio core (`harness.core`),
writes the run folder with `harness.runfolder.RunWriter`, builds the report with
`harness.report.build_report`, and evaluates the gate: the scenario's race
thresholds plus the mock's error rate.

Synchronous code only: no asyncio code (runner, client, session, simulate,
integration, sender, targets) is imported here, and neither is gevent or
Locust, so this module is unit-testable in a plain process. Under Locust,
gevent's monkey-patching makes its blocking calls (urllib, time.sleep)
cooperative.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from harness.core.names import GUARD_NAMES
from harness.core.results import TrialResult, setup_failed_result, trial_result
from harness.core.timing import scenario_tolerance_ms
from harness.core.thresholds import VERDICT_EXIT_CODES
from harness.errors import RaceHarnessError
from harness.load.records import Collector, event_from_dict, timed_events
from harness.runfolder import RunWriter, new_run_dir

AUDIT_BATCH = 200  # order ids per POST /_mock/audits
ADMIN_HEADER = "X-Mock-Admin-Token"


class LoadRunError(RaceHarnessError):
    """The load run could not read the mock or write its run folder."""


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Headers:
    """Request headers from the environment variables the scenario names (secrets never in files)."""

    vtex: dict[str, str] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, app_key_env: str, app_token_env: str, admin_token_env: str,
                 environ: Mapping[str, str] | None = None) -> Headers:
        env = os.environ if environ is None else environ
        key, token, admin = env.get(app_key_env) or None, env.get(app_token_env) or None, env.get(admin_token_env) or None
        vtex = {"X-VTEX-API-AppKey": key, "X-VTEX-API-AppToken": token} if key and token else {}
        return cls(vtex=vtex, admin={ADMIN_HEADER: admin} if admin else {})


# --------------------------------------------------------------------------- the mock's admin API


class MockAdmin:
    """Blocking JSON calls to the mock (`/_mock` admin API), with a timeout."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", **self.headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace")
            raise LoadRunError(f"mock {method} {path}: HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            raise LoadRunError(f"mock {method} {path}: {getattr(err, 'reason', err)}") from None
        return json.loads(raw) if raw else None


def fetch_audits(admin: MockAdmin, order_ids: Sequence[str], *, wait_s: float, batch: int = AUDIT_BATCH,
                 poll_s: float = 0.1, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, dict[str, Any] | None]:
    """The mock's audit of each order (None when it has none), re-reading `pending` ones
    (a Change not finished yet) for up to `wait_s`."""
    audits: dict[str, dict[str, Any] | None] = {}

    def read(ids: Sequence[str]) -> None:
        for start in range(0, len(ids), batch):
            chunk = list(ids[start:start + batch])
            try:
                got = admin.call("POST", "/_mock/audits", {"orderIds": chunk})["audits"]
                audits.update({a["orderId"]: a for a in got})
            except (LoadRunError, KeyError, TypeError):
                for oid in chunk:  # one unknown id fails a batch: read them one by one
                    try:
                        audits[oid] = admin.call("GET", f"/_mock/orders/{oid}/audit")
                    except LoadRunError:
                        audits[oid] = None

    ids = [o for o in dict.fromkeys(order_ids) if o]
    read(ids)
    stop = now() + wait_s
    while True:
        pending = [o for o in ids if (audits.get(o) or {}).get("verdict") == "pending"]
        if not pending or now() >= stop:
            return audits
        sleep(poll_s)
        read(pending)


# --------------------------------------------------------------------------- judging and writing


def judge_record(record: Mapping[str, Any], trial_id: int, audit: dict[str, Any] | None,
                 tolerance_ms: float) -> TrialResult:
    """The trials.csv row of a record: the core's judgement (client outcome cross-checked with the audit),
    `late` against the run's timing tolerance as in the core."""
    duration_ms = (int(record["ended_ns"]) - int(record["began_ns"])) / 1e6
    common = {"trial_id": trial_id, "seq": trial_id, "guard": str(record["guard"]),
              "offset_ms": float(record["offset_ms"]), "order_id": str(record.get("order_id") or "")}
    if record.get("setup_error"):
        return setup_failed_result(**common, duration_ms=duration_ms, error=str(record["setup_error"]))
    events, change, invoice = timed_events(record)
    return trial_result(
        **common, initial_value=int(record["initial_value"]), change=change, invoice=invoice,
        invoice_value=int(record["invoice_value"]), invoice_number=str(record["invoice_number"]),
        guard_error=str(record.get("guard_error") or ""), planned_delay_ms=record.get("planned_delay_ms"),
        t0_ns=int(record["t0_ns"]), audit=audit, duration_ms=duration_ms, tolerance_ms=tolerance_ms,
        events=events, server_offset_ns=int(record.get("server_offset_ns") or 0),
    )


def load_scenario_dict(scenario_dict: Mapping[str, Any], guards_run: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """The scenario as this load run ran it: its guards are the user classes that ran, and
    thresholds on other guards are dropped (returned as one line each, for the log)."""
    ran = [g for g in GUARD_NAMES if g in set(guards_run)]
    out = json.loads(json.dumps(scenario_dict))
    out["guards"]["names"] = ran
    kept, skipped = [], []
    for t in out.get("thresholds") or []:
        (kept if t.get("guard") in ran else skipped).append(t)
    out["thresholds"] = kept
    return out, [f"{t.get('guard')}: threshold skipped, no {t.get('guard')} users in this load test" for t in skipped]


AuditReader = Callable[[Sequence[str]], Mapping[str, "dict[str, Any] | None"]]


def write_run(run_dir: Path, meta: dict[str, Any], records: Iterable[Mapping[str, Any]], audits: AuditReader,
              wall_s: float, tolerance_ms: float, extra: dict[str, Any] | None = None, batch: int = AUDIT_BATCH) -> int:
    """Write run.json, trials.csv, history.jsonl and audits.jsonl: the same folder as an asyncio run.

    `records` in execution order (trial ids are their positions), judged in
    batches with `audits(order_ids)`, so memory holds one batch. Returns the
    number of trials written."""
    writer = RunWriter(run_dir, meta)
    trial_id = 0
    try:
        it = iter(records)
        while chunk := list(itertools.islice(it, batch)):
            got = audits([str(r.get("order_id") or "") for r in chunk if r.get("order_id")])
            for record in chunk:
                order_id = str(record.get("order_id") or "")
                audit = got.get(order_id) if order_id else None
                result = judge_record(record, trial_id, audit, tolerance_ms)
                t0 = int(record["t0_ns"])
                events = [event_from_dict(e).to_json(trial_id, result.guard, t0) for e in record["events"]]
                writer.add(result, events, audit)
                trial_id += 1
    finally:
        writer.close(interrupted=False, wall_s=wall_s,
                     extra={**(extra or {}), "timing": {"tolerance_ms": tolerance_ms}})
    return trial_id


# --------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class RequestFigures:
    """The mock's requests in a Locust run (the TRIAL outcome entries left out)."""

    requests: int
    failures: int
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": self.error_rate}


@dataclass
class Verdict:
    exit_code: int
    lines: list[str]  # one per threshold / accounting reason, then "gate: PASS" / "gate: FAIL" / "gate: INCONCLUSIVE"
    run_dir: Path | None = None
    summary: dict[str, Any] | None = None


def error_rate_line(figures: RequestFigures, max_error_rate: float) -> tuple[bool, str]:
    ok = figures.error_rate <= max_error_rate
    return ok, (f"mock error rate: {figures.error_rate:.4f} {'<=' if ok else '>'} max {max_error_rate:g} "
                f"({figures.failures} of {figures.requests} requests failed)")


def gate(summary: Mapping[str, Any] | None, figures: RequestFigures, max_error_rate: float,
         skipped: Sequence[str] = ()) -> Verdict:
    """The report's gate verdict (summary.json `gate`) and the mock error rate, combined: exit 1 when
    either fails, else 3 when the race gate is INCONCLUSIVE, else 0; one line per threshold."""
    lines: list[str] = []
    verdict = "pass"
    if summary is not None:
        g = summary["gate"]
        lines += list(g["results"])
        verdict = g["verdict"]
    lines += [f"threshold skipped: {s}" for s in skipped]
    ok, line = error_rate_line(figures, max_error_rate)
    lines.append(f"{'PASS' if ok else 'FAIL'} {line}")
    if not ok:
        verdict = "fail"
    lines.append(f"gate: {verdict.upper()}")
    return Verdict(VERDICT_EXIT_CODES[verdict], lines, summary=dict(summary) if summary is not None else None)


def finish(
    *,
    admin: MockAdmin,
    collector: Collector,
    scenario_dict: Mapping[str, Any],
    guards_run: Iterable[str],
    report_dir: Path,
    meta: dict[str, Any],
    figures: RequestFigures,
    max_error_rate: float,
    wall_s: float,
    audit_wait_s: float,
    extra: dict[str, Any] | None = None,
) -> Verdict:
    """Audits -> run folder -> report -> gate. No run folder when no trial was recorded."""
    collector.closed = True
    scen, skipped = load_scenario_dict(scenario_dict, guards_run)
    if not len(collector):
        verdict = gate(None, figures, max_error_rate, skipped)
        verdict.lines.insert(0, "no trials recorded: no run folder written")
        return verdict
    run_dir = new_run_dir(report_dir, f"{scen['name']}-locust")
    meta = {**meta, "scenario": scen, "load": {**(meta.get("load") or {}), "requests": figures.as_dict(),
                                               "skipped_thresholds": skipped}}
    stop = time.monotonic() + audit_wait_s  # one bound for the whole run: later batches' Changes are done

    def audits(order_ids: Sequence[str]) -> Mapping[str, dict[str, Any] | None]:
        return fetch_audits(admin, order_ids, wait_s=max(0.0, stop - time.monotonic()))

    write_run(run_dir, meta, collector.ordered(), audits, wall_s, scenario_tolerance_ms(scen), extra)

    from harness.report import build_report  # pandas + matplotlib: only where a report is written

    report = build_report(run_dir)
    summary = report.summary
    verdict = gate(summary, figures, max_error_rate, skipped)
    verdict.run_dir = run_dir
    verdict.lines.insert(0, _summary_line(summary, report.paths.html))
    if summary["timing"]["warning"]:
        verdict.lines.insert(1, f"warning: {summary['timing']['warning']}")
    return verdict


def _summary_line(summary: Mapping[str, Any], html: Path) -> str:
    parts = []
    for name, g in summary["guards"].items():
        w = g.get("window") or {}
        rate = g.get("rate")
        parts.append(f"{name} races {g['races']}/{g['trials']}"
                     + (f" ({rate:.3f})" if isinstance(rate, (int, float)) and math.isfinite(rate) else "")
                     + (f", |offset|>={w.get('min_abs_offset_ms', 0):g} ms {w.get('races')}/{w.get('trials')}"
                        if w else ""))
    return f"load run: {summary['run']['trials']} trials; " + "; ".join(parts) + f"; report: {html}"


__all__ = [
    "ADMIN_HEADER",
    "AUDIT_BATCH",
    "Headers",
    "LoadRunError",
    "MockAdmin",
    "RequestFigures",
    "Verdict",
    "error_rate_line",
    "fetch_audits",
    "finish",
    "gate",
    "judge_record",
    "load_scenario_dict",
    "write_run",
]

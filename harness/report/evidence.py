"""Evidence: pick the raced trial to show and read what the run folder holds about it.

history.jsonl and audits.jsonl are streamed (a long run's history is large) and
tolerated when cut short: unparsable lines are counted, not fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd

from harness.core.oracle import Outcome


@dataclass
class JsonlStats:
    """What scanning one jsonl file found: whether it exists, its lines, the unparsable ones."""

    exists: bool = False
    lines: int = 0
    bad: int = 0


def scan_jsonl(path: Path, trial_id: int | None, stats: JsonlStats) -> Iterator[dict[str, Any]]:
    """Yield the objects of `path` that belong to `trial_id`, counting lines and
    unparsable ones. Streams: history.jsonl of a long run can be large."""
    for obj in _parsed(path, stats):
        if isinstance(obj, dict) and trial_id is not None and obj.get("trial_id") == trial_id:
            yield obj


def _parsed(path: Path, stats: JsonlStats) -> Iterator[Any]:
    """Every parsable line's value, counting lines and unparsable ones in `stats`."""
    if not path.exists():
        return
    stats.exists = True
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            stats.lines += 1
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                stats.bad += 1  # a crash can cut the last line


@dataclass
class AuditScan:
    """What the report takes from audits.jsonl, in one pass (a long run's file is large)."""

    stats: JsonlStats
    trial: list[dict[str, Any]]  # the records of the evidence trial (as `scan_jsonl` yields them)
    # (s since the first Change, processing ms, queue wait ms) of every accepted Change
    delays: list[tuple[float, float, float]]
    faults: dict[str, dict[str, int]]  # {route: {kind: count}} of the faults and 429s the mock injected


def scan_audits(path: Path, trial_id: int | None) -> AuditScan:
    """audits.jsonl read once: the evidence trial's records and the line counts (as `scan_jsonl`), the
    accepted Changes' delays (the Change-delay figure) and the injected faults (empty when none)."""
    scan = AuditScan(JsonlStats(), [], [], {})
    changes: list[tuple[int, float, float]] = []
    for record in _parsed(path, scan.stats):
        if not isinstance(record, dict):
            continue
        if trial_id is not None and record.get("trial_id") == trial_id:
            scan.trial.append(record)
        if isinstance(record.get("audit"), dict):
            changes.extend(_accepted_changes(record["audit"]))
            _count_faults(record["audit"], scan.faults)
    scan.delays = _since_first(changes)
    return scan


def audit_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every audits.jsonl record {trial_id, order_id, audit} (streamed; unparsable or empty ones skipped)."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line) or {}
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("audit"), dict):
                yield record


# The kinds of fault an order audit's `faults` lists (the mock's faults.py and rate limits), in report order.
FAULT_KINDS = ("429", "fault-500", "fault-503", "slow", "response-lost")


def _count_faults(audit: Mapping[str, Any], counts: dict[str, dict[str, int]]) -> None:
    for f in audit.get("faults") or []:
        if isinstance(f, dict) and f.get("kind") in FAULT_KINDS:
            route = counts.setdefault(str(f.get("route")), {})
            route[f["kind"]] = route.get(f["kind"], 0) + 1


def change_delay_informative(points: Sequence[tuple[float, float, float]]) -> bool:
    """Whether the Change-delay figure says something: some Change queued, or the drawn delays vary
    (a distribution). A fixed delay without a queue would plot one flat line."""
    if not points:
        return False
    processing = [p[1] for p in points]
    return any(p[2] > 0.5 for p in points) or max(processing) - min(processing) > 0.5


def _accepted_changes(audit: Mapping[str, Any]) -> Iterator[tuple[int, float, float]]:
    """(acted ns, processing ms, queue wait ms) of the audit's accepted Changes."""
    for c in audit.get("changes") or []:
        if c.get("accepted") and c.get("actedNs") is not None and c.get("delayMs") is not None:
            yield c["actedNs"], float(c["delayMs"]), float(c.get("queueWaitMs") or 0.0)


def _since_first(raw: list[tuple[int, float, float]]) -> list[tuple[float, float, float]]:
    if not raw:
        return []
    t0 = min(r[0] for r in raw)
    return sorted(((ns - t0) / 1e9, d, w) for ns, d, w in raw)


def pick_evidence(df: pd.DataFrame) -> pd.Series | None:
    """The raced trial to show, deterministically: unguarded first (the ticket's
    case), then one whose client view and audit agree, then Change-first
    (offset > 0), then the offset nearest the median raced offset (a typical
    race, not a borderline one), then the lowest trial_id."""
    if df.empty:
        return None
    races = df[df["outcome"] == Outcome.RACE.value]
    if races.empty:
        return None
    keyed = races.assign(_g=races["guard"] != "none", _a=~races["agree"].astype(bool), _p=races["offset_ms"] <= 0)
    best = keyed.sort_values(["_g", "_a", "_p"], kind="stable")
    first = best.iloc[0]
    peers = best[(best["_g"] == first["_g"]) & (best["_a"] == first["_a"]) & (best["_p"] == first["_p"])]
    median = float(peers["offset_ms"].median())
    peers = peers.assign(_d=(peers["offset_ms"] - median).abs())
    return peers.sort_values(["_d", "trial_id"], kind="stable").iloc[0].drop(["_g", "_a", "_p", "_d"])


def build_evidence(row: pd.Series, audit: Mapping[str, Any] | None, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The raced trial's numbers and accepted invoice(s), from its audit, else from what the client sent."""
    invoices: list[dict[str, Any]] = []
    source = "none"
    if audit:
        for inv in audit.get("invoices") or []:
            if isinstance(inv, Mapping) and inv.get("accepted"):
                invoices.append(
                    {
                        "invoiceNumber": inv.get("invoiceNumber"),
                        "invoiceValue": inv.get("invoiceValue"),
                        "validatedAgainst": inv.get("validatedAgainst"),
                        "status": inv.get("status"),
                        "body": inv.get("body"),
                    }
                )
        source = "audit" if invoices else source
    if not invoices:
        # No audit for this trial: fall back to what the client sent and saw accepted.
        for ev in history:
            status = ev.get("status")
            if ev.get("kind") == "invoice" and isinstance(status, int) and 200 <= status < 300:
                body = ev.get("request_body")
                value = body.get("invoiceValue") if isinstance(body, Mapping) else None
                invoices.append({"invoiceNumber": None, "invoiceValue": value, "validatedAgainst": None,
                                 "status": status, "body": body})
        source = "history" if invoices else "none"
    audit = audit or {}

    def cents(audit_key: str, column: str) -> int:
        # The audit is the mock's own record, so it wins; trials.csv carries the same numbers otherwise.
        v = audit.get(audit_key)
        return v if isinstance(v, int) and not isinstance(v, bool) else int(row[column])

    final = cents("finalValue", "final_value")
    total = cents("invoicedTotal", "invoiced_total")
    initial = cents("initialValue", "initial_value")
    return {
        "trial_id": int(row["trial_id"]),
        "order_id": str(row["order_id"]),
        "guard": str(row["guard"]),
        "offset_ms": float(row["offset_ms"]),
        "initial_value": initial,
        "final_value": final,
        "invoiced_total": total,
        "over_by": total - final,
        "agree": bool(row["agree"]),
        "invoice_source": source,
        "accepted_invoices": invoices,
    }


__all__ = ["AuditScan", "JsonlStats", "audit_records", "build_evidence", "pick_evidence", "scan_audits", "scan_jsonl"]

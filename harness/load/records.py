"""Load mode (Locust): trial records, what a trial user delivers for each finished trial.

A record is a plain dict (ints, floats, strings, lists, dicts, None) so it can
travel from a Locust worker to the master as a message. The master (or the
single local process) keeps them in a `Collector`, each trial once (by order
id), and `harness.load.judge` turns them into the run folder at test stop.
Also here: the per-user RNG seed and the mock-clock offset estimate a user
takes before its first trial.

Synchronous, plain Python: no asyncio code, no gevent, no Locust, so it is
unit-testable in a plain process.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict, fields
from typing import IO, Any, Iterator, Mapping, Sequence

from harness.core.history import RequestEvent
from harness.core.oracle import Outcome, client_outcome

RECORD_VERSION = 1
TRIAL_REQUEST_TYPE = "TRIAL"  # Locust request_type of the per-trial outcome entries (not mock requests)
_EVENT_FIELDS = tuple(f.name for f in fields(RequestEvent))


def user_seed(scenario_seed: int, worker: str, guard: str, serial: int) -> int:
    """A 63-bit seed for one Locust user's RNG (offsets, pinned delays); hashlib, not the salted hash()."""
    digest = hashlib.sha256(f"{scenario_seed}:locust:{worker}:{guard}:{serial}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def clock_offset_ns(samples: Sequence[tuple[int, int, int]], tolerance_ns: int = 500_000) -> int:
    """The mock's monotonic clock minus ours, from (sent, mock's monotonicNs, received) samples.

    The sample with the shortest round trip bounds the offset best. On one host
    both processes read the same monotonic clock, so the mock's reading lies
    inside the round trip: that gives 0 (exact), not an estimate. Otherwise the
    NTP-style midpoint estimate (error <= half the round trip).
    """
    if not samples:
        return 0
    sent, server, received = min(samples, key=lambda s: s[2] - s[0])
    half_rtt = (received - sent) // 2
    offset = server - (sent + received) // 2
    return 0 if abs(offset) <= half_rtt + tolerance_ns else offset


def event_dict(event: RequestEvent) -> dict[str, Any]:
    return asdict(event)


def event_from_dict(data: Mapping[str, Any]) -> RequestEvent:
    return RequestEvent(**{k: data[k] for k in _EVENT_FIELDS if k in data})


def make_record(
    *,
    worker: str,
    local_seq: int,
    guard: str,
    offset_ms: float,
    events: Sequence[RequestEvent],
    t0_ns: int,
    began_ns: int,
    ended_ns: int,
    order_id: str = "",
    initial_value: int = -1,
    invoice_value: int = -1,
    invoice_number: str = "",
    change: RequestEvent | None = None,
    invoice: RequestEvent | None = None,
    guard_error: str = "",
    planned_delay_ms: float | None = None,
    server_offset_ns: int = 0,
    setup_error: str = "",
) -> dict[str, Any]:
    """One finished trial as a message-safe dict (ints, floats, strings, lists, dicts, None).

    `change`/`invoice` must be elements of `events` (they are stored as indices)."""
    events = list(events)
    return {
        "v": RECORD_VERSION,
        "worker": worker,
        "local_seq": local_seq,
        "guard": guard,
        "offset_ms": float(offset_ms),
        "order_id": order_id,
        "initial_value": initial_value,
        "invoice_value": invoice_value,
        "invoice_number": invoice_number,
        "guard_error": guard_error,
        "setup_error": setup_error,
        "planned_delay_ms": planned_delay_ms,
        "t0_ns": t0_ns,
        "began_ns": began_ns,
        "ended_ns": ended_ns,
        "server_offset_ns": server_offset_ns,
        "events": [event_dict(e) for e in events],
        "change_index": _index_of(events, change),
        "invoice_index": _index_of(events, invoice),
    }


def _index_of(events: list[RequestEvent], event: RequestEvent | None) -> int:
    if event is None:
        return -1
    return next(i for i, e in enumerate(events) if e is event)


def timed_events(record: Mapping[str, Any]) -> tuple[list[RequestEvent], RequestEvent | None, RequestEvent | None]:
    events = [event_from_dict(e) for e in record["events"]]
    ci, ii = record.get("change_index", -1), record.get("invoice_index", -1)
    return events, (events[ci] if ci >= 0 else None), (events[ii] if ii >= 0 else None)


def record_outcome(record: Mapping[str, Any]) -> tuple[str, str]:
    """The client-side outcome of a record (what the trial could know without the audit)."""
    if record.get("setup_error"):
        return Outcome.INDETERMINATE.value, f"setup failed: {record['setup_error']}"
    _, change, invoice = timed_events(record)
    outcome, detail = client_outcome(change, invoice, int(record["invoice_value"]), int(record["initial_value"]),
                                     str(record.get("guard_error") or ""))
    return outcome.value, detail


def record_key(record: Mapping[str, Any]) -> str:
    """Trials are counted once, by order id (the mock's id is unique); a trial without one by worker/seq."""
    return str(record.get("order_id") or f"{record.get('worker')}#{record.get('local_seq')}")


def _order_number(order_id: str) -> int | None:
    head = order_id.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _execution_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The mock numbers orders in creation order: one clock for every worker."""
    n = _order_number(str(record.get("order_id") or ""))
    return (0, n, "") if n is not None else (1, 0, record_key(record))


class Collector:
    """The master's (or local process's) records of one test, keyed by order id.

    Records are spooled to a temporary file as they arrive (a long run holds
    hundreds of thousands, a few KB each); memory keeps only an index."""

    def __init__(self) -> None:
        self._spool: IO[bytes] = tempfile.TemporaryFile("w+b")
        self._index: dict[str, tuple[tuple[Any, ...], int]] = {}  # key -> (execution key, spool offset)
        self._workers: Counter[str] = Counter()
        self._guards: Counter[str] = Counter()
        self.duplicates = 0
        self.late = 0  # records that arrived after the run folder was written
        self.closed = False
        self.drained: dict[str, dict[str, Any]] = {}  # worker id -> its "drained" report

    def add(self, record: Mapping[str, Any]) -> bool:
        if self.closed:
            self.late += 1
            return False
        key = record_key(record)
        if key in self._index:
            self.duplicates += 1
            return False
        pos = self._spool.seek(0, os.SEEK_END)
        self._spool.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._index[key] = (_execution_key(record), pos)
        self._workers[str(record.get("worker"))] += 1
        self._guards[str(record.get("guard"))] += 1
        return True

    def __len__(self) -> int:
        return len(self._index)

    def ordered(self) -> Iterator[dict[str, Any]]:
        """The records in execution order (the mock's order creation), read back one at a time."""
        self._spool.flush()
        for _, pos in sorted(self._index.values()):
            self._spool.seek(pos)
            yield json.loads(self._spool.readline())

    def per_worker(self) -> dict[str, int]:
        return dict(sorted(self._workers.items()))

    def guards(self) -> set[str]:
        return set(self._guards)

    def close(self) -> None:
        self._spool.close()


__all__ = [
    "Collector",
    "RECORD_VERSION",
    "TRIAL_REQUEST_TYPE",
    "clock_offset_ns",
    "event_dict",
    "event_from_dict",
    "make_record",
    "record_key",
    "record_outcome",
    "timed_events",
    "user_seed",
]

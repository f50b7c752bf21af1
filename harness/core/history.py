"""Client-side history: every request a trial made, with planned, sent and response times.

Times are kept as host monotonic nanoseconds and rendered in milliseconds
relative to the trial's t0 (the Change's planned send time) when written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Request kinds (the `kind` field of history.jsonl).
CREATE_ORDER = "create_order"
START_HANDLING = "start_handling"
CHANGE = "change"
INVOICE = "invoice"
GET_ORDER = "get_order"
GET_CHANGES = "get_changes"
AUDIT = "audit"
CANCEL = "cancel"  # integration hazards: the harness cancels the order (POST /api/oms/pvt/orders/{id}/cancel)


@dataclass
class RequestEvent:
    kind: str
    method: str
    path: str
    planned_ns: int | None  # the deadline, for timed requests
    sent_ns: int  # just before the request went to the transport
    response_ns: int | None = None  # None: no response (transport error / timeout)
    status: int = 0
    request_body: Any = None
    response_body: Any = None
    error: str = ""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def indeterminate(self) -> bool:
        """No answer or a 5xx: the request may or may not have been applied."""
        return self.response_ns is None or self.status >= 500

    def to_json(self, trial_id: int, guard: str, t0_ns: int) -> dict[str, Any]:
        return {
            "trial_id": trial_id,
            "guard": guard,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            # JSON has no NaN: an unknown time is null in history.jsonl.
            "planned_ms": None if self.planned_ns is None else rel_ms(self.planned_ns, t0_ns),
            "sent_ms": rel_ms(self.sent_ns, t0_ns),
            "response_ms": None if self.response_ns is None else rel_ms(self.response_ns, t0_ns),
            "status": self.status,
            "attempts": self.attempts,
            "request_body": self.request_body,
            "response_body": self.response_body,
            "error": self.error,
        }


@dataclass
class TrialHistory:
    events: list[RequestEvent] = field(default_factory=list)
    shard: int = 0  # which of the client's connection pools this trial uses

    def add(self, event: RequestEvent) -> RequestEvent:
        self.events.append(event)
        return event

    def first(self, kind: str) -> RequestEvent | None:
        return next((e for e in self.events if e.kind == kind), None)


def rel_ms(ns: int | None, t0_ns: int) -> float:
    """`ns` in ms relative to `t0_ns`; NaN when unknown (`ns` None). The one conversion every mode uses."""
    return math.nan if ns is None else (ns - t0_ns) / 1e6

"""The trials.csv row: its schema (`TrialResult`) and the builders every mode judges a trial with.

No I/O, no clock, no event loop: the asyncio core (live and simulated runs),
integration mode and the gevent load mode all call these builders, so a column
is filled in one place (`_row` holds every column's "unknown" value; each
builder states only what its mode measured). Keep this module free of asyncio,
httpx and gevent imports.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from harness.core import history as h
from harness.core.history import RequestEvent, rel_ms
from harness.core.oracle import Outcome, client_outcome, cross_check, integration_outcome
from harness.core.timing import is_late

# trials.csv schema version; bump on any column change (documented in docs/outputs.md).
TRIALS_SCHEMA_VERSION = 3
# Columns added since an older schema, with the value a row of that schema means (readers fill them in).
ADDED_COLUMNS: dict[str, Any] = {"late": False}  # version 3


@dataclass
class TrialResult:
    """One row of trials.csv. Times are milliseconds relative to the trial's t0 on
    the host's monotonic clock: the Change's planned send time (core runs) or the
    handling hook's planned delivery (integration mode, where `guard` names the
    service under test and the offset is t_change - t_hook)."""

    trial_id: int
    seq: int  # execution order within the run
    guard: str
    offset_ms: float  # planned t_invoice - t_change
    order_id: str
    outcome: str  # Outcome value
    audit_verdict: str  # mock's own verdict: race | clean | pending | unknown
    agree: bool  # client-side outcome and audit agree
    disagreement: str  # why they disagree ("" when they agree)
    initial_value: int  # cents, order value at creation
    final_value: int  # cents, order value after all Changes finished
    invoice_value: int  # cents the client sent (-1: no invoice sent)
    invoiced_total: int  # cents of accepted invoices (audit)
    invoice_status: int  # HTTP status (0: not sent / transport error)
    change_status: int
    change_delay_ms: float  # Change processing delay the mock used (audit)
    change_planned_ms: float  # always 0.0 (t0) unless the plan shifts it
    invoice_planned_ms: float
    change_sent_ms: float  # client: when the request's last byte was written
    invoice_sent_ms: float  # NaN when no invoice was sent
    change_acted_ms: float  # server: when the mock acted on it (NaN if unknown)
    invoice_acted_ms: float
    change_finished_ms: float  # server: when the Change applied (NaN if never)
    hook_sent_ms: float  # integration mode: when the mock sent the handling hook (feed: made its event visible)
    client_offset_error_ms: float  # (invoice_sent - change_sent) - offset, unguarded only
    server_offset_error_ms: float  # (invoice_acted - change_acted) - offset, unguarded only
    guard_cost_ms: float  # invoice_sent - invoice_planned (what the guard waited)
    duration_ms: float  # trial wall time
    error: str  # transport error / guard timeout detail ("" when none)
    # Timing error above the run's tolerance: kept, not judged (docs/model.md, "Timing quality"). Last
    # and defaulted: the column schema 3 added, False in older files (ADDED_COLUMNS).
    late: bool = False

    def row(self) -> dict[str, Any]:
        # Every field is a scalar: a shallow dict equals asdict() at a fraction of its cost.
        return {name: getattr(self, name) for name in _COLUMNS}

    def values(self) -> tuple[Any, ...]:
        """The row's values in column order (what a csv.writer takes; cheaper than `row()`)."""
        return _values(self)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TrialResult))
_values = operator.attrgetter(*_COLUMNS)


# --------------------------------------------------------------------------- audit accessors


def audit_change(audit: Mapping[str, Any] | None) -> dict[str, Any]:
    """The trial's (first) Change in the mock's audit, {} if none."""
    changes = (audit or {}).get("changes") or []
    return changes[0] if changes else {}


def audit_invoice(audit: Mapping[str, Any] | None, number: str) -> dict[str, Any]:
    """The invoice with this number in the mock's audit, {} if none."""
    return next((i for i in (audit or {}).get("invoices") or [] if i.get("invoiceNumber") == number), {})


def client_final_value(initial: int, change: RequestEvent | None) -> int:
    """The final order value as the client knows it (no audit): initial + the accepted Change's value."""
    if change is not None and change.ok and isinstance(change.response_body, dict):
        return initial + int(change.response_body.get("totalChangeValue", 0))
    return initial


# --------------------------------------------------------------------------- the builders


def _row(*, trial_id: int, seq: int, guard: str, offset_ms: float, order_id: str, duration_ms: float, error: str,
         outcome: Outcome = Outcome.INDETERMINATE, checked: tuple[str, bool, str] = ("unknown", True, ""),
         **measured: Any) -> TrialResult:
    """The one place a TrialResult is assembled: every column starts "unknown" (-1 cents,
    status 0, NaN ms) and `measured` overrides the columns a mode knows."""
    nan = math.nan
    verdict, agree, disagreement = checked
    columns: dict[str, Any] = dict(
        initial_value=-1, final_value=-1, invoice_value=-1, invoiced_total=0, invoice_status=0, change_status=0,
        change_delay_ms=nan, change_planned_ms=0.0, invoice_planned_ms=offset_ms,
        change_sent_ms=nan, invoice_sent_ms=nan, change_acted_ms=nan, invoice_acted_ms=nan,
        change_finished_ms=nan, hook_sent_ms=nan, client_offset_error_ms=nan, server_offset_error_ms=nan,
        late=False, guard_cost_ms=nan,
    )
    unknown = set(measured) - set(columns)
    if unknown:
        raise TypeError(f"not a measured trials.csv column: {sorted(unknown)}")
    columns.update(measured)
    return TrialResult(
        trial_id=trial_id, seq=seq, guard=guard, offset_ms=offset_ms, order_id=order_id,
        outcome=outcome.value, audit_verdict=verdict, agree=agree, disagreement=disagreement,
        duration_ms=duration_ms, error=error, **columns,
    )


def trial_result(
    *,
    trial_id: int,
    seq: int,
    guard: str,
    offset_ms: float,
    order_id: str,
    initial_value: int,
    change: RequestEvent | None,
    invoice: RequestEvent | None,
    invoice_value: int,
    invoice_number: str,
    guard_error: str,
    planned_delay_ms: float | None,
    t0_ns: int,
    audit: dict[str, Any] | None,
    duration_ms: float,
    tolerance_ms: float,
    events: Sequence[RequestEvent],
    server_offset_ns: int = 0,
) -> TrialResult:
    """Judge one trial (client outcome, cross-checked with the audit) into its trials.csv row.

    Client times are on the client's monotonic clock, relative to `t0_ns` (the
    Change's planned send time). The audit's times are on the mock's clock:
    `server_offset_ns` = mock clock - client clock (0 on one host, where both
    read the same monotonic clock).

    `late` (tolerance `tolerance_ms`): an unguarded trial by its server-side
    offset error (the client-side one when the audit has no times); a guarded
    trial, whose invoice time its guard decides, by how late the first request
    after setup (`events`: the trial's requests) left against the earlier of
    its two planned times, min(t0, t0 + offset).
    """
    a_change = audit_change(audit)
    outcome, detail = client_outcome(change, invoice, invoice_value, initial_value, guard_error,
                                     change_canceled=bool(a_change and a_change.get("canceled")))
    checked = cross_check(outcome, bool(invoice and invoice.ok), bool(change and change.ok), audit)
    a_invoice = audit_invoice(audit, invoice_number)

    def server_rel(ns: int | None) -> float:
        return rel_ms(None if ns is None else ns - server_offset_ns, t0_ns)

    change_sent = rel_ms(change.sent_ns if change else None, t0_ns)
    invoice_sent = rel_ms(invoice.sent_ns if invoice else None, t0_ns)
    change_acted = server_rel(a_change.get("actedNs"))
    invoice_acted = server_rel(a_invoice.get("actedNs"))
    unguarded = guard == "none"
    client_error = invoice_sent - change_sent - offset_ms
    server_error = invoice_acted - change_acted - offset_ms
    if unguarded:
        timing_error = client_error if math.isnan(server_error) else server_error
    else:
        timing_error = rel_ms(_first_timed_ns(events), t0_ns) - min(0.0, offset_ms)
    if a_change.get("delayMs") is not None:
        delay = float(a_change["delayMs"])
    else:
        delay = float(planned_delay_ms) if planned_delay_ms is not None else math.nan
    return _row(
        trial_id=trial_id, seq=seq, guard=guard, offset_ms=offset_ms, order_id=order_id,
        outcome=outcome, checked=checked, duration_ms=duration_ms, error=detail,
        initial_value=initial_value,
        final_value=int(audit["finalValue"]) if audit else client_final_value(initial_value, change),
        invoice_value=invoice_value,
        invoiced_total=int(audit["invoicedTotal"]) if audit else (invoice_value if invoice and invoice.ok else 0),
        invoice_status=invoice.status if invoice else 0, change_status=change.status if change else 0,
        change_delay_ms=delay,
        change_sent_ms=change_sent, invoice_sent_ms=invoice_sent,
        change_acted_ms=change_acted, invoice_acted_ms=invoice_acted,
        change_finished_ms=server_rel(a_change.get("finishedNs")),
        client_offset_error_ms=client_error if unguarded else math.nan,
        server_offset_error_ms=server_error if unguarded else math.nan,
        late=is_late(timing_error, tolerance_ms),
        guard_cost_ms=(invoice_sent - offset_ms) if invoice else math.nan,
    )


def _first_timed_ns(events: Sequence[RequestEvent]) -> int | None:
    """When the trial's first request after setup left: the earliest one that is not the order's
    creation, its start-handling or the first read of its value (the `handling` trigger). Under a
    guard that lock-steps the two sides (serialized) the later side waits by design: the first
    request out is the one the plan alone timed."""
    setup = {h.CREATE_ORDER, h.START_HANDLING}
    trigger_seen = False
    times = []
    for e in events:
        if e.kind == h.GET_ORDER and not trigger_seen:
            trigger_seen = True
        elif e.kind not in setup and e.kind != h.AUDIT:
            times.append(e.sent_ns)
    return min(times, default=None)


def setup_failed_result(*, trial_id: int, seq: int, guard: str, offset_ms: float, order_id: str,
                        duration_ms: float, error: str) -> TrialResult:
    """A trial whose setup (create order, start handling, read it) failed: indeterminate, with the reason."""
    return _row(trial_id=trial_id, seq=seq, guard=guard, offset_ms=offset_ms, order_id=order_id,
                duration_ms=duration_ms, error=f"setup failed: {error}")


def integration_result(*, trial_id: int, seq: int, guard: str, offset_ms: float, order_id: str, initial_value: int,
                       change: RequestEvent | None, audit: dict[str, Any] | None, t0_ns: int,
                       duration_ms: float, tolerance_ms: float, judged: tuple[Outcome, str] | None = None,
                       trigger: str = "handling", delivery: str = "hook") -> TrialResult:
    """Integration mode: judge one trial from the mock's audit (the service's own requests are not ours).

    `guard` names the service under test; t0 is the trigger notification's planned
    delivery and `offset_ms` is t_change - t_hook. With `delivery` "feed" the trigger is
    when the event became visible in the feed (the earliest copy's `visibleNs`) and
    `offset_ms` is t_change - t_visible. `late`: the server-side offset error
    ((Change acted - trigger) - offset) exceeds `tolerance_ms`.
    `judged`: the outcome a hazard's oracle gave (harness.hazards), else integration mode's own;
    `change` is None when the harness sent no Change (a hazard's recipe), `trigger` the notification's status."""
    outcome, detail = judged if judged is not None else integration_outcome(change, audit)
    invoices = (audit or {}).get("invoices") or []
    invoice = next((i for i in invoices if i.get("accepted")), invoices[0] if invoices else {})
    checked = cross_check(outcome, bool(invoice.get("accepted")), change is not None and change.ok, audit)
    a_change = audit_change(audit)
    if delivery == "feed":
        visible = [f["visibleNs"] for f in (audit or {}).get("feed") or []
                   if f.get("event") == "enqueued" and f.get("state") == trigger and f.get("visibleNs")]
        hook_sent = rel_ms(min(visible) if visible else None, t0_ns)
    else:
        hooks = [k for k in (audit or {}).get("hooks") or [] if k.get("state") == trigger and k.get("sentNs")]
        hook_sent = rel_ms(hooks[0]["sentNs"] if hooks else None, t0_ns)
    change_sent = rel_ms(change.sent_ns if change is not None else None, t0_ns)
    change_acted = rel_ms(a_change.get("actedNs"), t0_ns)
    invoice_acted = rel_ms(invoice.get("actedNs"), t0_ns)
    delay = a_change.get("delayMs")
    server_error = (change_acted - hook_sent) - offset_ms
    return _row(
        trial_id=trial_id, seq=seq, guard=guard, offset_ms=offset_ms, order_id=order_id,
        outcome=outcome, checked=checked, duration_ms=duration_ms, error=detail,
        initial_value=initial_value, final_value=int(audit["finalValue"]) if audit else -1,
        invoice_value=int(invoice.get("invoiceValue", -1)), invoiced_total=int((audit or {}).get("invoicedTotal", 0)),
        invoice_status=int(invoice.get("status", 0)), change_status=change.status if change is not None else 0,
        change_delay_ms=float(delay) if delay is not None else math.nan,
        change_planned_ms=offset_ms, invoice_planned_ms=math.nan,
        change_sent_ms=change_sent, change_acted_ms=change_acted, invoice_acted_ms=invoice_acted,
        change_finished_ms=rel_ms(a_change.get("finishedNs"), t0_ns), hook_sent_ms=hook_sent,
        client_offset_error_ms=change_sent - offset_ms,
        server_offset_error_ms=server_error, late=is_late(server_error, tolerance_ms),
        guard_cost_ms=invoice_acted - hook_sent,  # the service's reaction time to the hook
    )


__all__ = [
    "ADDED_COLUMNS",
    "TRIALS_SCHEMA_VERSION",
    "TrialResult",
    "audit_change",
    "audit_invoice",
    "client_final_value",
    "integration_result",
    "setup_failed_result",
    "trial_result",
]

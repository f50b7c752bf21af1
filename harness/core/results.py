"""The trials.csv row: every mode judges a trial into its row here, in one place.

No I/O, no clock, no event loop (the asyncio core, integration mode and the
gevent load mode all call these builders). Keep this module free of asyncio,
httpx and gevent imports.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from harness.core.history import RequestEvent
from harness.core.oracle import Outcome, TrialResult, client_outcome, cross_check


# --------------------------------------------------------------------------- the trials.csv row


def rel_ms(ns: int | None, t0_ns: int) -> float:
    """`ns` in ms relative to `t0_ns`; NaN when unknown."""
    return math.nan if ns is None else (ns - t0_ns) / 1e6


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
    server_offset_ns: int = 0,
) -> TrialResult:
    """Judge one trial (client outcome, cross-checked with the audit) into its trials.csv row.

    Client times are on the client's monotonic clock, relative to `t0_ns` (the
    Change's planned send time). The audit's times are on the mock's clock:
    `server_offset_ns` = mock clock - client clock (0 on one host, where both
    read the same monotonic clock).
    """
    outcome, detail = client_outcome(change, invoice, invoice_value, initial_value, guard_error)
    verdict, agree, disagreement = cross_check(outcome, bool(invoice and invoice.ok), bool(change and change.ok), audit)
    a_change = audit_change(audit)
    a_invoice = audit_invoice(audit, invoice_number)

    def server_rel(ns: int | None) -> float:
        return rel_ms(None if ns is None else ns - server_offset_ns, t0_ns)

    change_sent = rel_ms(change.sent_ns if change else None, t0_ns)
    invoice_sent = rel_ms(invoice.sent_ns if invoice else None, t0_ns)
    change_acted = server_rel(a_change.get("actedNs"))
    invoice_acted = server_rel(a_invoice.get("actedNs"))
    unguarded = guard == "none"
    if a_change.get("delayMs") is not None:
        delay = float(a_change["delayMs"])
    else:
        delay = float(planned_delay_ms) if planned_delay_ms is not None else math.nan
    return TrialResult(
        trial_id=trial_id, seq=seq, guard=guard, offset_ms=offset_ms, order_id=order_id,
        outcome=outcome.value, audit_verdict=verdict, agree=agree, disagreement=disagreement,
        initial_value=initial_value,
        final_value=int(audit["finalValue"]) if audit else client_final_value(initial_value, change),
        invoice_value=invoice_value,
        invoiced_total=int(audit["invoicedTotal"]) if audit else (invoice_value if invoice and invoice.ok else 0),
        invoice_status=invoice.status if invoice else 0, change_status=change.status if change else 0,
        change_delay_ms=delay,
        change_planned_ms=0.0, invoice_planned_ms=offset_ms,
        change_sent_ms=change_sent, invoice_sent_ms=invoice_sent,
        change_acted_ms=change_acted, invoice_acted_ms=invoice_acted,
        change_finished_ms=server_rel(a_change.get("finishedNs")), hook_sent_ms=math.nan,
        client_offset_error_ms=(invoice_sent - change_sent - offset_ms) if unguarded else math.nan,
        server_offset_error_ms=(invoice_acted - change_acted - offset_ms) if unguarded else math.nan,
        guard_cost_ms=(invoice_sent - offset_ms) if invoice else math.nan,
        duration_ms=duration_ms,
        error=detail,
    )


def setup_failed_result(*, trial_id: int, seq: int, guard: str, offset_ms: float, order_id: str,
                        duration_ms: float, error: str) -> TrialResult:
    """A trial whose setup (create order, start handling, read it) failed: indeterminate, with the reason."""
    nan = math.nan
    return TrialResult(
        trial_id=trial_id, seq=seq, guard=guard, offset_ms=offset_ms, order_id=order_id,
        outcome=Outcome.INDETERMINATE.value, audit_verdict="unknown", agree=True, disagreement="",
        initial_value=-1, final_value=-1, invoice_value=-1, invoiced_total=0, invoice_status=0,
        change_status=0, change_delay_ms=nan, change_planned_ms=0.0, invoice_planned_ms=offset_ms,
        change_sent_ms=nan, invoice_sent_ms=nan, change_acted_ms=nan, invoice_acted_ms=nan,
        change_finished_ms=nan, hook_sent_ms=nan, client_offset_error_ms=nan, server_offset_error_ms=nan,
        guard_cost_ms=nan, duration_ms=duration_ms, error=f"setup failed: {error}",
    )


__all__ = [
    "audit_change",
    "audit_invoice",
    "client_final_value",
    "rel_ms",
    "setup_failed_result",
    "trial_result",
]

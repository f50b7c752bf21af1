"""The pure parts of a trial: request bodies, guard decisions and the trials.csv row.

No I/O, no clock, no event loop: the guards (`harness.core.guards`, driven by
`harness.runner` on asyncio and `harness.load.users` on gevent) and the load
mode's judge (`harness.load.judge`) make the same decisions by calling these
functions, so the modes cannot drift apart. Keep this module free of asyncio, httpx and
gevent imports.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from harness.history import RequestEvent
from harness.oracle import Outcome, TrialResult, client_outcome, cross_check
from mock_orders_api.store import iso_now

if TYPE_CHECKING:  # type-only: harness.scenario pulls in the guard registry
    from harness.scenario import Scenario

# The guards' names (harness.core.guards.GUARDS is the registry of their step generators).
GUARD_NAMES: tuple[str, ...] = ("none", "finished-check", "serialized")
# Order statuses after which an invoice has settled (the `serialized` guard waits for one).
SETTLED_STATUSES: tuple[str, ...] = ("invoiced", "canceled")


# --------------------------------------------------------------------------- request bodies


def order_spec(scenario: Scenario) -> dict[str, Any]:
    """The admin API body (`POST /_mock/orders`) of a trial's fresh order."""
    o = scenario.order
    return {
        "items": [{"id": i.id, "name": i.name or f"Item {i.id}", "quantity": i.quantity, "price": i.price}
                  for i in o.items],
        "shipping": o.shipping,
        "tax": o.tax,
    }


def change_body(scenario: Scenario) -> dict[str, Any]:
    """The partial-cancel Change (`PATCH .../changes`) the scenario describes."""
    c = scenario.change
    body: dict[str, Any] = {"reason": c.reason}
    if c.items_removed:
        body["remove"] = {"items": [{"id": r.id, "quantity": r.quantity} for r in c.items_removed]}
    if c.discount_value:
        body["manualDiscountValue"] = c.discount_value
    return body


def mock_settings(scenario: Scenario) -> dict[str, Any]:
    """The mock configuration (`PATCH /_mock/config`) a run applies before its first trial."""
    m = scenario.mock
    return {"policy": m.policy, "delay": m.change_delay.spec(), "settle_ms": m.settle_ms, "seed": scenario.seed}


def invoice_body(invoice_number: str, value: int, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An invoice notification as an ERP sends it (value in cents, as a string like VTEX's example)."""
    return {
        "type": "Output",
        "issuanceDate": iso_now(),  # the wall clock; a simulated run's virtual one (reproducible)
        "invoiceNumber": invoice_number,
        "invoiceValue": str(value),
        "invoiceKey": None,
        "invoiceUrl": None,
        "courier": "",
        "trackingNumber": "",
        "trackingUrl": "",
        "items": items or [],
    }


# --------------------------------------------------------------------------- guard decisions


def all_changes_finished(history: Any) -> bool:
    """True when every Change in a `GET .../changes` body (`{"requests": [...]}`) is `finished`.

    A body that is not such an object cannot show that they are: False (the guard keeps polling)."""
    if not isinstance(history, Mapping):
        return False
    return all(isinstance(r, Mapping) and r.get("finished") for r in history.get("requests") or [])


def remaining_value(order: Mapping[str, Any]) -> int:
    """Cents still to invoice on an order (`GET` body): its value minus the accepted Output invoices."""
    invoiced = sum(int(p.get("invoiceValue", 0)) for p in order["packageAttachment"]["packages"]
                   if p.get("type", "Output") == "Output")
    return int(order["value"]) - invoiced


def invoice_settled(order: Any) -> bool:
    """True when an order (`GET` body) no longer settles an invoice: `invoiced` (or `canceled`)."""
    return isinstance(order, Mapping) and order.get("status") in SETTLED_STATUSES


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
    "GUARD_NAMES",
    "SETTLED_STATUSES",
    "all_changes_finished",
    "audit_change",
    "audit_invoice",
    "change_body",
    "client_final_value",
    "invoice_body",
    "invoice_settled",
    "mock_settings",
    "order_spec",
    "rel_ms",
    "remaining_value",
    "setup_failed_result",
    "trial_result",
]

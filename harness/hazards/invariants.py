"""The invariants hazard oracles check, as small pure functions of a trial's mock audit.

Each returns None when the invariant holds, else (Outcome, detail): the outcome says how the
violation counts (`harness.core.names.outcome_kind`: `race` and `invoice_on_cancel` are races;
`extra_invoice`, `stale_invoice`, `not_invoiced`, `late_invoice`, `no_invoice` are the
integration failing its job). A hazard's judge runs the ones it names, in order, then falls back
on integration mode's own oracle. The audit is the mock's (`GET /_mock/orders/{id}/audit`):
`invoices[]` (accepted and refused, with `actedNs`), `finalValue`, `invoicedTotal`,
`statusHistory[]` ({status, ns}), `hooks[]`.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.core.oracle import Outcome

Violation = tuple[Outcome, str] | None
Audit = Mapping[str, Any]

# Statuses of an order being or having been canceled (VTEX order flow; KI 1400005: `cancel`, the
# seller's in-progress state, and the marketplace's `request-cancel`).
CANCEL_STATUSES = frozenset({"request-cancel", "cancel", "canceled"})

INVARIANTS: dict[str, str] = {
    "invoice-within-final-value": "accepted invoices <= the order's final value",
    "one-effective-invoice": "exactly one effective (accepted) invoice per order, of the final value",
    "no-invoice-on-cancel": "no invoice on a canceling or canceled order",
    "reaches-invoiced": "the order reaches `invoiced` once it was invoiced in full",
    "within-deadline": "the integration invoices within the hazard's deadline",
}


def _accepted(audit: Audit) -> list[Mapping[str, Any]]:
    return [i for i in audit.get("invoices") or [] if i.get("accepted")]


def invoice_within_final_value(audit: Audit) -> Violation:
    total, final = audit.get("invoicedTotal"), audit.get("finalValue")
    if total is not None and final is not None and int(total) > int(final):
        return Outcome.RACE, f"invoiced {total} > final value {final}"
    return None


def one_effective_invoice(audit: Audit) -> Violation:
    """More than one accepted invoice (a re-sent `invoiceNumber` is the same invoice on VTEX: the
    mock keeps one record for it), or the only one not for the final value."""
    accepted = _accepted(audit)
    if len(accepted) > 1:
        return Outcome.EXTRA_INVOICE, f"{len(accepted)} accepted invoices: " + ", ".join(
            f"{i.get('invoiceNumber')} ({i.get('invoiceValue')})" for i in accepted)
    final = audit.get("finalValue")
    if accepted and final is not None and int(accepted[0].get("invoiceValue", -1)) < int(final):
        return Outcome.WRONG_VALUE, f"invoice value {accepted[0].get('invoiceValue')} < final value {final}"
    return None


def cancel_time_ns(audit: Audit) -> int | None:
    """When the order entered its first cancel status (None: never canceled)."""
    return next((int(s["ns"]) for s in audit.get("statusHistory") or []
                 if s.get("status") in CANCEL_STATUSES and s.get("ns") is not None), None)


def no_invoice_on_cancel(audit: Audit, *, refused_counts: bool = False) -> Violation:
    """An invoice acted on after the order's cancel: accepted = the KI 1400005 race; refused
    (`refused_counts`) = the integration acted on a stale notification."""
    t_cancel = cancel_time_ns(audit)
    if t_cancel is None:
        return None
    after = [i for i in audit.get("invoices") or [] if int(i.get("actedNs") or 0) >= t_cancel]
    accepted = [i for i in after if i.get("accepted")]
    if accepted:
        return Outcome.INVOICE_ON_CANCEL, (f"invoice {accepted[0].get('invoiceNumber')} accepted "
                                           f"{(int(accepted[0]['actedNs']) - t_cancel) / 1e6:.0f} ms after the cancel "
                                           f"(order status {audit.get('status')})")
    if refused_counts and after:
        return Outcome.STALE_INVOICE, (f"{len(after)} invoice request(s) for an order already canceling/canceled "
                                       f"(HTTP {after[0].get('status')})")
    return None


def reaches_invoiced(audit: Audit) -> Violation:
    accepted = _accepted(audit)
    final = audit.get("finalValue")
    if not accepted or final is None or int(audit.get("invoicedTotal", 0)) < int(final):
        return None
    seen = {s.get("status") for s in audit.get("statusHistory") or []}
    if "invoiced" not in seen:
        return Outcome.NOT_INVOICED, f"invoiced in full, order left in {audit.get('status')!r}"
    return None


def within_deadline(audit: Audit, t_hook_ns: int, deadline_ms: float) -> Violation:
    """The first accepted invoice acted on within `deadline_ms` of the trigger hook's first sending."""
    accepted = _accepted(audit)
    if not accepted:
        return None
    late_ms = (int(accepted[0].get("actedNs") or 0) - t_hook_ns) / 1e6
    if late_ms > deadline_ms:
        return Outcome.LATE_INVOICE, f"invoiced {late_ms:.0f} ms after the hook > deadline {deadline_ms:g} ms"
    return None


def first_hook_sent_ns(audit: Audit, state: str) -> int | None:
    sent = [int(k["sentNs"]) for k in audit.get("hooks") or [] if k.get("state") == state and k.get("sentNs")]
    return min(sent) if sent else None


__all__ = ["CANCEL_STATUSES", "INVARIANTS", "Violation", "cancel_time_ns", "first_hook_sent_ns",
           "invoice_within_final_value", "no_invoice_on_cancel", "one_effective_invoice", "reaches_invoiced",
           "within_deadline"]

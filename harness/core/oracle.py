"""Outcome of one trial, from the client history cross-checked with the mock's audit.

Small total functions, no I/O; each returns (value, reason). The row they end up
in is built by harness.core.results."""

from __future__ import annotations

import enum
from typing import Any

from harness.core.history import RequestEvent


class Outcome(str, enum.Enum):
    RACE = "race"  # accepted invoice total > final order value
    CLEAN = "clean"  # everything accepted, invoice <= final value
    INVOICE_REFUSED = "invoice_refused"
    CHANGE_REFUSED = "change_refused"
    GUARD_TIMEOUT = "guard_timeout"
    NO_INVOICE = "no_invoice"  # integration mode: the service sent no invoice within the wait
    HOOK_FAILED = "hook_failed"  # integration mode: the service never accepted the trigger hook (200)
    EXTRA_INVOICE = "extra_invoice"  # integration mode: more than one invoice request (accepted or refused)
    WRONG_VALUE = "wrong_value"  # integration mode: the accepted invoice is below the final order value
    # Hazard oracles (harness.hazards.invariants):
    INVOICE_ON_CANCEL = "invoice_on_cancel"  # an invoice accepted on a canceling/canceled order (KI 1400005)
    STALE_INVOICE = "stale_invoice"  # an invoice sent for an order already canceling/canceled (refused)
    NOT_INVOICED = "not_invoiced"  # an invoice of the full value accepted, the order never reached `invoiced`
    LATE_INVOICE = "late_invoice"  # the invoice came after the hazard's deadline
    INDETERMINATE = "indeterminate"  # timeout / 5xx: a request may or may not have applied


def client_outcome(
    change: RequestEvent | None,
    invoice: RequestEvent | None,
    invoice_value: int,
    initial_value: int,
    guard_error: str,
    change_canceled: bool = False,
) -> tuple[Outcome, str]:
    """Outcome from the client's history alone (what an integration could know).

    `change_canceled`: the accepted Change ended `canceled` (VTEX's Change status, HC-ADAPT; what a
    read of the Change would show), so it never changed the order value."""
    for ev in (change, invoice):
        if ev is not None and ev.indeterminate:
            return Outcome.INDETERMINATE, f"{ev.kind}: {ev.error or f'HTTP {ev.status}'}"
    if guard_error or invoice is None:
        return Outcome.GUARD_TIMEOUT, guard_error or "no invoice was sent"
    if not invoice.ok:
        return Outcome.INVOICE_REFUSED, ""
    if change is None or not change.ok:
        return Outcome.CHANGE_REFUSED, ""
    change_value = (change.response_body or {}).get("totalChangeValue") if isinstance(change.response_body, dict) else None
    if not isinstance(change_value, int):
        return Outcome.INDETERMINATE, "change response has no totalChangeValue"
    final = initial_value + (0 if change_canceled else change_value)
    return (Outcome.RACE if invoice_value > final else Outcome.CLEAN), ""


def cross_check(outcome: Outcome, invoice_ok: bool, change_ok: bool, audit: dict[str, Any] | None) -> tuple[str, bool, str]:
    """(audit verdict, agree, disagreement): the mock's own record against the client's outcome."""
    if audit is None:
        return "unknown", True, ""
    verdict = str(audit.get("verdict", "unknown"))
    problems: list[str] = []
    if outcome is not Outcome.INDETERMINATE:
        if (outcome is Outcome.RACE) != (verdict == "race"):
            problems.append(f"client says {outcome.value}, audit verdict {verdict}")
        accepted_invoices = sum(1 for i in audit.get("invoices", []) if i.get("accepted"))
        if invoice_ok != (accepted_invoices > 0):
            problems.append(f"client invoice ok={invoice_ok}, audit has {accepted_invoices} accepted invoice(s)")
        accepted_changes = sum(1 for c in audit.get("changes", []) if c.get("accepted"))
        if change_ok != (accepted_changes > 0):
            problems.append(f"client change ok={change_ok}, audit has {accepted_changes} accepted change(s)")
    if verdict == "pending":
        problems.append("audit still pending: a Change had not finished when the trial ended")
    return verdict, not problems, "; ".join(problems)


def integration_outcome(change: RequestEvent | None, audit: dict[str, Any] | None,
                        trigger_state: str = "handling") -> tuple[Outcome, str]:
    """Integration mode: the service's requests are not ours to see, so the mock's audit decides;
    the harness's own Change request only has to have an answer.

    Precedence: a race is a race whatever else went wrong; then every way the service failed
    its own job is a failure (never "no race"): the trigger hook not accepted, no invoice,
    more than one invoice request, an accepted invoice for less than the final value."""
    if change is not None and change.indeterminate:
        return Outcome.INDETERMINATE, f"change: {change.error or f'HTTP {change.status}'}"
    if audit is None:
        return Outcome.INDETERMINATE, "no audit from the target"
    invoices = audit.get("invoices") or []
    verdict = audit.get("verdict")
    if invoices and verdict == "pending":
        return Outcome.INDETERMINATE, "a Change had not finished when the trial ended"
    if verdict == "race":
        return Outcome.RACE, ""
    hook_problem = _hook_not_accepted(audit, trigger_state)
    if hook_problem:
        return Outcome.HOOK_FAILED, hook_problem
    if not invoices:
        return Outcome.NO_INVOICE, "the service sent no invoice in time"
    if len(invoices) > 1:
        return Outcome.EXTRA_INVOICE, f"{len(invoices)} invoice requests: " + ", ".join(
            f"HTTP {i.get('status')} (value {i.get('invoiceValue')})" for i in invoices)
    accepted = [i for i in invoices if i.get("accepted")]
    if not accepted:
        return Outcome.INVOICE_REFUSED, ""
    final = audit.get("finalValue")
    if final is not None and int(accepted[0].get("invoiceValue", -1)) != int(final):
        return Outcome.WRONG_VALUE, f"invoice value {accepted[0].get('invoiceValue')} != final value {final}"
    if change is None or not change.ok:
        return Outcome.CHANGE_REFUSED, ""
    return Outcome.CLEAN, ""


def _hook_not_accepted(audit: dict[str, Any], state: str) -> str:
    """Why the trigger hook counts as not accepted ("" when some attempt was delivered).

    Feed trials have no hook attempts at all: nothing to judge there."""
    attempts = [k for k in audit.get("hooks") or [] if k.get("state") == state]
    if not attempts or any(k.get("outcome") == "delivered" for k in attempts):
        return ""
    shown = ", ".join(k.get("error") or f"HTTP {k.get('status')}" for k in attempts if k.get("attempt"))
    return f"the {state} hook was never accepted ({len(attempts)} attempt(s): {shown or 'none sent'})"

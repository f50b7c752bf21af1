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


def integration_outcome(change: RequestEvent | None, audit: dict[str, Any] | None) -> tuple[Outcome, str]:
    """Integration mode: the service's requests are not ours to see, so the mock's audit decides;
    the harness's own Change request only has to have an answer."""
    if change is not None and change.indeterminate:
        return Outcome.INDETERMINATE, f"change: {change.error or f'HTTP {change.status}'}"
    if audit is None:
        return Outcome.INDETERMINATE, "no audit from the target"
    invoices = audit.get("invoices") or []
    if not invoices:
        return Outcome.NO_INVOICE, "the service sent no invoice in time"
    verdict = audit.get("verdict")
    if verdict == "pending":
        return Outcome.INDETERMINATE, "a Change had not finished when the trial ended"
    if verdict == "race":
        return Outcome.RACE, ""
    if not any(i.get("accepted") for i in invoices):
        return Outcome.INVOICE_REFUSED, ""
    if change is None or not change.ok:
        return Outcome.CHANGE_REFUSED, ""
    return Outcome.CLEAN, ""

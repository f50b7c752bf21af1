"""Outcome of one trial, from the client history cross-checked with the mock's audit."""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, fields
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


# trials.csv schema version; bump on any column change (documented in README).
TRIALS_SCHEMA_VERSION = 2


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
    hook_sent_ms: float  # integration mode: when the mock sent the handling hook (NaN otherwise)
    client_offset_error_ms: float  # (invoice_sent - change_sent) - offset, unguarded only
    server_offset_error_ms: float  # (invoice_acted - change_acted) - offset, unguarded only
    guard_cost_ms: float  # invoice_sent - invoice_planned (what the guard waited)
    duration_ms: float  # trial wall time
    error: str  # transport error / guard timeout detail ("" when none)

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


def client_outcome(
    change: RequestEvent | None,
    invoice: RequestEvent | None,
    invoice_value: int,
    initial_value: int,
    guard_error: str,
) -> tuple[Outcome, str]:
    """Outcome from the client's history alone (what an integration could know)."""
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
    final = initial_value + change_value
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

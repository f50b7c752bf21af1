"""A Change that is canceled and never `finished`: waiting for `finished` alone never ends."""

from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import invoice_within_final_value, one_effective_invoice

HAZARD = Hazard(
    id="failed-change",
    title="Canceled Change, never finished",
    ki=("1348894",),
    source="VTEX Change v2: a Change that fails is canceled and keeps finished=false",
    summary="the Change ends `canceled`: a guard that waits for `finished` times out and never invoices",
    provokes="change_cancel_rate 1.0 (every Change ends canceled after its delay D ~ uniform 200-400 ms); "
             "the Change is sent 300 ms before the handling hook",
    recipe=Recipe(action="change"),
    invariants=("within-deadline", "invoice-within-final-value", "one-effective-invoice"),
    # No invoice within invoice_wait_ms is `no_invoice`: a failure, never a pass.
    judge=judge_with(invoice_within_final_value, one_effective_invoice),
    subjects="integration",
    survivors=("naive", "guarded", "robust"),
    model="deterministic: every Change is canceled; the final value is the initial one",
)

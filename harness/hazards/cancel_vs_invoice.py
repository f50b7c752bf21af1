"""KI 1400005: an invoice accepted while the order's cancellation is in progress."""

from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import no_invoice_on_cancel

HAZARD = Hazard(
    id="cancel-vs-invoice",
    title="Invoice while a cancel is in progress",
    ki=("1400005",),
    summary="an invoice sent while the order is in `cancel` is accepted; the order is stuck in `cancel` in error",
    provokes="mock cancel_policy vulnerable, cancel_delay_ms 600 (the order is `cancel` for 600 ms, then "
             "`canceled`); the harness cancels the order 200 ms before the handling hook reaches the integration",
    recipe=Recipe(action="cancel"),
    invariants=("no-invoice-on-cancel",),
    judge=judge_with(no_invoice_on_cancel, abstain_on_cancel=True),
    subjects="integration",
    survivors=("robust",),
    model="with the cancel sent c ms before the hook and a cancel delay C > c + the integration's reaction "
          "time, an integration that does not read the order's status invoices a `cancel` order in every trial",
)

"""KI 1348894 (a): an invoice accepted above the final total while a partial-cancellation Change processes."""

from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import invoice_within_final_value, one_effective_invoice

HAZARD = Hazard(
    id="invoice-during-change",
    title="Invoice while a Change is processing",
    ki=("1348894",),
    summary="an invoice for the pre-Change value is accepted while a value-reducing Change processes",
    provokes="policy vulnerable; each Change processes D ~ uniform 400-600 ms; the Change is sent 300 ms "
             "before the handling hook reaches the integration",
    recipe=Recipe(action="change"),
    invariants=("invoice-within-final-value", "one-effective-invoice"),
    judge=judge_with(invoice_within_final_value, one_effective_invoice),
    subjects="integration",
    survivors=("guarded", "robust"),
    model="P(race) = P(D > x) for a Change sent x ms before the integration invoices; with D >= 400 ms and "
          "x ~ 300 ms plus the integration's reaction time, an integration that invoices at the hook races in "
          "every trial (docs/model.md)",
)

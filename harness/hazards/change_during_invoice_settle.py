"""KI 1348894 (b): a Change accepted while an accepted invoice settles (the invoice-first window)."""

from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import invoice_within_final_value, reaches_invoiced

HAZARD = Hazard(
    id="change-during-invoice-settle",
    title="Change during the invoice's settle window",
    ki=("1348894",),
    summary="a Change lands while the invoice settles: the order is stuck in payment-approved above its total",
    provokes="policy vulnerable; settle time S = 150 ms; invoice_first = stuck (the KI's second symptom); "
             "the invoice goes 50-100 ms before the Change (core offset t_invoice - t_change < 0)",
    recipe=Recipe(action="change"),
    invariants=("invoice-within-final-value", "reaches-invoiced"),
    judge=judge_with(invoice_within_final_value, reaches_invoiced),
    subjects="guards",
    survivors=("serialized",),
    model="P(race) = 1 for -S < x < 0 for guards none and finished-check (the check cannot see a Change not "
          "sent yet), 0 for serialized (docs/model.md, residual windows)",
    simulate=True,
)

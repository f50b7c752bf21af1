"""SalesOrderSystem014: a second Change while one is in progress is refused."""

from typing import Any, Mapping

from harness.core.oracle import Outcome
from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import (
    Violation,
    invoice_within_final_value,
    one_effective_invoice,
)

REFUSAL_CODE = "SalesOrderSystem014"


def second_change_refused(audit: Mapping[str, Any]) -> Violation:
    """Not judged unless the second Change met the first in progress (the hazard was provoked)."""
    if any(c.get("code") == REFUSAL_CODE for c in audit.get("changes") or [] if not c.get("accepted")):
        return None
    return Outcome.INDETERMINATE, f"the second Change was not refused with {REFUSAL_CODE}: hazard not provoked"


HAZARD = Hazard(
    id="second-change-refused",
    title="Second Change refused while one is in progress",
    ki=("1348894",),
    source="VTEX Change v2: SalesOrderSystem014 while a Change is in progress",
    summary="two Changes 20 ms apart: the second is refused; the invoice must match the one that applied",
    provokes="policy vulnerable; Change D ~ uniform 400-600 ms; the harness sends two Changes 300 and 280 ms "
             "before the handling hook; the second gets 409 SalesOrderSystem014",
    recipe=Recipe(action="two-changes"),
    invariants=("invoice-within-final-value", "one-effective-invoice"),
    judge=judge_with(second_change_refused, invoice_within_final_value, one_effective_invoice),
    subjects="integration",
    survivors=("robust",),
    model="as invoice-during-change for the first Change; the refused one never changes the value",
)

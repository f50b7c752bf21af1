"""429 with Retry-After on the integration's reads and invoice: it still invoices within its deadline."""

from harness.hazards.base import Hazard, Recipe, judge_with

HAZARD = Hazard(
    id="rate-limited",
    title="Rate-limited reads and invoice",
    ki=(),
    source="VTEX Get order: 6000 requests/min per account; other routes answer 429 with Retry-After",
    summary="reads and invoices get 429 + Retry-After: the integration backs off and still invoices in time",
    provokes="rate limits get-order 4/s, invoice 2/s, change-history 4/s (token buckets shared by every "
             "order in flight); no Change",
    recipe=Recipe(action="nothing"),
    invariants=("within-deadline", "one-effective-invoice"),
    # The deadline is the scenario's invoice_wait_ms: no invoice by then is `no_invoice` (failed).
    judge=judge_with(),
    subjects="integration",
    survivors=("naive", "robust"),
    model="",
)

"""The invoice is applied, its response is lost, the integration retries: still one invoice."""

from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import invoice_within_final_value, one_effective_invoice

HAZARD = Hazard(
    id="lost-invoice-response",
    title="Invoice applied, response lost",
    ki=("1380918",),
    source="Jepsen-style indeterminate write; VTEX PII invoice route: an invoiceNumber may be used once",
    summary="half the invoice responses are cut after the invoice applied; the retry must not invoice twice",
    provokes="seeded faults on the invoice route: drop 0.5 (the request acts, the connection is cut before "
             "the response); no Change",
    recipe=Recipe(action="nothing"),
    invariants=("one-effective-invoice", "invoice-within-final-value"),
    judge=judge_with(one_effective_invoice, invoice_within_final_value),
    subjects="integration",
    survivors=("naive", "robust"),
    model="P(first invoice response lost) = 0.5 per trial; an integration that retries under a fresh number "
          "double-invoices in about half the trials",
)

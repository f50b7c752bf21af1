"""No ordering guarantee: a later status (`canceled`) is delivered before an earlier one (`handling`)."""

from functools import partial

from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import no_invoice_on_cancel

HAZARD = Hazard(
    id="reordered-hooks",
    title="Hooks delivered out of status order",
    ki=("832400",),
    source="VTEX ERP integration guide: 'no guarantee of ordination' of notifications",
    summary="`canceled` arrives before `handling`: the integration must act on the order's state, not the hook",
    provokes="the harness cancels the order 400 ms before the handling hook is due; the integration is "
             "notified of handling, cancel and canceled, so the canceled notification arrives first",
    recipe=Recipe(action="cancel", hook_statuses=("handling", "cancel", "canceled")),
    invariants=("no-invoice-on-cancel",),
    # A refused invoice counts too: the integration booked an invoice for an order it was told was canceled.
    judge=judge_with(partial(no_invoice_on_cancel, refused_counts=True), abstain_on_cancel=True),
    subjects="integration",
    survivors=("robust",),
    model="deterministic: every trial delivers `canceled` 400 ms before the stale `handling`",
)

"""start-handling answers 500 until retried (VTEX: retry until 204)."""

from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import reaches_invoiced

HAZARD = Hazard(
    id="start-handling-500",
    title="start-handling answers 500",
    ki=("1218606",),
    source="VTEX Orders API, start-handling: 'can also respond with status 500'; retry until 204",
    summary="the integration starts handling on ready-for-handling; half the calls get 500 and must be retried",
    provokes="seeded faults on start-handling: 500 with probability 0.5; the harness does not start handling: "
             "the integration must, on the ready-for-handling notification",
    recipe=Recipe(action="nothing", start_handling=False, trigger="ready-for-handling",
                  hook_statuses=("ready-for-handling", "handling")),
    invariants=("reaches-invoiced", "within-deadline"),
    judge=judge_with(reaches_invoiced, trigger="ready-for-handling"),
    subjects="integration",
    survivors=("robust",),
    model="P(k-th call fails) = 0.5^k: an integration retrying 10 times leaves an order unstarted with "
          "probability 0.001",
)

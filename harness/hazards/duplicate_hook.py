"""At-least-once delivery: the same `handling` notification arrives twice."""

from harness.hazards.base import Hazard, Recipe, judge_with
from harness.hazards.invariants import one_effective_invoice

HAZARD = Hazard(
    id="duplicate-hook",
    title="Duplicated hook notification",
    ki=(),
    source="VTEX ERP integration guide and FAQ: hooks are at-least-once and 'do not ensure all events are unique'",
    summary="every `handling` notification is delivered twice, up to 200 ms apart: one invoice, not two",
    provokes="hook delivery plan: duplicate_rate 1.0 (a second copy of every notification), extra_delay_ms "
             "200 (each copy waits a seeded 0-200 ms); no Change",
    recipe=Recipe(action="nothing"),
    invariants=("one-effective-invoice",),
    judge=judge_with(one_effective_invoice),
    subjects="integration",
    survivors=("naive", "robust"),
    model="every trial delivers two copies: an integration that invoices per delivery under a fresh invoice "
          "number fails every trial",
)

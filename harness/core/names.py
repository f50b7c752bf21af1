"""Names every layer shares: the leaf module of `harness.core` (it imports nothing).

`harness.core.scenario` validates `[run] guards` against GUARD_NAMES and
`harness.analysis` orders its tables by it; keeping the tuple here, below both,
is what keeps `analysis -> scenario` one-way.

Outcome kinds (the contract every rate, count and gate verdict is built on): each trial is
exactly one of
- "race": the invoice was accepted above the final order value (or on a canceling order: `invoice_on_cancel`);
- "no_race": the system stayed consistent (`clean`, `invoice_refused`, `change_refused`);
- "not_judged": the harness cannot tell (`indeterminate`, or a `late` trial whose timing missed
  its planned offset): excluded from rates, counted, and too many make a verdict INCONCLUSIVE;
- "failed": the guard or integration failed its own job (`no_invoice`, `guard_timeout`; integration
  mode: `hook_failed` [the trigger hook never got a 200], `extra_invoice` [more than one invoice
  request, accepted or refused], `wrong_value` [an accepted invoice below the final value]; hazards:
  `stale_invoice`, `not_invoiced`, `late_invoice`; `invoice_on_cancel` is a race):
  never "no race" (an integration that never invoices must not pass); a FAIL unless the
  scenario's `[gate] max_failed` allows it.
"""

from __future__ import annotations

from typing import Literal

# The guards both modes implement (harness.core.guards.GUARDS is the registry of their step generators; a test keeps them equal).
GUARD_NAMES: tuple[str, ...] = ("none", "finished-check", "serialized")

OutcomeKind = Literal["race", "no_race", "not_judged", "failed"]
OUTCOME_KINDS: tuple[OutcomeKind, ...] = ("race", "no_race", "not_judged", "failed")

# Outcome values as strings (harness.core.oracle.Outcome): this module imports nothing.
_KIND_OF: dict[str, OutcomeKind] = {
    "race": "race",
    "clean": "no_race",
    "invoice_refused": "no_race",
    "change_refused": "no_race",
    "indeterminate": "not_judged",
    "no_invoice": "failed",
    "guard_timeout": "failed",
    "hook_failed": "failed",
    "extra_invoice": "failed",
    "wrong_value": "failed",
    # Hazards (harness.hazards): an invoice on a cancel is the KI 1400005 race; the others are the
    # integration failing its own job.
    "invoice_on_cancel": "race",
    "stale_invoice": "failed",
    "not_invoiced": "failed",
    "late_invoice": "failed",
}


def outcome_kind(outcome: str, late: bool = False) -> OutcomeKind:
    """The kind of one trial's outcome; a late trial is not judged whatever it observed.

    An outcome this version does not know (e.g. a future extra-invoice outcome read from a newer
    trials.csv) is "failed": counting it as "no race" is the lie this accounting exists to stop."""
    if late:
        return "not_judged"
    return _KIND_OF.get(str(outcome), "failed")


__all__ = ["GUARD_NAMES", "OUTCOME_KINDS", "OutcomeKind", "outcome_kind"]

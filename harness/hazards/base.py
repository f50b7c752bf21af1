"""What a hazard is: the record every hazard module fills in (pure; no I/O).

A hazard is one way an order integration goes wrong through timing, delivery or retries (the
family of VTEX known issue 1348894). Its module (one per hazard, `harness/hazards/<id>.py` with
`-` as `_`) defines `HAZARD`, a `Hazard`; the registry (`harness.hazards`) finds it. A hazard names:

- `id`, `title`, `ki` (the VTEX known-issue ids it stands for; () for a documented platform
  behaviour without a KI, its source in `source`), `summary` (one line);
- `provokes`: the mock settings and the seeded fault / delivery plan that provoke it, in words;
  the values themselves live in its built-in scenario `scenarios/<id>.toml` (one source of truth);
- `recipe`: what the harness does per trial (`Recipe`);
- `invariants`: the invariants its oracle checks (names from `harness.hazards.invariants`), and
  `judge`: the oracle itself, (harness action, mock audit) -> (Outcome, detail);
- `model`: the analytic model, or "" where none exists;
- `subjects`: "integration" (the reference ERP connector's modes, or a team's service) or
  "guards" (the harness's own guards, core mode); `survivors`: the built-in subjects expected to
  survive it (the others are known-bad references that must FAIL); `simulate`: whether
  `--simulate` can run it (core-mode hazards only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from harness.core.history import CHANGE, RequestEvent
from harness.core.oracle import Outcome, integration_outcome
from harness.hazards.invariants import cancel_time_ns

# What the harness does at t_hook + offset (integration mode): a partial-cancellation Change,
# an order cancel, two Changes 20 ms apart (the second meets the first in progress), or nothing.
Action = Literal["change", "cancel", "two-changes", "nothing"]
ACTIONS: tuple[Action, ...] = ("change", "cancel", "two-changes", "nothing")
SubjectKind = Literal["integration", "guards"]

# (the harness's timed request, or None for "nothing"; the order's audit) -> (outcome, detail)
Judge = Callable[[RequestEvent | None, Mapping[str, Any] | None], tuple[Outcome, str]]


@dataclass(frozen=True)
class Recipe:
    """One trial of a hazard in integration mode.

    `start_handling`: the harness moves the order to `handling` itself (with the pinned hook
    delay, so t_hook is known ahead); False leaves it in `ready-for-handling` for the service to
    start (the `trigger` hook is then the creation's `ready-for-handling` notification).
    `hook_statuses`: the statuses the service is notified of (`FromWorkflow` filter)."""

    action: Action = "change"
    start_handling: bool = True
    trigger: str = "handling"
    hook_statuses: tuple[str, ...] = ("handling",)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"recipe action: expected one of {list(ACTIONS)}; got {self.action!r}")
        if self.trigger not in self.hook_statuses:
            raise ValueError(f"recipe trigger {self.trigger!r} must be among hook_statuses {self.hook_statuses}")


Check = Callable[[Mapping[str, Any]], "tuple[Outcome, str] | None"]


def judge_with(*checks: Check, trigger: str = "handling", abstain_on_cancel: bool = False) -> Judge:
    """A hazard's oracle: the harness's own request must have been answered (else not judged),
    then each invariant check in order (the first violation decides), then integration mode's own
    oracle (harness.core.oracle.integration_outcome: race, hook_failed, no_invoice, extra_invoice,
    wrong_value, ...). `abstain_on_cancel`: no invoice at all on an order that was canceled is the
    correct behaviour (clean), not `no_invoice`."""
    def judge(action: RequestEvent | None, audit: Mapping[str, Any] | None) -> tuple[Outcome, str]:
        if action is not None and action.indeterminate:
            return Outcome.INDETERMINATE, f"{action.kind}: {action.error or f'HTTP {action.status}'}"
        if audit is None:
            return Outcome.INDETERMINATE, "no audit from the target"
        for check in checks:
            violation = check(audit)
            if violation is not None:
                return violation
        if abstain_on_cancel and not audit.get("invoices") and cancel_time_ns(audit) is not None:
            return Outcome.CLEAN, "no invoice: the order was canceled"
        change = action if action is not None and action.kind == CHANGE else None
        outcome, detail = integration_outcome(change, dict(audit), trigger_state=trigger)
        if outcome is Outcome.CHANGE_REFUSED and change is None:  # no Change was sent: nothing was refused
            return Outcome.CLEAN, detail
        return outcome, detail

    return judge


default_judge: Judge = judge_with()


@dataclass(frozen=True)
class Hazard:
    id: str
    title: str
    ki: tuple[str, ...]
    summary: str
    provokes: str
    recipe: Recipe
    invariants: tuple[str, ...]
    judge: Judge
    subjects: SubjectKind
    survivors: tuple[str, ...]
    model: str = ""
    simulate: bool = False
    source: str = ""  # where the behaviour is documented when no KI id names it

    @property
    def scenario(self) -> str:
        """The built-in scenario that runs it (`race-harness run <id>`)."""
        return self.id

    def line(self) -> str:
        """`race-harness hazards`: id, KI ids, one line."""
        ki = ",".join(self.ki) or "-"
        return f"{self.id:<30} {ki:<16} {self.summary}"


__all__ = ["ACTIONS", "Action", "Check", "Hazard", "Judge", "Recipe", "SubjectKind", "default_judge", "judge_with"]

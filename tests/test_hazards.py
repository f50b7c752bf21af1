"""The hazard catalogue: each hazard's oracle on hand-made audits (a pass and a violation), the
registry, `race-harness hazards`, and the outcome kinds the new outcomes count as."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.builtin_scenarios import builtin_names
from harness.cli import main
from harness.core.history import CANCEL, CHANGE, RequestEvent
from harness.core.names import outcome_kind
from harness.core.oracle import Outcome
from harness.core.scenario import load_scenario
from harness.errors import ScenarioError
from harness.hazards import ORDER, get_hazard, hazard_ids, hazards
from harness.hazards.base import Recipe

MS = 1_000_000
DOCS = Path(__file__).resolve().parent.parent / "docs" / "hazards"


def _audit(*, invoices: list[dict[str, Any]] = (), final: int = 18000, statuses: tuple[str, ...] = ("handling",),
           changes: list[dict[str, Any]] = (), hook_state: str = "handling", cancel_ns: int | None = None) -> dict:
    history = [{"status": s, "ns": 100 * MS * n} for n, s in enumerate(statuses)]
    if cancel_ns is not None:
        history.append({"status": "canceled", "ns": cancel_ns})
    accepted = [i for i in invoices if i.get("accepted")]
    return {"finalValue": final, "initialValue": 23000, "invoicedTotal": sum(i["invoiceValue"] for i in accepted),
            "verdict": "race" if sum(i["invoiceValue"] for i in accepted) > final else "clean",
            "status": history[-1]["status"], "statusHistory": history, "invoices": list(invoices),
            "changes": list(changes), "hooks": [{"state": hook_state, "attempt": 1, "outcome": "delivered",
                                                   "sentNs": 50 * MS, "status": 200}]}


def _inv(value: int, *, accepted: bool = True, at_ms: float = 200, number: str = "N1", status: int = 200) -> dict:
    return {"invoiceNumber": number, "invoiceValue": value, "accepted": accepted, "status": status,
            "actedNs": round(at_ms * MS)}


def _event(kind: str = CHANGE, status: int = 202) -> RequestEvent:
    return RequestEvent(kind, "PATCH", "/x", 0, 0, status=status, response_ns=1, response_body={"totalChangeValue": -5000})


def _judge(hazard_id: str, audit: dict, action: RequestEvent | None = None) -> Outcome:
    return get_hazard(hazard_id).judge(action, audit)[0]


def test_registry_lists_every_hazard_in_catalogue_order_and_rejects_unknown_ids() -> None:
    assert hazard_ids() == list(ORDER)
    with pytest.raises(ScenarioError, match="known: invoice-during-change"):
        get_hazard("no-such-hazard")


@pytest.mark.parametrize("hazard", hazards(), ids=lambda h: h.id)
def test_each_hazard_has_a_scenario_a_doc_page_and_coherent_subjects(hazard: Any) -> None:
    assert hazard.id in builtin_names()
    assert (DOCS / f"{hazard.id}.md").is_file()
    scenario = load_scenario(hazard.id)
    assert scenario.hazard == hazard.id
    assert set(hazard.survivors) <= set(scenario.guards.names)
    assert (scenario.target.integration is None) == (hazard.subjects == "guards")
    assert {t.guard for t in scenario.thresholds} == set(scenario.guards.names)  # every subject is judged


def test_a_recipe_trigger_must_be_among_the_notified_statuses() -> None:
    with pytest.raises(ValueError, match="hook_statuses"):
        Recipe(trigger="ready-for-handling")
    with pytest.raises(ValueError, match="action"):
        Recipe(action="refund")  # type: ignore[arg-type]


@pytest.mark.parametrize("outcome,kind", [("invoice_on_cancel", "race"), ("stale_invoice", "failed"),
                                          ("not_invoiced", "failed"), ("late_invoice", "failed")])
def test_hazard_outcomes_count_as_violations_never_as_no_race(outcome: str, kind: str) -> None:
    assert outcome_kind(outcome) == kind


# --------------------------------------------------------------------------- each hazard's oracle

@pytest.mark.parametrize("hazard_id", ["invoice-during-change", "failed-change"])
def test_invoice_above_the_final_value_is_a_race_the_final_value_is_clean(hazard_id: str) -> None:
    assert _judge(hazard_id, _audit(invoices=[_inv(23000)]), _event()) is Outcome.RACE
    assert _judge(hazard_id, _audit(invoices=[_inv(18000)]), _event()) is Outcome.CLEAN


def test_failed_change_without_an_invoice_is_a_failure_not_a_pass() -> None:
    outcome = _judge("failed-change", _audit(final=23000), _event())
    assert outcome is Outcome.NO_INVOICE and outcome_kind(outcome.value) == "failed"


def test_change_during_invoice_settle_flags_an_order_that_never_reached_invoiced() -> None:
    stuck = _audit(invoices=[_inv(18000)], statuses=("handling", "invoice", "payment-approved"))
    assert _judge("change-during-invoice-settle", stuck, _event()) is Outcome.NOT_INVOICED
    done = _audit(invoices=[_inv(18000)], statuses=("handling", "invoice", "invoiced"))
    assert _judge("change-during-invoice-settle", done, _event()) is Outcome.CLEAN


def test_cancel_vs_invoice_an_invoice_after_the_cancel_is_a_race_abstaining_is_clean() -> None:
    cancel = _event(CANCEL, 200)
    hit = _audit(invoices=[_inv(23000, at_ms=400)], final=23000, cancel_ns=300 * MS)
    assert _judge("cancel-vs-invoice", hit, cancel) is Outcome.INVOICE_ON_CANCEL
    assert outcome_kind(Outcome.INVOICE_ON_CANCEL.value) == "race"
    assert _judge("cancel-vs-invoice", _audit(final=23000, cancel_ns=300 * MS), cancel) is Outcome.CLEAN


def test_cancel_answered_5xx_is_not_judged() -> None:
    assert _judge("cancel-vs-invoice", _audit(final=23000), _event(CANCEL, 503)) is Outcome.INDETERMINATE


def test_reordered_hooks_even_a_refused_invoice_after_the_cancel_is_a_failure() -> None:
    refused = _audit(invoices=[_inv(23000, accepted=False, at_ms=400, status=409)], final=23000, cancel_ns=300 * MS)
    assert _judge("reordered-hooks", refused, _event(CANCEL, 200)) is Outcome.STALE_INVOICE
    assert _judge("reordered-hooks", _audit(final=23000, cancel_ns=300 * MS), _event(CANCEL, 200)) is Outcome.CLEAN


@pytest.mark.parametrize("hazard_id", ["duplicate-hook", "lost-invoice-response"])
def test_two_effective_invoices_fail_one_is_clean(hazard_id: str) -> None:
    two = _audit(invoices=[_inv(23000, number="A"), _inv(23000, number="B")], final=23000)
    assert _judge(hazard_id, two) in (Outcome.EXTRA_INVOICE, Outcome.RACE)
    assert _judge(hazard_id, _audit(invoices=[_inv(23000)], final=23000)) is Outcome.CLEAN


def test_rate_limited_no_invoice_by_the_deadline_fails() -> None:
    assert _judge("rate-limited", _audit(final=23000)) is Outcome.NO_INVOICE
    assert _judge("rate-limited", _audit(invoices=[_inv(23000)], final=23000)) is Outcome.CLEAN


def test_second_change_refused_is_judged_only_when_the_second_change_was_refused() -> None:
    refused = {"accepted": False, "status": 409, "code": "SalesOrderSystem014"}
    race = _audit(invoices=[_inv(23000)], changes=[{"accepted": True}, refused])
    assert _judge("second-change-refused", race, _event()) is Outcome.RACE
    assert _judge("second-change-refused", _audit(invoices=[_inv(18000)], changes=[{"accepted": True}, refused]),
                  _event()) is Outcome.CLEAN
    not_provoked = _audit(invoices=[_inv(18000)], changes=[{"accepted": True}, {"accepted": True}])
    assert _judge("second-change-refused", not_provoked, _event()) is Outcome.INDETERMINATE


def test_start_handling_500_never_started_is_no_invoice_started_and_invoiced_is_clean() -> None:
    never = _audit(final=23000, statuses=("ready-for-handling",), hook_state="ready-for-handling")
    assert _judge("start-handling-500", never) is Outcome.NO_INVOICE
    done = _audit(invoices=[_inv(23000)], final=23000, statuses=("ready-for-handling", "handling", "invoiced"),
                  hook_state="ready-for-handling")
    assert _judge("start-handling-500", done) is Outcome.CLEAN


# --------------------------------------------------------------------------- CLI listing

def test_hazards_command_lists_id_ki_and_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hazards"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(ORDER)
    assert "1400005" in next(line for line in out if line.startswith("cancel-vs-invoice"))

"""Tests for harness.core.oracle: trial outcomes from hand-built client histories, and the audit cross-check."""

from __future__ import annotations

from typing import Any

import pytest

from harness.core import history as h
from harness.core.history import RequestEvent
from harness.core.oracle import (
    Outcome,
    client_outcome,
    cross_check,
    integration_outcome,
)
from harness.core.results import TrialResult
from harness.hazards.invariants import (
    no_invoice_on_cancel,
    reaches_invoiced,
    within_deadline,
)

INITIAL = 17_000  # cents, order value at creation
CUT = -5_000  # the Change's totalChangeValue (value-reducing)
FINAL = INITIAL + CUT

T0 = 1_000_000_000  # arbitrary monotonic ns


def change_event(status: int = 202, *, change_value: int | None = CUT, responded: bool = True,
                 error: str = "", body: Any = "default") -> RequestEvent:
    if body == "default":
        body = {"requestId": "r1", "finished": False}
        if change_value is not None:
            body["totalChangeValue"] = change_value
    return RequestEvent(
        kind=h.CHANGE, method="PATCH", path="/api/order-system/orders/o1/changes", planned_ns=T0, sent_ns=T0,
        response_ns=T0 + 2_000_000 if responded else None, status=status if responded else 0,
        request_body={"reason": "partial cancellation"}, response_body=body if responded else None, error=error,
    )


def invoice_event(status: int = 200, *, offset_ms: float = 60.0, responded: bool = True,
                  error: str = "") -> RequestEvent:
    sent = T0 + round(offset_ms * 1e6)
    return RequestEvent(
        kind=h.INVOICE, method="POST", path="/api/orders/pvt/document/o1/invoices", planned_ns=sent, sent_ns=sent,
        response_ns=sent + 2_000_000 if responded else None, status=status if responded else 0,
        response_body={"receipt": "x"} if responded and status < 300 else None, error=error,
    )


def audit(verdict: str, *, invoice_accepted: bool | None = True, change_accepted: bool | None = True) -> dict[str, Any]:
    invoices = [] if invoice_accepted is None else [{"invoiceNumber": "NF-1", "accepted": invoice_accepted}]
    changes = [] if change_accepted is None else [{"requestId": "r1", "accepted": change_accepted}]
    return {"verdict": verdict, "initialValue": INITIAL, "finalValue": FINAL, "invoices": invoices,
            "changes": changes}


# --------------------------------------------------------------------------- client_outcome


class TestClientOutcome:
    def test_race_when_accepted_invoice_above_final_value(self) -> None:
        outcome, detail = client_outcome(change_event(), invoice_event(), INITIAL, INITIAL, "")
        assert outcome is Outcome.RACE
        assert detail == ""

    def test_race_boundary_one_cent_above_final(self) -> None:
        outcome, _ = client_outcome(change_event(), invoice_event(), FINAL + 1, INITIAL, "")
        assert outcome is Outcome.RACE

    def test_clean_when_invoice_equals_final_value(self) -> None:
        outcome, detail = client_outcome(change_event(), invoice_event(), FINAL, INITIAL, "")
        assert outcome is Outcome.CLEAN
        assert detail == ""

    def test_clean_when_invoice_below_final_value(self) -> None:
        outcome, _ = client_outcome(change_event(), invoice_event(), FINAL - 1, INITIAL, "")
        assert outcome is Outcome.CLEAN

    def test_final_value_comes_from_the_change_response(self) -> None:
        # Same invoice value; only the Change's totalChangeValue differs, so the verdict must flip.
        value = INITIAL - 100
        assert client_outcome(change_event(change_value=-50), invoice_event(), value, INITIAL, "")[0] is Outcome.CLEAN
        assert client_outcome(change_event(change_value=-500), invoice_event(), value, INITIAL, "")[0] is Outcome.RACE

    @pytest.mark.parametrize("status", [400, 409])
    def test_invoice_refused(self, status: int) -> None:
        outcome, detail = client_outcome(change_event(), invoice_event(status), INITIAL, INITIAL, "")
        assert outcome is Outcome.INVOICE_REFUSED
        assert detail == ""

    def test_change_refused_after_invoice_first(self) -> None:
        # Invoice first (negative offset), accepted; the Change then gets 409.
        outcome, detail = client_outcome(change_event(409, body={"error": {"code": "InvalidStatus"}}),
                                         invoice_event(offset_ms=-100), INITIAL, INITIAL, "")
        assert outcome is Outcome.CHANGE_REFUSED
        assert detail == ""

    def test_change_never_sent_counts_as_change_refused(self) -> None:
        outcome, _ = client_outcome(None, invoice_event(), INITIAL, INITIAL, "")
        assert outcome is Outcome.CHANGE_REFUSED

    def test_guard_timeout_with_reason(self) -> None:
        reason = "Changes still unfinished after 40 ms"
        outcome, detail = client_outcome(change_event(), None, -1, INITIAL, reason)
        assert outcome is Outcome.GUARD_TIMEOUT
        assert detail == reason

    def test_guard_error_wins_even_if_an_invoice_was_sent(self) -> None:
        # serialized: the Change side timed out waiting, the invoice went out later.
        outcome, detail = client_outcome(change_event(), invoice_event(), FINAL, INITIAL, "order read failed")
        assert outcome is Outcome.GUARD_TIMEOUT
        assert detail == "order read failed"

    def test_no_invoice_without_error_is_guard_timeout(self) -> None:
        outcome, detail = client_outcome(change_event(), None, -1, INITIAL, "")
        assert outcome is Outcome.GUARD_TIMEOUT
        assert detail == "no invoice was sent"

    def test_indeterminate_on_invoice_timeout(self) -> None:
        inv = invoice_event(responded=False, error="ReadTimeout: timed out")
        outcome, detail = client_outcome(change_event(), inv, INITIAL, INITIAL, "")
        assert outcome is Outcome.INDETERMINATE
        assert detail == "invoice: ReadTimeout: timed out"

    def test_indeterminate_on_change_timeout(self) -> None:
        ch = change_event(responded=False, error="ReadTimeout")
        outcome, detail = client_outcome(ch, invoice_event(), INITIAL, INITIAL, "")
        assert outcome is Outcome.INDETERMINATE
        assert detail == "change: ReadTimeout"

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_indeterminate_on_5xx(self, status: int) -> None:
        outcome, detail = client_outcome(change_event(), invoice_event(status), INITIAL, INITIAL, "")
        assert outcome is Outcome.INDETERMINATE
        assert detail == f"invoice: HTTP {status}"

    def test_indeterminate_on_change_5xx(self) -> None:
        outcome, detail = client_outcome(change_event(503, body=None), invoice_event(), INITIAL, INITIAL, "")
        assert outcome is Outcome.INDETERMINATE
        assert detail == "change: HTTP 503"

    def test_indeterminate_beats_guard_timeout(self) -> None:
        # A request that may have applied makes the trial unjudgeable, whatever the guard did.
        ch = change_event(responded=False, error="ConnectError")
        outcome, _ = client_outcome(ch, None, -1, INITIAL, "Changes still unfinished")
        assert outcome is Outcome.INDETERMINATE

    def test_a_canceled_change_leaves_the_initial_value_final(self) -> None:
        # HC-ADAPT: a canceled Change never applied, so invoicing the initial value is clean
        raced, _ = client_outcome(change_event(), invoice_event(), INITIAL, INITIAL, "")
        clean, _ = client_outcome(change_event(), invoice_event(), INITIAL, INITIAL, "", change_canceled=True)
        assert (raced, clean) == (Outcome.RACE, Outcome.CLEAN)

    def test_indeterminate_when_change_response_lacks_total(self) -> None:
        outcome, detail = client_outcome(change_event(change_value=None), invoice_event(), INITIAL, INITIAL, "")
        assert outcome is Outcome.INDETERMINATE
        assert "totalChangeValue" in detail

    def test_indeterminate_when_change_response_is_not_json_object(self) -> None:
        outcome, _ = client_outcome(change_event(body="<html>ok</html>"), invoice_event(), INITIAL, INITIAL, "")
        assert outcome is Outcome.INDETERMINATE

    def test_every_outcome_is_reachable(self) -> None:
        """Guard against an Outcome added without an oracle path (and this test file)."""
        seen = {
            client_outcome(change_event(), invoice_event(), INITIAL, INITIAL, "")[0],
            client_outcome(change_event(), invoice_event(), FINAL, INITIAL, "")[0],
            client_outcome(change_event(), invoice_event(409), INITIAL, INITIAL, "")[0],
            client_outcome(change_event(409), invoice_event(), INITIAL, INITIAL, "")[0],
            client_outcome(change_event(), None, -1, INITIAL, "timeout")[0],
            client_outcome(change_event(), invoice_event(500), INITIAL, INITIAL, "")[0],
            integration_outcome(change_event(), {"verdict": "clean", "invoices": []})[0],
            integration_outcome(change_event(), {"verdict": "clean", "invoices": [],
                                                 "hooks": [{"state": "handling", "attempt": 1, "status": 500,
                                                            "outcome": "gave-up", "error": "HTTP 500"}]})[0],
            integration_outcome(change_event(), {"verdict": "clean", "finalValue": FINAL, "invoices": [
                {"accepted": True, "status": 200, "invoiceValue": FINAL},
                {"accepted": False, "status": 400, "invoiceValue": FINAL}]})[0],
            integration_outcome(change_event(), {"verdict": "clean", "finalValue": FINAL, "invoices": [
                {"accepted": True, "status": 200, "invoiceValue": FINAL - 1}]})[0],
        }
        # The hazard oracles' own outcomes (harness.hazards.invariants).
        canceled = [{"status": "cancel", "ns": 0}]
        for found in (no_invoice_on_cancel({"statusHistory": canceled, "invoices": [{"accepted": True, "actedNs": 1}]}),
                      no_invoice_on_cancel({"statusHistory": canceled, "invoices": [{"accepted": False, "actedNs": 1}]},
                                           refused_counts=True),
                      reaches_invoiced({"finalValue": FINAL, "invoicedTotal": FINAL, "statusHistory": [],
                                        "invoices": [{"accepted": True, "invoiceValue": FINAL}]}),
                      within_deadline({"invoices": [{"accepted": True, "actedNs": 2_000_000_000}]}, 0, 1000)):
            assert found is not None
            seen.add(found[0])
        assert seen == set(Outcome)

    def test_integration_failures_are_failed_kind_and_name_what_happened(self) -> None:
        out, why = integration_outcome(change_event(), {"verdict": "clean", "finalValue": FINAL, "invoices": [
            {"accepted": True, "status": 200, "invoiceValue": FINAL},
            {"accepted": False, "status": 409, "invoiceValue": FINAL + 1}]})
        assert out is Outcome.EXTRA_INVOICE and "HTTP 200" in why and "HTTP 409" in why
        # A hook delivered on a retry is accepted: VTEX retries too.
        hooks = [{"state": "handling", "attempt": 1, "status": 500, "outcome": "retrying"},
                 {"state": "handling", "attempt": 2, "status": 200, "outcome": "delivered"}]
        assert integration_outcome(change_event(), {"verdict": "clean", "invoices": [], "hooks": hooks})[0] \
            is Outcome.NO_INVOICE
        # A race stays a race even with extra invoices.
        assert integration_outcome(change_event(), {"verdict": "race", "invoices": [{}, {}]})[0] is Outcome.RACE
        from harness.core.names import outcome_kind
        assert {outcome_kind(o) for o in ("hook_failed", "extra_invoice", "wrong_value")} == {"failed"}


# --------------------------------------------------------------------------- cross_check


class TestCrossCheck:
    def test_race_agrees_with_race_audit(self) -> None:
        assert cross_check(Outcome.RACE, True, True, audit("race")) == ("race", True, "")

    def test_clean_agrees_with_clean_audit(self) -> None:
        assert cross_check(Outcome.CLEAN, True, True, audit("clean")) == ("clean", True, "")

    def test_change_refused_agrees_with_clean_audit_holding_a_refused_change(self) -> None:
        a = audit("clean", invoice_accepted=True, change_accepted=False)
        assert cross_check(Outcome.CHANGE_REFUSED, True, False, a) == ("clean", True, "")

    def test_invoice_refused_agrees_with_audit_holding_a_refused_invoice(self) -> None:
        a = audit("clean", invoice_accepted=False, change_accepted=True)
        assert cross_check(Outcome.INVOICE_REFUSED, False, True, a) == ("clean", True, "")

    def test_client_race_vs_audit_clean_is_reported(self) -> None:
        verdict, agree, why = cross_check(Outcome.RACE, True, True, audit("clean"))
        assert verdict == "clean"  # the audit's verdict is kept as is, not overwritten by the client's
        assert agree is False
        assert why == "client says race, audit verdict clean"

    def test_client_clean_vs_audit_race_is_reported(self) -> None:
        verdict, agree, why = cross_check(Outcome.CLEAN, True, True, audit("race"))
        assert (verdict, agree) == ("race", False)
        assert "client says clean, audit verdict race" in why

    def test_invoice_acceptance_mismatch_is_reported(self) -> None:
        # Client saw 200 on the invoice, the mock recorded no accepted invoice.
        a = audit("clean", invoice_accepted=False)
        verdict, agree, why = cross_check(Outcome.CLEAN, True, True, a)
        assert (verdict, agree) == ("clean", False)
        assert why == "client invoice ok=True, audit has 0 accepted invoice(s)"

    def test_change_acceptance_mismatch_is_reported(self) -> None:
        a = audit("clean", change_accepted=None)  # the mock has no record of the Change at all
        verdict, agree, why = cross_check(Outcome.CLEAN, True, True, a)
        assert agree is False
        assert why == "client change ok=True, audit has 0 accepted change(s)"

    def test_several_problems_are_all_listed(self) -> None:
        a = audit("clean", invoice_accepted=False, change_accepted=False)
        _, agree, why = cross_check(Outcome.RACE, True, True, a)
        assert agree is False
        parts = why.split("; ")
        assert len(parts) == 3
        assert parts[0].startswith("client says race")
        assert parts[1].startswith("client invoice ok=True")
        assert parts[2].startswith("client change ok=True")

    def test_pending_audit_is_reported(self) -> None:
        verdict, agree, why = cross_check(Outcome.CLEAN, True, True, audit("pending"))
        assert verdict == "pending"
        assert agree is False
        assert "pending" in why

    def test_pending_audit_is_reported_even_for_indeterminate(self) -> None:
        verdict, agree, why = cross_check(Outcome.INDETERMINATE, False, True, audit("pending"))
        assert (verdict, agree) == ("pending", False)
        assert "pending" in why

    def test_missing_audit_is_unknown_and_agrees(self) -> None:
        for outcome in Outcome:
            assert cross_check(outcome, True, True, None) == ("unknown", True, "")

    def test_audit_without_verdict_is_unknown(self) -> None:
        verdict, agree, why = cross_check(Outcome.RACE, True, True, {"invoices": [{"accepted": True}],
                                                                      "changes": [{"accepted": True}]})
        assert verdict == "unknown"
        assert agree is False  # the client claims a race the audit does not confirm
        assert "client says race" in why

    def test_indeterminate_is_not_contradicted_by_a_settled_audit(self) -> None:
        # The client cannot tell whether its request applied, so there is no claim to contradict;
        # the audit verdict is still recorded for the report.
        verdict, agree, why = cross_check(Outcome.INDETERMINATE, False, False, audit("race"))
        assert (verdict, agree, why) == ("race", True, "")


def test_trial_result_columns_match_row_keys() -> None:
    """trials.csv columns are the dataclass fields, in order (a versioned contract)."""
    cols = TrialResult.columns()
    assert cols[:3] == ["trial_id", "seq", "guard"]
    assert len(cols) == len(set(cols))
    assert {"outcome", "audit_verdict", "agree", "disagreement"} <= set(cols)


# --------------------------------------------------------------------------- integration_outcome


def _integ_audit(verdict: str, *invoices: bool) -> dict[str, Any]:
    return {"verdict": verdict, "invoices": [{"accepted": ok} for ok in invoices]}


@pytest.mark.parametrize(
    ("change_status", "audit_", "expected"),
    [
        (202, _integ_audit("race", True), Outcome.RACE),
        (202, _integ_audit("clean", True), Outcome.CLEAN),
        (202, _integ_audit("clean", False), Outcome.INVOICE_REFUSED),
        (409, _integ_audit("clean", True), Outcome.CHANGE_REFUSED),
        (202, _integ_audit("clean"), Outcome.NO_INVOICE),
        (202, _integ_audit("pending", True), Outcome.INDETERMINATE),
        (500, _integ_audit("race", True), Outcome.INDETERMINATE),
        (202, None, Outcome.INDETERMINATE),
    ],
)
def test_integration_outcome_comes_from_the_audit(change_status: int, audit_: dict[str, Any] | None,
                                                  expected: Outcome) -> None:
    assert integration_outcome(change_event(change_status), audit_)[0] is expected


def test_cross_check_of_an_audit_without_invoice_or_change_records() -> None:
    # A target whose audit lists no records: a client that saw nothing accepted agrees with it,
    # one that saw its invoice and Change accepted is reported as a disagreement (not a crash).
    from harness.core.oracle import Outcome, cross_check
    assert cross_check(Outcome.CLEAN, False, False, {"verdict": "clean"}) == ("clean", True, "")
    verdict, agree, why = cross_check(Outcome.CLEAN, True, True, {"verdict": "clean"})
    assert (verdict, agree) == ("clean", False)
    assert why == ("client invoice ok=True, audit has 0 accepted invoice(s); "
                   "client change ok=True, audit has 0 accepted change(s)")

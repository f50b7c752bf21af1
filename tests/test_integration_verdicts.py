"""Integration-mode verdicts without live services (fast enough for every mutation-testing mutant).

`IntegrationRunner._await_invoice` decides *when* a trial is judged: it must wait
for a service that is still invoicing (or whose Change is still processing), and
stop at its bounds so a service that never invoices becomes `no_invoice`, not a
hang or a premature "no race". A fake audit endpoint and a fake clock make each
bound exact. `integration_result` turns the audit into the trials.csv row.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from harness.core.history import RequestEvent
from harness.core.oracle import Outcome
from harness.core.results import integration_result
from harness.integration import runner as runner_mod
from harness.integration.runner import IntegrationRunner

MS = 1_000_000


class _Clock:
    def __init__(self) -> None:
        self.t = 0

    def now_ns(self) -> int:
        return self.t


class _AuditClient:
    """Answers audit polls from `audit_at(now_ns)`; None means the audit request failed."""

    def __init__(self, clock: _Clock, audit_at: Callable[[int], dict[str, Any] | None]) -> None:
        self.clock = clock
        self.audit_at = audit_at
        self.polls: list[int] = []

    async def audit(self, hist: Any, order_id: str) -> SimpleNamespace:
        assert order_id == "1-01"
        self.polls.append(self.clock.t)
        body = self.audit_at(self.clock.t)
        return SimpleNamespace(ok=body is not None, response_body=body, status=200 if body is not None else 503)


def _await(monkeypatch: pytest.MonkeyPatch, audit_at: Callable[[int], dict[str, Any] | None], *,
           wait_until_ms: int = 100, guard_timeout_ms: int = 500) -> tuple[dict[str, Any] | None, _Clock, _AuditClient]:
    clock = _Clock()

    async def sleep(seconds: float) -> None:  # virtual time: a poll interval passes at once
        clock.t += round(seconds * 1e9)

    monkeypatch.setattr(runner_mod, "asyncio", SimpleNamespace(sleep=sleep))
    runner = IntegrationRunner.__new__(IntegrationRunner)
    runner.scenario = SimpleNamespace(guards=SimpleNamespace(timeout_ms=guard_timeout_ms))  # type: ignore[assignment]
    runner.clock = clock  # type: ignore[assignment]
    client = _AuditClient(clock, audit_at)
    change = RequestEvent("change", "POST", "/changes", None, 0, 1, 200)
    audit = asyncio.run(runner._await_invoice(client, "1-01", wait_until_ms * MS))  # type: ignore[arg-type]
    return audit, clock, client


def _audit(verdict: str, invoices: int = 1) -> dict[str, Any]:
    return {"verdict": verdict, "invoices": [{"accepted": True}] * invoices}


def _grid(last_ms: int) -> list[int]:
    """Poll instants every 50 ms from 0 to `last_ms`."""
    return [k * 50 * MS for k in range(last_ms // 50 + 1)]


GRACE_MS = int(runner_mod._EXTRA_INVOICE_GRACE_MS)  # a second invoice may follow the first: judged too


def test_a_settled_invoice_is_judged_once_the_extra_invoice_grace_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    audit, _, client = _await(monkeypatch, lambda t: _audit("clean"))
    assert audit == _audit("clean")
    assert client.polls == _grid(GRACE_MS)


def test_a_service_that_never_invoices_is_judged_exactly_at_the_invoice_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # Polls every 50 ms; the wait ends at 100 ms, so the third poll (at 100 ms) is the last:
    # the trial becomes no_invoice then, not at the longer settle bound and not earlier.
    audit, _, client = _await(monkeypatch, lambda t: _audit("none", invoices=0))
    assert audit == _audit("none", invoices=0)
    assert client.polls == [0, 50 * MS, 100 * MS]


def test_an_invoice_that_arrives_before_the_wait_ends_is_judged_when_it_appears(monkeypatch: pytest.MonkeyPatch) -> None:
    audit, _, client = _await(monkeypatch, lambda t: _audit("race") if t >= 60 * MS else _audit("none", 0),
                                  wait_until_ms=500)
    assert audit == _audit("race")
    assert client.polls == _grid(100 + GRACE_MS)  # first seen at the 100 ms poll, judged after the grace


def test_a_pending_change_is_awaited_past_the_invoice_wait_until_it_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    # Invoiced early but the Change is still processing: judging now would call a race "pending".
    audit, _, client = _await(monkeypatch, lambda t: _audit("race") if t >= 300 * MS else _audit("pending"))
    assert audit == _audit("race")
    assert client.polls[-1] == 300 * MS
    assert len(client.polls) == 7


def test_a_change_that_never_settles_is_given_up_at_guard_timeout_plus_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # settle bound = invoice wait (100 ms) + guard timeout (500 ms) + 1000 ms = 1600 ms, on the poll grid.
    audit, _, client = _await(monkeypatch, lambda t: _audit("pending"))
    assert audit == _audit("pending")  # the oracle then calls it indeterminate
    assert client.polls[-1] == 1600 * MS
    assert len(client.polls) == 33
    # A longer guard timeout waits longer.
    _, _, longer = _await(monkeypatch, lambda t: _audit("pending"), guard_timeout_ms=1000)
    assert longer.polls[-1] == 2100 * MS


def test_a_failed_audit_request_gives_no_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    audit, _, client = _await(monkeypatch, lambda t: None)
    assert audit is None
    assert client.polls == [0]
    audit, _, client = _await(monkeypatch, lambda t: None if t >= 50 * MS else _audit("none", 0))
    assert audit is None
    assert client.polls == [0, 50 * MS]


# --- integration_result: the row a user reads in trials.csv -------------------------------------------------

def _change(status: int = 200, response_ns: int | None = 2 * MS, error: str = "") -> RequestEvent:
    return RequestEvent("change", "POST", "/changes", None, 1_030 * MS, response_ns, status, error=error)


def _full_audit(*, verdict: str = "race", accepted: bool = True, invoices: int = 1) -> dict[str, Any]:
    # t0 (hook planned) = 1000 ms; hook sent at 1001, Change acted at 1032 (offset 30 -> server error +1 ms).
    inv = [{"accepted": accepted, "actedNs": 1_100 * MS, "invoiceValue": 10000, "status": 200 if accepted else 409}]
    return {
        "verdict": verdict, "finalValue": 8000, "invoicedTotal": 10000 if accepted else 0,
        "invoices": inv * invoices,
        "changes": [{"accepted": True, "actedNs": 1_032 * MS, "finishedNs": 1_090 * MS, "delayMs": 58.0}],
        "hooks": [{"state": "ready-for-handling", "sentNs": 900 * MS, "outcome": "delivered"},
                  {"state": "handling", "sentNs": 1_001 * MS, "outcome": "delivered"}],
    }


def _row(change: RequestEvent, audit: dict[str, Any] | None, tolerance_ms: float = 5.0) -> Any:
    return integration_result(trial_id=3, seq=4, guard="svc", offset_ms=30.0, order_id="1-01", initial_value=10000,
                              change=change, audit=audit, t0_ns=1_000 * MS, duration_ms=12.5,
                              tolerance_ms=tolerance_ms)


def test_integration_row_reports_the_race_and_its_timing() -> None:
    row = _row(_change(), _full_audit())
    assert row.outcome == Outcome.RACE.value
    assert (row.initial_value, row.final_value, row.invoice_value, row.invoiced_total) == (10000, 8000, 10000, 10000)
    assert (row.invoice_status, row.change_status) == (200, 200)
    assert row.hook_sent_ms == pytest.approx(1.0)  # the handling hook, not an earlier state's
    assert row.change_sent_ms == pytest.approx(30.0)
    assert row.change_acted_ms == pytest.approx(32.0)
    assert row.change_finished_ms == pytest.approx(90.0)
    assert row.invoice_acted_ms == pytest.approx(100.0)
    assert row.change_delay_ms == pytest.approx(58.0)
    assert row.server_offset_error_ms == pytest.approx(1.0)
    assert row.client_offset_error_ms == pytest.approx(0.0)
    assert row.guard_cost_ms == pytest.approx(99.0)  # the service's reaction time to the hook
    assert not row.late
    assert _row(_change(), _full_audit(), tolerance_ms=0.5).late


def test_integration_row_for_a_service_that_never_invoiced() -> None:
    row = _row(_change(), _full_audit(verdict="clean", invoices=0))
    assert row.outcome == Outcome.NO_INVOICE.value
    assert row.error == "the service sent no invoice in time"
    assert (row.invoice_value, row.invoice_status) == (-1, 0)
    assert math.isnan(row.invoice_acted_ms)


def test_integration_row_judges_the_accepted_invoice_when_one_was_refused_first() -> None:
    audit = _full_audit(verdict="clean")
    audit["invoices"] = [{"accepted": False, "invoiceValue": 10000, "status": 409},
                         {"accepted": True, "invoiceValue": 8000, "status": 200, "actedNs": 1_200 * MS}]
    row = _row(_change(), audit)
    # A second invoice request is the service failing its job (issue: extra invoices, refused or not,
    # are reported with their status); the row still shows the accepted one.
    assert row.outcome == Outcome.EXTRA_INVOICE.value
    assert (row.invoice_value, row.invoice_status) == (8000, 200)
    assert row.invoice_acted_ms == pytest.approx(200.0)


def test_integration_row_without_an_audit_is_indeterminate() -> None:
    row = _row(_change(), None)
    assert row.outcome == Outcome.INDETERMINATE.value
    assert row.error == "no audit from the target"
    assert (row.final_value, row.invoice_value, row.invoiced_total) == (-1, -1, 0)
    assert math.isnan(row.change_delay_ms)
    assert not row.late  # unknown timing is never late


def test_integration_row_cross_checks_the_audit() -> None:
    row = _row(_change(), _full_audit())
    assert (row.audit_verdict, row.agree) == ("race", True)
    clean = _full_audit(verdict="clean")
    clean["finalValue"] = 10000  # the audit's own Change never reduced the value the service invoiced
    refused = _row(_change(status=409), clean)
    assert refused.outcome == Outcome.CHANGE_REFUSED.value
    assert not refused.agree  # client change refused, audit has an accepted change
    assert refused.error == ""  # a refused Change is a judged outcome, not an error
    assert row.error == ""


def test_integration_row_identifies_the_trial_and_its_plan() -> None:
    # The Change is planned at the offset from the hook; the service, not the harness, plans the invoice.
    row = _row(_change(), _full_audit())
    assert (row.trial_id, row.seq, row.guard, row.offset_ms, row.order_id) == (3, 4, "svc", 30.0, "1-01")
    assert row.duration_ms == 12.5
    assert row.change_planned_ms == 30.0
    assert math.isnan(row.invoice_planned_ms)


def test_integration_row_when_every_invoice_was_refused_shows_the_refusal() -> None:
    audit = _full_audit(verdict="clean", accepted=False)
    row = _row(_change(), audit)
    assert row.outcome == Outcome.INVOICE_REFUSED.value
    assert (row.invoice_value, row.invoice_status, row.invoiced_total) == (10000, 409, 0)

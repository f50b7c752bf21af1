"""The seeded fault schedule: 500/503 before acting, slow responses, and responses lost after the
operation applied (start-handling "can also respond with status 500", SPEC; circuit breakers answer
503, VTEX's load-test guide; a lost response is what a client cannot tell from a failure)."""

from __future__ import annotations

import time

import httpx
import pytest

from mock_orders_api.config import MockConfig
from mock_orders_api.errors import ConfigError
from mock_orders_api.faults import FaultRule, FaultSchedule, parse_faults


def test_rules_parse_and_reject_impossible_probabilities() -> None:
    rules = parse_faults({"start-handling": {"500": 0.5}, "invoice": {"drop": 0.1, "slow": 0.2, "slow_ms": 50}}, "x")
    assert rules["start-handling"] == FaultRule(p500=0.5)
    assert rules["invoice"].drop == 0.1 and rules["invoice"].slow_ms == 50
    for bad in ({"nope": {"500": 0.1}}, {"invoice": {"500": 0.7, "503": 0.7}}, {"invoice": {"boom": 0.1}}):
        with pytest.raises(ConfigError):
            parse_faults(bad, "x")


def test_draws_are_reproducible_from_the_seed() -> None:
    rule = FaultRule(p500=0.3, p503=0.2, slow=0.1, drop=0.1)
    a = [FaultSchedule().draw("invoice", rule, 7, None) for _ in range(1)]
    s1, s2 = FaultSchedule(), FaultSchedule()
    seq1 = [s1.draw("invoice", rule, 7, None) for _ in range(200)]
    seq2 = [s2.draw("invoice", rule, 7, None) for _ in range(200)]
    assert seq1 == seq2 and a[0] == seq1[0]
    assert {"500", "503", "slow", "drop", None} == set(seq1)
    assert seq1 != [FaultSchedule().draw("invoice", rule, 8, None) for _ in range(200)]


async def test_start_handling_500_is_not_applied_and_a_retry_succeeds(api, assert_error) -> None:
    oid = (await api.create_order())["orderId"]
    r = await api.client.post(f"/api/oms/pvt/orders/{oid}/start-handling", headers={"X-Mock-Fault": "500"})
    assert_error(r, 500, code="InternalServerError")
    assert (await api.order(oid))["status"] == "ready-for-handling"  # refused before acting
    assert (await api.start_handling(oid)).status_code == 204  # retry until 204 (SPEC)
    journal = (await api.client.get("/_mock/journal")).json()
    outcomes = [e.get("outcome") for e in journal.get("entries", journal if isinstance(journal, list) else [])]
    assert "fault-500" in outcomes


async def test_configured_503_on_a_route(api, assert_error) -> None:
    oid = (await api.handling_order())["orderId"]
    await api.set_config(faults={"get-order": {"503": 1.0}})
    assert_error(await api.client.get(f"/api/oms/pvt/orders/{oid}"), 503, code="ServiceUnavailable")
    await api.set_config(faults={})
    assert (await api.client.get(f"/api/oms/pvt/orders/{oid}")).status_code == 200


async def test_slow_response_waits_then_answers(api) -> None:
    oid = (await api.handling_order())["orderId"]
    await api.set_config(faults={"get-order": {"slow": 1.0, "slow_ms": 120}})
    t0 = time.monotonic()
    assert (await api.client.get(f"/api/oms/pvt/orders/{oid}")).status_code == 200
    assert time.monotonic() - t0 >= 0.11


async def test_a_lost_response_was_applied_but_never_answered(make_api) -> None:
    api = make_api(MockConfig(), kind="live")  # a real server: the connection is cut mid-response
    order = await api.handling_order()
    oid = order["orderId"]
    with pytest.raises(httpx.HTTPError):
        await api.client.post(f"/api/orders/pvt/document/{oid}/invoices", headers={"X-Mock-Fault": "drop"},
                              json={"type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "NF-1",
                                    "invoiceValue": order["value"],
                                    "items": [{"itemIndex": 0, "price": order["value"], "quantity": 1}]})
    audit = await api.audit(oid)
    assert audit["invoicedTotal"] == order["value"] and audit["status"] == "invoiced"  # it did apply


async def test_bad_fault_header_is_refused(api, assert_error) -> None:
    oid = (await api.handling_order())["orderId"]
    assert_error(await api.client.get(f"/api/oms/pvt/orders/{oid}", headers={"X-Mock-Fault": "boom"}), 400,
                 mentions="x-mock-fault")

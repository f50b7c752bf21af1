"""The pytest plugin as a team would use it, run by pytest's own pytester."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def test_race_mock_fixture_reproduces_the_ticket_by_hand(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx

        def test_vulnerable_then_strict(race_mock):
            race_mock.set_delay("fixed:5000")
            order = race_mock.create_order([{"id": "1", "quantity": 2, "price": 5000}])
            oid = order["orderId"]
            with httpx.Client(base_url=race_mock.url, timeout=10) as c:
                assert c.post(f"/api/oms/pvt/orders/{oid}/start-handling").status_code == 204
                r = c.patch(f"/api/order-system/orders/{oid}/changes",
                            json={"reason": "cancel one", "remove": {"items": [{"id": "1", "quantity": 1}]}})
                assert r.status_code == 202 and r.json()["finished"] is False
                inv = {"type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "1", "invoiceValue": 10000,
                       "items": [{"itemIndex": 0, "price": 10000, "quantity": 2}]}
                assert c.post(f"/api/orders/pvt/document/{oid}/invoices", json=inv).status_code == 200
            assert race_mock.audit(oid)["invoices"][0]["validatedAgainst"] == 10000

        def test_reset_between_tests_and_strict(race_mock):
            assert race_mock.verdicts()["orders"] == 0
            race_mock.set_policy("strict")
            race_mock.set_delay("fixed:5000")
            oid = race_mock.create_order([{"id": "1", "quantity": 2, "price": 5000}], status="handling")["orderId"]
            with httpx.Client(base_url=race_mock.url, timeout=10) as c:
                c.patch(f"/api/order-system/orders/{oid}/changes",
                        json={"reason": "x", "remove": {"items": [{"id": "1", "quantity": 1}]}})
                inv = {"type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "1", "invoiceValue": 10000,
                       "items": [{"itemIndex": 0, "price": 10000, "quantity": 2}]}
                r = c.post(f"/api/orders/pvt/document/{oid}/invoices", json=inv)
            assert r.status_code == 409 and r.json()["error"]["code"] == "ChangeInProgress"
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_run_integration_scenario_judges_the_reference_connector(pytester: pytest.Pytester) -> None:
    scenario = ROOT / "scenarios" / "integration-reference.toml"
    pytester.makepyfile(
        f"""
        def test_guarded_connector_does_not_race_and_naive_does(run_integration_scenario):
            summary = run_integration_scenario({str(scenario)!r}, trials=2)
            assert summary.trials("guarded") > 0 and summary.trials("naive") > 0
            assert summary.races("guarded") == 0
            assert summary.races("naive") > 0
            assert summary.race_rate_upper("guarded") < summary.race_rate_upper("naive")
            # 2 trials per offset prove no rate bound: the gate cannot PASS on so little.
            assert summary.gate_verdict in ("inconclusive", "fail") and summary.gate_passed is False
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)

"""VTEX's Change lifecycle and refusals (HC-ADAPT; MOD-ERR), under both policies."""

from __future__ import annotations

import pytest

from mock_orders_api.config import MockConfig
from mock_orders_api.delays import Fixed

ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}, {"id": "sku-2", "quantity": 1, "price": 3000}]
REMOVED = {"id": "sku-1", "quantity": 1}


async def _terminal(api, oid: str, rid: str, poll) -> dict:
    async def _done():
        d = await api.change_detail(oid, rid)
        return d if not d["inProgress"] else None
    return await poll(_done, timeout_s=5)


async def test_statuses_move_through_waiting_confirmation_and_preparing_to_done(api, poll) -> None:
    order = await api.handling_order(ITEMS)
    oid = order["orderId"]
    r = await api.change(oid, remove=[REMOVED], delay_ms=300)
    body = r.json()
    assert r.status_code == 202 and body["status"] == "waiting-confirmation" and body["inProgress"] is True
    assert body["settings"] is None and body["cancellationData"] is None
    assert [entry["status"] for entry in body["logs"]] == ["waiting-acknowledgement", "waiting-confirmation"]

    async def _preparing():
        return (await api.change_detail(oid, body["requestId"]))["status"] == "preparing" or None
    await poll(_preparing, timeout_s=5)
    done = await _terminal(api, oid, body["requestId"], poll)
    assert done["status"] == "done" and done["finished"] is True
    assert [entry["status"] for entry in done["logs"]][-1] == "done"
    assert (await api.order(oid))["value"] == order["value"] - 5000


async def test_a_canceled_change_is_never_finished_and_leaves_the_order_untouched(api, poll) -> None:
    order = await api.handling_order(ITEMS)
    oid = order["orderId"]
    r = await api.change(oid, remove=[REMOVED], delay_ms=40, outcome="canceled")
    assert r.status_code == 202 and r.json()["finished"] is False
    detail = await _terminal(api, oid, r.json()["requestId"], poll)
    assert detail["status"] == "canceled" and detail["finished"] is False  # HC-ADAPT: finished stays false
    assert detail["cancellationData"]["reason"]
    view = await api.order(oid)
    assert view["value"] == order["value"] and view["changesAttachment"] is None
    audit = await api.audit(oid)
    assert audit["verdict"] == "clean" and audit["changes"][0]["canceled"] is True
    # a canceled Change is not "in progress": the next one is accepted (no 014)
    assert (await api.change(oid, remove=[REMOVED], delay_ms=5)).status_code == 202


async def test_cancel_rate_is_seeded_and_reproducible(make_api, poll) -> None:
    async def run() -> list[bool]:
        api = make_api(MockConfig(delay=Fixed(1.0), seed=7))
        await api.set_config(change_cancel_rate=0.5)
        oids = []
        for _ in range(16):
            oid = (await api.handling_order(ITEMS))["orderId"]
            assert (await api.change(oid, remove=[REMOVED])).status_code == 202
            oids.append(oid)

        async def _all_terminal():
            audits = [await api.audit(o) for o in oids]
            return audits if all(a["verdict"] != "pending" for a in audits) else None
        return [a["changes"][0]["canceled"] for a in await poll(_all_terminal, timeout_s=5)]
    first = await run()
    assert first == await run() and True in first and False in first


def test_cancel_rate_draw_by_state() -> None:
    from mock_orders_api.domain.store import OrderStore
    from mock_orders_api.state import MockState
    outcomes = []
    for _ in range(2):
        state = MockState(MockConfig(seed=3, change_cancel_rate=0.5), deterministic=True)
        # the draw is seeded per (seed, order id): the same id both times (a store picks a random base)
        order = OrderStore(first_id=1001).create({"items": ITEMS, "status": "handling"}, now_ns=0)
        outcomes.append([state.change_outcome(order, None) for _ in range(1)])
    assert outcomes[0] == outcomes[1] and outcomes[0][0] in ("done", "canceled")
    zero = MockState(MockConfig(change_cancel_rate=0.0))
    assert zero.change_outcome(order, None) == "done" and zero.change_outcome(order, "canceled") == "canceled"
    always = MockState(MockConfig(change_cancel_rate=1.0))
    assert always.change_outcome(order, None) == "canceled"


async def test_bad_outcome_header_and_cancel_rate_are_refused(api, assert_error) -> None:
    oid = (await api.handling_order(ITEMS))["orderId"]
    assert_error(await api.change(oid, remove=[REMOVED], outcome="maybe"), 400, mentions="x-mock-change-outcome")
    r = await api.client.patch("/_mock/config", json={"change_cancel_rate": 2})
    assert r.status_code == 400


@pytest.mark.parametrize("policy", ["vulnerable", "strict"])
async def test_v1_and_v2_changes_cannot_be_mixed_015(make_api, assert_error, policy) -> None:
    api = make_api(MockConfig(policy=policy))
    oid = (await api.handling_order(ITEMS))["orderId"]
    assert (await api.change(oid, endpoint="oms", discount=100)).status_code == 200  # v1: synchronous
    assert_error(await api.change(oid, discount=100), 409, code="SalesOrderSystem015")


@pytest.mark.parametrize("policy", ["vulnerable", "strict"])
async def test_no_change_after_a_partial_invoice_046(make_api, assert_error, policy) -> None:
    api = make_api(MockConfig(policy=policy))
    oid = (await api.handling_order(ITEMS))["orderId"]
    assert (await api.invoice(oid, 1000)).status_code == 200
    assert_error(await api.change(oid, remove=[REMOVED]), 409, code="SalesOrderSystem046")


@pytest.mark.parametrize("policy", ["vulnerable", "strict"])
async def test_status_allowing_no_change_chk0124(make_api, assert_error, policy) -> None:
    api = make_api(MockConfig(policy=policy))
    oid = (await api.create_order(ITEMS))["orderId"]  # ready-for-handling
    assert_error(await api.change(oid, remove=[REMOVED]), 409, code="CHK0124")


@pytest.mark.parametrize("invoice_first, settled", [("over-invoice", "invoiced"), ("stuck", "payment-approved")])
async def test_invoice_first_window_ends_in_either_symptom_of_the_ticket(make_api, poll, invoice_first,
                                                                          settled) -> None:
    """KI-1348894: an invoice above the final total, or an order stuck in payment-approved with a valid invoice."""
    api = make_api(MockConfig(policy="vulnerable", settle_ms=150.0))
    await api.set_config(invoice_first=invoice_first)
    order = await api.handling_order(ITEMS)
    oid, v0 = order["orderId"], order["value"]
    assert (await api.invoice(oid, v0)).status_code == 200
    assert (await api.change(oid, remove=[REMOVED], delay_ms=10)).status_code == 202  # inside S

    async def _settled():
        return (await api.order(oid))["status"] != "invoice" or None
    await poll(_settled, timeout_s=5)
    await api.wait_all_finished(oid, timeout_s=5)
    view = await api.order(oid)
    assert view["status"] == settled and len(view["packageAttachment"]["packages"]) == 1
    assert (await api.audit(oid))["verdict"] == "race"


async def test_stuck_option_leaves_an_invoice_without_a_change_invoiced(make_api) -> None:
    api = make_api(MockConfig(policy="vulnerable"))
    await api.set_config(invoice_first="stuck")
    order = await api.handling_order(ITEMS)
    assert (await api.invoice(order["orderId"], order["value"])).status_code == 200
    assert (await api.order(order["orderId"]))["status"] == "invoiced"
    assert (await api.client.patch("/_mock/config", json={"invoice_first": "never"})).status_code == 400

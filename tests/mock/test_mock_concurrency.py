"""Concurrent invoices and Changes on one order never lose an update (in-process and live server)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest

from mock_orders_api.config import MockConfig
from mock_orders_api.delays import Fixed

PRICE = 1000


@pytest.fixture(params=["asgi", "live"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("policy", ["vulnerable", "strict"])
async def test_concurrent_invoices_and_changes_keep_every_accepted_update(make_api, kind, policy) -> None:
    n_items, n_changes, n_invoices, inv_value = 24, 30, 30, 1000
    api = make_api(MockConfig(policy=policy, delay=Fixed(5.0)), kind=kind)
    order = await api.handling_order([{"id": "a", "quantity": n_items, "price": PRICE}])
    oid, v0 = order["orderId"], order["value"]
    rng = random.Random(1348894)

    async def _change(k: int) -> tuple[str, Any]:
        if k % 3 == 0:  # some discounts, some item removals
            r = await api.change(oid, discount=250, delay_ms=rng.uniform(0, 2), reason=f"c{k}")
        else:
            r = await api.change(oid, remove=[{"id": "a", "quantity": 1}], delay_ms=rng.uniform(0, 2),
                                 reason=f"c{k}")
        return "change", r

    async def _invoice(k: int) -> tuple[str, Any]:
        return "invoice", await api.invoice(oid, inv_value, number=f"inv-{k}")

    # One Change first: VTEX refuses every Change after an invoice (SalesOrderSystem046), so
    # without it a shuffle starting with an invoice would leave no Change to interleave.
    # Short delays: one Change in progress refuses the others (SalesOrderSystem014) and, under
    # strict, every invoice, so Changes must finish within the burst for both kinds to interleave.
    first = [await _change(n_changes)]
    jobs = [_change(k) for k in range(n_changes)] + [_invoice(k) for k in range(n_invoices)]
    rng.shuffle(jobs)
    results = first + list(await asyncio.gather(*jobs))

    statuses = [r.status_code for _, r in results]
    assert all(s < 500 for s in statuses), statuses
    changes_ok = [r.json() for k, r in results if k == "change" and r.status_code == 202]
    changes_refused = [r for k, r in results if k == "change" and r.status_code != 202]
    invoices_ok = [r for k, r in results if k == "invoice" and r.status_code == 200]
    invoices_refused = [r for k, r in results if k == "invoice" and r.status_code != 200]
    assert {r.status_code for r in changes_refused + invoices_refused} <= {400, 409}
    assert changes_ok and invoices_ok  # both kinds really interleaved

    await api.wait_all_finished(oid, timeout_s=10)
    audit = await api.audit(oid)
    view = await api.order(oid)
    accepted_changes = [c for c in audit["changes"] if c["accepted"]]
    accepted_invoices = [i for i in audit["invoices"] if i["accepted"]]

    # Every 202 is in the audit exactly once, and nothing else is.
    assert sorted(c["requestId"] for c in accepted_changes) == sorted(c["requestId"] for c in changes_ok)
    assert len(audit["changes"]) - len(accepted_changes) == len(changes_refused)
    assert all(c["finished"] for c in accepted_changes)
    # Final value and items are the initial ones plus exactly the accepted Changes.
    assert view["value"] == audit["finalValue"] == v0 + sum(c["totalChangeValue"] for c in changes_ok)
    removals = sum(1 for c in changes_ok if c["remove"])
    discounts = sum(c["manualDiscountValue"] for c in changes_ok)
    assert {i["id"]: i["quantity"] for i in view["items"]} == {"a": n_items - removals}
    totals = {t["id"]: t["value"] for t in view["totals"]}
    # VTEX keeps Items/Discounts as placed and adds the Changes' signed effect as a `Change` total.
    assert totals["Discounts"] == 0 and totals.get("Change", 0) == sum(c["totalChangeValue"] for c in changes_ok)
    assert discounts == sum(c["manualDiscountValue"] for c in changes_ok) and sum(totals.values()) == view["value"]
    # Applied one after another in acceptance order, each on the previous one's result.
    by_start = sorted(accepted_changes, key=lambda c: c["startedNs"])
    assert [c["requestId"] for c in by_start] == [c["requestId"] for c in accepted_changes]
    running = v0
    for c in accepted_changes:
        running += c["changeValue"]
        assert c["valueAfter"] == running
    # The invoiced total is exactly the sum of the accepted invoices.
    assert audit["invoicedTotal"] == inv_value * len(invoices_ok)
    assert sorted(i["invoiceNumber"] for i in accepted_invoices) == sorted(
        json.loads(r.request.content)["invoiceNumber"] for r in invoices_ok)
    assert sorted(i["receipt"] for i in accepted_invoices) == sorted(r.json()["receipt"] for r in invoices_ok)
    assert len(audit["invoices"]) == n_invoices  # every refusal recorded too
    assert len(view["packageAttachment"]["packages"]) == len(invoices_ok)
    if policy == "strict":
        assert audit["invoicedTotal"] <= audit["finalValue"] and audit["verdict"] == "clean"
    else:
        assert audit["verdict"] == ("race" if audit["invoicedTotal"] > audit["finalValue"] else "clean")


async def test_concurrent_changes_accept_exactly_one_and_refuse_the_rest_014(make_api, kind) -> None:
    qty, n = 12, 40
    api = make_api(MockConfig(delay=Fixed(1500.0)), kind=kind)  # in progress through all 40 requests
    order = await api.handling_order([{"id": "a", "quantity": qty, "price": PRICE}])
    oid = order["orderId"]
    rs = await asyncio.gather(*[api.change(oid, remove=[{"id": "a", "quantity": 1}]) for _ in range(n)])
    codes = sorted(r.status_code for r in rs)
    assert codes == [202] + [409] * (n - 1)  # MOD-ERR SalesOrderSystem014 "Change In Progress"
    assert all(r.json()["error"]["code"] == "SalesOrderSystem014" for r in rs if r.status_code == 409)
    await api.wait_all_finished(oid, timeout_s=10)
    view = await api.order(oid)
    assert view["items"][0]["quantity"] == qty - 1 and view["value"] == (qty - 1) * PRICE


async def test_concurrent_invoices_stop_exactly_at_the_order_value(make_api, kind) -> None:
    n = 30
    api = make_api(MockConfig(), kind=kind)
    order = await api.handling_order([{"id": "a", "quantity": 5, "price": PRICE}], shipping=500)
    oid, value = order["orderId"], order["value"]
    part = 700
    rs = await asyncio.gather(*[api.invoice(oid, part, number=f"n{k}") for k in range(n)])
    ok = [r for r in rs if r.status_code == 200]
    assert len(ok) == value // part
    assert all(r.status_code == 400 for r in rs if r.status_code != 200)
    audit = await api.audit(oid)
    assert audit["invoicedTotal"] == part * (value // part) <= value
    # the remainder is still invoiceable, then the order is invoiced and nothing more is accepted
    rest = value - audit["invoicedTotal"]
    assert (await api.invoice(oid, rest, number="rest")).status_code == 200
    assert (await api.order(oid))["status"] == "invoiced"
    assert (await api.invoice(oid, 1, number="extra")).status_code == 400
    assert (await api.audit(oid))["invoicedTotal"] == value


async def test_concurrent_identical_invoice_retries_count_once(make_api, kind) -> None:
    api = make_api(MockConfig(), kind=kind)
    order = await api.handling_order()
    oid, value = order["orderId"], order["value"]
    # OMS route: every re-send is accepted with a new receipt, and counts once (SPEC)
    rs = await asyncio.gather(*[api.invoice(oid, value, number="same", path="oms") for _ in range(20)])
    assert {r.status_code for r in rs} == {200}
    assert len({r.json()["receipt"] for r in rs}) == 20
    audit = await api.audit(oid)
    assert audit["invoicedTotal"] == value
    assert len(audit["invoices"]) == 1 and audit["status"] == "invoiced"
    # PII route: the number cannot be reused (PII-SPEC); exactly one of the concurrent sends lands
    oid2 = (await api.handling_order())["orderId"]
    rs = await asyncio.gather(*[api.invoice(oid2, value, number="same") for _ in range(20)])
    assert sorted(r.status_code for r in rs) == [200] + [409] * 19
    assert (await api.audit(oid2))["invoicedTotal"] == value


async def test_concurrent_requests_across_orders_stay_separate(make_api) -> None:
    api = make_api(MockConfig(delay=Fixed(2.0)), kind="live")
    orders = [await api.handling_order() for _ in range(10)]
    jobs = []
    for k, o in enumerate(orders):
        jobs.append(api.change(o["orderId"], discount=100 * (k + 1)))
    rs = list(await asyncio.gather(*jobs))
    # invoices after the Changes (a Change after an invoice is SalesOrderSystem046)
    rs += await asyncio.gather(*[api.invoice(o["orderId"], 1000 + k, number=f"x{k}") for k, o in enumerate(orders)])
    assert all(r.status_code in (200, 202) for r in rs), [r.text for r in rs if r.status_code >= 300]
    for k, o in enumerate(orders):
        await api.wait_all_finished(o["orderId"], timeout_s=5)
        audit = await api.audit(o["orderId"])
        assert audit["finalValue"] == o["value"] - 100 * (k + 1)
        assert audit["invoicedTotal"] == 1000 + k
    async with httpx.AsyncClient(base_url=str(api.client.base_url), timeout=10) as c:
        health = (await c.get("/_mock/health")).json()
    assert health["orders"] == len(orders) and health["pendingChanges"] == 0


async def test_a_read_woken_with_a_timed_last_byte_acts_after_it() -> None:
    """app.py: while a state-changing request waits for its body (a timed last byte), a read that
    becomes ready in the same loop iteration yields once, so the timed request acts first."""
    from mock_orders_api import create_app

    app = create_app(MockConfig())
    mock = app.state.mock
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock.test") as client:
        r = await client.post("/_mock/orders", json={"items": [{"id": "a", "quantity": 2, "price": PRICE}],
                                                      "status": "handling"})
        oid = r.json()["orderId"]
    body = json.dumps({"reason": "timed", "remove": {"items": [{"id": "a", "quantity": 1}]}}).encode()
    last_byte = asyncio.Event()

    async def _receive() -> dict[str, Any]:
        await last_byte.wait()
        return {"type": "http.request", "body": body, "more_body": False}

    async def _no_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def _send(message: dict[str, Any]) -> None:
        pass

    def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
                "query_string": b"", "headers": [(b"host", b"mock.test"), *headers], "http_version": "1.1",
                "scheme": "http", "server": ("mock.test", 80), "client": ("127.0.0.1", 1)}

    timed = asyncio.create_task(app(_scope("PATCH", f"/api/order-system/orders/{oid}/changes",
                                           [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]), _receive, _send))
    for _ in range(3):
        await asyncio.sleep(0)
    assert app.awaiting_body == 1  # the timed request waits in its body read
    read = asyncio.create_task(app(_scope("GET", f"/api/oms/pvt/orders/{oid}", []), _no_body, _send))
    last_byte.set()  # the read and the last byte are ready in the same iteration
    await asyncio.gather(timed, read)
    assert app.awaiting_body == 0
    acted = {e["method"]: e["actedNs"] for e in mock.journal.query() if e["orderId"] == oid}
    assert acted["PATCH"] < acted["GET"]

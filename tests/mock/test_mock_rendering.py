"""The order view rendered from each record's kept rendering (`Order.view_json`) is the view itself:
after every kind of change to an order, and after each clock-driven transition (a Change
finishing, a settle window closing, a cancellation ending), `GET order` answers byte for byte
`rendering.dumps(order.view())` computed afresh, and shows the new state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from mock_orders_api import create_app, wire
from mock_orders_api.config import MockConfig
from mock_orders_api.rendering import Raw, dumps, dumps_object

MS = 1_000_000
ITEMS = [{"id": "sku-1", "quantity": 2, "price": 5000}, {"id": "sku-2", "quantity": 1, "price": 3000}]


class _Clocked:
    def __init__(self, **cfg: Any) -> None:
        self.now = [0]
        self.app = create_app(MockConfig(**cfg), clock=lambda: self.now[0])
        self.c = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://mock.test")

    def at(self, ms: float) -> None:
        self.now[0] = round(ms * MS)

    async def order(self, oid: str) -> dict[str, Any]:
        """GET order, checked against the view computed afresh from the records."""
        r = await self.c.get(f"/api/oms/pvt/orders/{oid}")
        assert r.status_code == 200, r.text
        assert r.content == dumps(self.app.state.mock.store.get(oid).view())
        return r.json()  # type: ignore[no-any-return]

    async def ok(self, r: Any) -> httpx.Response:
        response = await r
        assert response.status_code < 300, response.text
        return response


@pytest.fixture
async def clocked() -> AsyncIterator[_Clocked]:
    m = _Clocked(settle_ms=1000.0, cancel_delay_ms=500.0)
    yield m
    await m.c.aclose()


def _packages(view: dict[str, Any]) -> list[dict[str, Any]]:
    return view["packageAttachment"]["packages"]  # type: ignore[no-any-return]


async def test_every_change_to_an_order_shows_in_the_next_get(clocked: _Clocked) -> None:
    m = clocked
    oid = (await m.ok(m.c.post("/_mock/orders", json={"items": ITEMS, "status": "handling"}))).json()["orderId"]
    assert _packages(await m.order(oid)) == [] and (await m.order(oid))["value"] == 13_000

    # a Change adding sku-3 (applied at 100 ms), then, while it processes (the ticket's race),
    # an invoice by item index and one by the item id the order does not have yet
    await m.ok(m.c.patch(f"/api/order-system/orders/{oid}/changes", headers={wire.CHANGE_DELAY_HEADER: "100"},
                         json={"reason": "add", "add": {"items": [{"id": "sku-3", "quantity": 1, "price": 700}]}}))
    await m.ok(m.c.post(f"/api/orders/pvt/document/{oid}/invoices", json={
        "type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "NF-1", "invoiceValue": 1000,
        "items": [{"itemIndex": 0, "price": 1000, "quantity": 1}], "extra": {"big": 10**29, "x": 1e300}}))
    await m.ok(m.c.post(f"/api/oms/pvt/orders/{oid}/invoice", json={
        "type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NF-2", "invoiceValue": 500,
        "items": [{"id": "sku-3", "price": 500, "quantity": 1}]}))
    view = await m.order(oid)
    assert [p["invoiceNumber"] for p in _packages(view)] == ["NF-1", "NF-2"]
    assert _packages(view)[1]["items"][0]["itemIndex"] is None
    refused = await m.c.post(f"/api/orders/pvt/document/{oid}/invoices", json={  # a return above the invoiced
        "type": "Input", "issuedDate": "2026-01-09", "invoiceNumber": "NF-R", "invoiceValue": 9000,
        "items": [{"itemIndex": 0, "price": 9000, "quantity": 1}]})
    assert refused.status_code == 400 and len(_packages(await m.order(oid))) == 2  # kept in the audit, not shown

    # tracking number, then tracking events, on the rendered package
    await m.ok(m.c.patch(f"/api/oms/pvt/orders/{oid}/invoice/NF-1", json={
        "trackingNumber": "TR-1", "trackingUrl": None, "courier": "c", "dispatchedDate": None}))
    assert _packages(await m.order(oid))[0]["trackingNumber"] == "TR-1"
    await m.ok(m.c.put(f"/api/oms/pvt/orders/{oid}/invoice/NF-1/tracking", json={
        "isDelivered": True, "deliveredDate": "2026-01-10", "events": [{"city": "Rio", "date": "2026-01-10"}]}))
    assert _packages(await m.order(oid))[0]["courierStatus"]["finished"] is True

    # the Change: not shown before its due time, shown after (the clock alone moves)

    m.at(99)
    view = await m.order(oid)
    assert view["changesAttachment"] is None and view["value"] == 13_000
    m.at(100)
    view = await m.order(oid)
    assert view["value"] == 13_700 and len(view["changesAttachment"]["changesData"]) == 1
    assert _packages(view)[1]["items"][0]["itemIndex"] == 2  # the invoice's item id now resolves

    # the invoice that reaches the value: `invoice` for the settle window, `invoiced` at its end
    await m.ok(m.c.post(f"/api/orders/pvt/document/{oid}/invoices", json={
        "type": "Output", "issuedDate": "2026-01-09", "invoiceNumber": "NF-3", "invoiceValue": 12_200,
        "items": [{"itemIndex": 0, "price": 12_200, "quantity": 1}]}))
    assert (await m.order(oid))["status"] == "invoice"
    m.at(1099)
    assert (await m.order(oid))["status"] == "invoice"
    m.at(1100)
    view = await m.order(oid)
    assert view["status"] == "invoiced" and view["invoicedDate"] is not None and len(_packages(view)) == 3


async def test_a_cancellation_shows_when_it_starts_and_when_it_ends(clocked: _Clocked) -> None:
    m = clocked
    oid = (await m.ok(m.c.post("/_mock/orders", json={"items": ITEMS, "status": "handling"}))).json()["orderId"]
    await m.ok(m.c.post(f"/api/oms/pvt/orders/{oid}/cancel", json={"reason": "out of stock"}))
    assert (await m.order(oid))["status"] == "cancel"
    m.at(499)
    assert (await m.order(oid))["status"] == "cancel"
    m.at(500)
    view = await m.order(oid)
    assert view["status"] == "canceled" and view["cancellationData"] is not None


def test_dumps_object_splices_raw_values_in_place() -> None:
    content = {"a": 1, "b": Raw(dumps({"x": [1, "é"]})), "c": None, "d": Raw(b"[]"), "e": "z"}
    assert json.loads(dumps_object(content)) == {"a": 1, "b": {"x": [1, "é"]}, "c": None, "d": [], "e": "z"}
    assert dumps_object(content) == dumps({**content, "b": {"x": [1, "é"]}, "d": []})
    assert dumps_object({}) == b"{}" and dumps_object({"r": Raw(b"1")}) == b'{"r":1}'
    # what orjson refuses or renders otherwise goes through the standard encoder, as before
    odd = {"big": 10**29, "neg": -(2**63) - 1, "s": "\u2028é\x00\"", "k é\"": Raw(b"[]"), "n": [None, True]}
    assert dumps_object(odd) == dumps({**odd, 'k é"': []})
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate: refused by both, as by Starlette
        dumps_object({"s": "\ud800"})


async def test_a_filed_invoice_keeps_what_the_order_totals_read(clocked: _Clocked) -> None:
    m = clocked
    oid = (await m.ok(m.c.post("/_mock/orders", json={"items": ITEMS, "status": "handling"}))).json()["orderId"]
    body = {"type": "Output", "issuanceDate": "2026-01-09T00:00:00Z", "invoiceNumber": "NF-1", "invoiceValue": 1000,
            "items": [{"id": "sku-1", "price": 1000, "quantity": 1}]}
    await m.ok(m.c.post(f"/api/oms/pvt/orders/{oid}/invoice", json=body))
    await m.ok(m.c.post(f"/api/oms/pvt/orders/{oid}/invoice", json=body))  # a re-send: a new receipt, same invoice
    order = m.app.state.mock.store.get(oid)
    assert len(order.invoices) == 1 and order.invoiced_total == 1000 == sum(i.invoice_value for i in order.invoices)
    with pytest.raises(AttributeError, match="fixed once the invoice is filed"):
        order.invoices[0].invoice_value = 1


@pytest.mark.parametrize("status_extra", [(409, None), (429, None), (413, {"Allow": "GET"}), (503, None)])
def test_error_responses_are_starlettes_own(status_extra: tuple[int, dict[str, str] | None]) -> None:
    """Body, status and headers (order included) as Starlette's JSONResponse built them."""
    from starlette.responses import JSONResponse

    from mock_orders_api.app import error_response
    from mock_orders_api.errors import ApiError, TooManyRequests

    status, extra = status_extra
    err = TooManyRequests("slow down é", 1.5) if status == 429 else ApiError("nope é", code="Code")
    err.status = status
    headers = {**(err.headers or {}), **(extra or {})}
    if status == 413 or status >= 500:
        headers["connection"] = "close"
    ours, theirs = error_response(err, extra), JSONResponse(err.body(), status_code=status, headers=headers)
    assert (ours.status_code, ours.body, ours.raw_headers) == (theirs.status_code, theirs.body, theirs.raw_headers)
